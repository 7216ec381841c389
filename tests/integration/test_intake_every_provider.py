"""Every provider's published sample delivery, through the intake API handler and the router's queue consumer, into
the workflow whose trigger listens to the event it means (real executions on moto)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.trigger_router import intake, router
from shared.intake import PROVIDERS
from shared.intake.base import NotAContactEvent
from shared.intake.pipeline import accept
from shared.intake.testing import all_fixtures, load_fixture, signed
from shared.lifecycle import ensure_activated
from shared.workflow.model import Workflow
from stepwise.simulate import Simulation
from tests.integration.intake_support import SECRETS_PREFIX, Context, http_event, response_json
from tests.integration.support import workflow
from tests.integration.test_router_consumers import router_sim, sqs_event

# What the providers' deliveries mean, one listening workflow each: it tags the contact with the event type.
TYPES = (
    "order.paid",
    "order.cancelled",
    "order.refunded",
    "checkout.started",
    "checkout.updated",
    "contact.created",
    "subscription.payment_failed",
    "subscription.cancelled",
    "form.submitted",
    "appointment.scheduled",
    "appointment.cancelled",
)


def listener(etype: str) -> Workflow:
    name = etype.replace(".", "-").replace("_", "-")
    return workflow(
        f"""
name: {name}
triggers: [{{event: {etype}}}]
steps:
  - id: note
    add_tag: got-{etype}
"""
    )


LISTENERS = {t: listener(t) for t in TYPES}
SECRET = "whsec_every_provider_test"
# The published samples are dated 2015-2024: these workflows have been deployed since before then.
DEPLOYED = datetime(2000, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def fixtures() -> list[tuple[str, str]]:
    found = all_fixtures()
    assert {p for p, _ in found} >= {"shopify", "typeform", "webflow", "jotform"}  # the repository's own
    return found


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulation]:
    with router_sim(list(LISTENERS.values()), monkeypatch) as s:
        for wf in LISTENERS.values():
            ensure_activated(s.store, wf.name, DEPLOYED)
        ssm = s.resources["ssm"]  # type: ignore[attr-defined]
        for name in PROVIDERS:
            ssm.put_parameter(
                Name=f"{SECRETS_PREFIX}/webhooks/{name}", Value=SECRET, Type="SecureString", Overwrite=True
            )
        yield s


def post(sim: Simulation, provider: str, topic: str) -> tuple[dict[str, Any], list[Any]]:
    """The sample, signed (or path-tokened) as its provider would deliver it now, posted to the API; and what the
    intake's own pipeline makes of the same bytes (the unit tests pin that mapping event by event)."""
    delivery = signed(load_fixture(provider, topic), SECRET, sim.now)
    path = f"/webhooks/{provider}" + (f"/{delivery.path_token}" if delivery.path_token else "")
    response = intake.handler(http_event("POST", path, delivery.body, dict(delivery.headers)), Context())  # type: ignore[arg-type]
    try:
        events = accept(provider, delivery, lambda _: SECRET).events
    except NotAContactEvent:
        events = []
    return response, events


def test_every_published_delivery_enters_the_workflows_its_events_trigger(
    sim: Simulation, fixtures: list[tuple[str, str]]
) -> None:
    expected: list[tuple[str, str, str]] = []  # (provider topic, event type, an identity of its contact)
    for provider, topic in fixtures:
        response, events = post(sim, provider, topic)
        body = response_json(response)
        assert response["statusCode"] in (200, 202), (provider, topic, body)
        if not events:
            assert body["accepted"] == 0, (provider, topic, body)  # nobody named (refunds/create) or nothing to do
            continue
        assert body["accepted"] == len(events) and not body["duplicate"], (provider, topic, body)
        for e in events:
            who = e.contact.email or e.contact.phone or e.contact.external_id
            assert e.type in LISTENERS, f"{provider} {topic}: {e.type} has no listener here"
            expected.append((f"{provider} {topic}", e.type, str(who)))
    assert len(expected) >= 12  # every sample that names somebody, across the eight providers' samples

    while (batch := sqs_event(sim))["Records"]:
        assert router.queue_handler(batch, Context()) == {"batchItemFailures": []}  # type: ignore[arg-type]
        sim.stack.settle()

    contacts = sim.summary()["contacts"]
    for source, etype, who in expected:
        (contact,) = [c for c in contacts if who in (c["email"], c["phone"], *c["identities"]["external"])]
        assert f"got-{etype}" in contact["tags"], f"{source}: {who} did not enter {LISTENERS[etype].name}"
        runs = [
            json.loads(sim.stack.sfn.describe_execution(executionArn=arn)["input"])["contact_id"]
            for arn in sim.execution_arns(LISTENERS[etype].name)
        ]
        assert contact["id"] in runs, source


def test_a_redelivery_of_every_sample_is_a_duplicate_that_queues_nothing(
    sim: Simulation, fixtures: list[tuple[str, str]]
) -> None:
    meaningful = 0
    for provider, topic in fixtures:
        _, events = post(sim, provider, topic)
        if not events:
            continue
        meaningful += 1
        again, _ = post(sim, provider, topic)
        assert (again["statusCode"], response_json(again)["duplicate"]) == (200, True), (provider, topic)
    queued = 0
    while (batch := sqs_event(sim))["Records"]:
        queued += len(batch["Records"])
        router.queue_handler(batch, Context())  # type: ignore[arg-type]
    assert queued == meaningful  # one message per sample, however often it was delivered
