"""settings.forms' authoring model: what `stepwise validate` and synth check each form's mapping with (pydantic).
The router applies the run-time form (shared/intake/form_types.py FormType), read from what this validated."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.intake.form_types import FORM_TYPE, MAX_KEY


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
