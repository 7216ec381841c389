"""settings.forms in stepwise.yaml: a provider's form, by its id or name, gets the form type triggers match; every
form provider's published sample through the intake's normalisation; a bad mapping is a clear validate error."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.events import ContactEvent
from shared.intake.base import Delivery
from shared.intake.form_types import FormMapping, apply, deployment_forms
from shared.intake.pipeline import accept
from shared.intake.testing import delivery, load_fixture
from shared.runtime.workflows_file import dump_workflows, load_workflows
from shared.workflow.model import WorkflowFileError, load_deployment_settings, load_workflow

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
FUNNEL = {"type": "funnel", "name": "offer-1-signup"}
TWO_OFFERS = Path(__file__).resolve().parents[2] / "workflows" / "two-offers.yaml"


def submitted(provider: str, d: Delivery) -> ContactEvent:
    (event,) = accept(provider, d, lambda _: None, allow_unverified=True).events
    assert event.type == "form.submitted" and event.data["form_type"] == provider  # what the provider alone says
    return event


def tally_delivery() -> Delivery:
    """A Tally FORM_RESPONSE shaped as Tally documents it (there is no published sample in tests/events)."""
    body = {
        "eventId": "a4cb511e-d513-4fa5-baee-b815d718dfd1",
        "eventType": "FORM_RESPONSE",
        "createdAt": "2026-12-01T11:00:00.000Z",
        "data": {
            "formId": "w4Ab2Q",
            "formName": "Webinar waitlist",
            "createdAt": "2026-12-01T11:00:00.000Z",
            "fields": [{"key": "question_1", "label": "Email", "type": "INPUT_EMAIL", "value": "Tal@Example.com"}],
        },
    }
    return Delivery("tally", {"content-type": "application/json"}, json.dumps(body).encode(), NOW)


def jotform_delivery() -> Delivery:
    """Jotform's published submission with an email answer added to its rawRequest (the sample has none)."""
    d = delivery(load_fixture("jotform", "submission"), NOW)
    return replace(d, body=d.body.replace(b'{"slug":', b'{"q9_email":"jo@example.com","slug":', 1))


@pytest.mark.parametrize(
    ("provider", "make", "key"),
    [
        ("typeform", lambda: delivery(load_fixture("typeform", "form_response"), NOW), "lT4Z3j"),  # form_id
        ("tally", tally_delivery, "w4Ab2Q"),  # data.formId
        ("jotform", jotform_delivery, "243231271343446"),  # formID
        ("webflow", lambda: delivery(load_fixture("webflow", "form_submission"), NOW), "Contact Us"),  # form name
    ],
)
def test_every_form_provider_gets_its_form_type_from_the_mapping(provider: str, make: object, key: str) -> None:
    event = submitted(provider, make())  # type: ignore[operator]
    forms = {key: FormMapping.model_validate(FUNNEL), "other-form": FormMapping.model_validate("blog")}
    mapped = apply(event, forms)
    assert mapped.data["form_type"] == "funnel" and mapped.data["form"] == "offer-1-signup"
    assert {k: v for k, v in mapped.data.items() if k not in ("form_type", "form")} == {
        k: v for k, v in event.data.items() if k not in ("form_type", "form")
    }
    assert mapped.contact == event.contact and mapped.id == event.id
    # A form the mapping does not name keeps the provider's name as its type.
    assert apply(event, {"other-form": FormMapping.model_validate("blog")}) == event


def test_a_bare_type_keeps_the_forms_own_name_and_the_id_wins_over_the_name() -> None:
    event = submitted("typeform", delivery(load_fixture("typeform", "form_response"), NOW))
    forms = {"Webhooks example": FormMapping.model_validate("blog"), "lT4Z3j": FormMapping.model_validate("funnel")}
    mapped = apply(event, forms)
    assert mapped.data["form_type"] == "funnel" and mapped.data["form"] == "Webhooks example"


def test_an_event_of_our_own_api_keeps_the_form_type_it_names() -> None:
    own = ContactEvent.model_validate(
        {"id": "f1", "type": "form.submitted", "contact": {"email": "a@example.com"},
         "data": {"form": "lT4Z3j", "form_id": "lT4Z3j", "form_type": "store"}}
    )  # fmt: skip
    assert apply(own, {"lT4Z3j": FormMapping.model_validate("funnel")}) == own


def test_the_deployment_mapping_is_in_every_workflows_settings(tmp_path: Path) -> None:
    (tmp_path / "stepwise.yaml").write_text("settings:\n  forms:\n    lT4Z3j: {type: funnel, name: offer-1-signup}\n")
    (tmp_path / "two-offers.yaml").write_text(TWO_OFFERS.read_text())
    wf = load_workflow(tmp_path / "two-offers.yaml")
    assert wf.settings.forms == {"lT4Z3j": FormMapping(type="funnel", name="offer-1-signup")}
    assert deployment_forms([wf.settings.forms, None]) == wf.settings.forms
    # The router in AWS reads it from the workflows file the build writes.
    (tmp_path / "workflows.json").write_bytes(dump_workflows([wf]))
    (deployed,) = load_workflows(tmp_path / "workflows.json")
    assert deployed.settings.forms == wf.settings.forms


@pytest.mark.parametrize(
    ("yaml", "says"),
    [
        ("lT4Z3j: {type: Funnel Page}", "settings.forms.lT4Z3j.type: form type 'Funnel Page' must be 1-40 lower-case"),
        ("lT4Z3j: [funnel]", "settings.forms.lT4Z3j: a form maps to its form type (lT4Z3j: funnel) or to {type:"),
        ("lT4Z3j: {type: funnel, title: x}", "settings.forms.lT4Z3j.title: Extra inputs are not permitted"),
        ("lT4Z3j: {name: x}", "settings.forms.lT4Z3j.type: Field required"),
        ('"  ": funnel', "settings.forms: a form key must be the form's id or name as its provider sends it"),
    ],
)
def test_a_bad_mapping_is_a_validate_error_naming_the_field(tmp_path: Path, yaml: str, says: str) -> None:
    (tmp_path / "stepwise.yaml").write_text(f"settings:\n  forms:\n    {yaml}\n")
    with pytest.raises(WorkflowFileError) as err:
        load_deployment_settings(tmp_path)
    assert says in "\n".join(err.value.problems), err.value.problems


def test_a_workflow_cannot_set_its_own_forms(tmp_path: Path) -> None:
    text = TWO_OFFERS.read_text() + "settings:\n  forms:\n    lT4Z3j: funnel\n"
    (tmp_path / "two-offers.yaml").write_text(text)
    with pytest.raises(WorkflowFileError) as err:
        load_workflow(tmp_path / "two-offers.yaml")
    assert "settings.forms: which form is which serves every workflow of the deployment" in str(err.value.problems)
