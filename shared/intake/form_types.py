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
provider) names its own form_type and keeps it. Imports pydantic and shared.events only: the router loads it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from shared.events import ContactEvent

FORM_TYPE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
MAX_KEY = 200


class FormMapping(BaseModel):
    """One form: the form type its submissions get, and the name they carry (data.form) if given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(description="The form_type its submissions carry (funnel, blog, store...)")
    name: str | None = Field(default=None, min_length=1, max_length=MAX_KEY, description="data.form, if given")

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"type": v}
        if not isinstance(v, dict):
            raise ValueError(
                f"a form maps to its form type (lT4Z3j: funnel) or to {{type: funnel, name: ...}}, not {v!r}"
            )
        return v

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        if not FORM_TYPE.match(v):
            raise ValueError(
                f"form type {v!r} must be 1-40 lower-case letters, digits, - or _ (what a trigger's "
                "where: {form_type: ...} names, e.g. funnel)"
            )
        return v


def check_keys(forms: Mapping[str, Any]) -> None:
    """The keys of settings.forms: form ids or names as the provider sends them (non-empty, at most 200)."""
    for key in forms:
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"a form key must be the form's id or name as its provider sends it, not {key!r}")
        if len(key) > MAX_KEY:
            raise ValueError(f"form key {key[:40]!r}... is over {MAX_KEY} characters")


def deployment_forms(settings: Iterable[Mapping[str, FormMapping] | None]) -> dict[str, FormMapping]:
    """The deployment's mapping from the workflows' settings (stepwise.yaml gives each the same one)."""
    out: dict[str, FormMapping] = {}
    for forms in settings:
        out.update(forms or {})
    return out


def apply(event: ContactEvent, forms: Mapping[str, FormMapping]) -> ContactEvent:
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
