"""Which kind of form a provider's form is: `settings.forms` in stepwise.yaml maps a form, by its id (or its name),
to the form type that triggers and conditions match (`where: {form_type: funnel}`) and, optionally, its name.

    settings:
      forms:
        lT4Z3j: {type: funnel, name: Offer 1 sign-up}   # Typeform form_response.form_id
        w4Ab2Q: funnel                                   # Tally formId (a bare string is the type)
        "Newsletter": blog                               # Webflow's form name (Webflow ids differ per site)

Every form provider's normalisation sets `form_type` to its own name (typeform, tally, jotform, webflow); the
router applies the mapping to each form.submitted a provider sent before anything matches it, so the same mapping
serves the Lambda, `stepwise local`, `simulate` and `replay`. An event that arrived through POST /events (no
provider) names its own form_type and keeps it. Imports no pydantic (the router loads it): the authoring model
FormMapping, which `stepwise validate` checks settings.forms with, is shared/intake/form_mapping.py, loaded on first
use."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.events import ContactEvent
    from shared.intake.form_mapping import FormMapping

FORM_TYPE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
MAX_KEY = 200
_NO = object()


class FormType:
    """A form's mapping as the router applies it (the run-time form of FormMapping, read from the workflows file
    the build wrote after `stepwise validate` checked it): the form type, and the name if given."""

    __slots__ = ("name", "type")

    def __init__(self, type: str, name: str | None = None) -> None:
        self.type = type
        self.name = name

    def __eq__(self, other: object) -> bool:  # equal to the FormMapping it was read from
        return getattr(other, "type", _NO) == self.type and getattr(other, "name", _NO) == self.name

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FormType(type={self.type!r}, name={self.name!r})"


def form_type(v: Any) -> FormType:
    """The run-time form of one mapping: a bare type, its dump ({type, name}) or a FormMapping (not checked again)."""
    if isinstance(v, str):
        return FormType(v)
    if isinstance(v, dict):
        return FormType(v["type"], v.get("name"))
    return FormType(v.type, v.name)


def __getattr__(name: str) -> Any:
    # The authoring model (pydantic) loads with the first use of it: `stepwise validate`, synth, not the router.
    if name == "FormMapping":
        from shared.intake.form_mapping import FormMapping

        return FormMapping
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_keys(forms: Mapping[str, Any]) -> None:
    """The keys of settings.forms: form ids or names as the provider sends them (non-empty, at most 200)."""
    for key in forms:
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"a form key must be the form's id or name as its provider sends it, not {key!r}")
        if len(key) > MAX_KEY:
            raise ValueError(f"form key {key[:40]!r}... is over {MAX_KEY} characters")


def deployment_forms(
    settings: Iterable[Mapping[str, FormMapping | FormType] | None],
) -> dict[str, FormMapping | FormType]:
    """The deployment's mapping from the workflows' settings (stepwise.yaml gives each the same one)."""
    out: dict[str, FormMapping | FormType] = {}
    for forms in settings:
        out.update(forms or {})
    return out


def apply(event: ContactEvent, forms: Mapping[str, FormMapping | FormType]) -> ContactEvent:
    """The event with its form's type (and name) from the mapping: matched by form id, else by form name. Events
    that are not a provider's form submission, or whose form is not mapped, are returned as they are."""
    if not forms or event.type != "form.submitted" or event.source is None:
        return event
    data = event.data
    mapping = None
    for key in (data.get("form_id"), data.get("form")):
        if isinstance(key, str) and key in forms:
            mapping = forms[key]
            break
    if mapping is None:
        return event
    new = {**data, "form_type": mapping.type}
    if mapping.name is not None:
        new["form"] = mapping.name
    return event.model_copy(update={"data": new})
