"""`settings.budgets` in stepwise.yaml, the authoring model (pydantic): validated by `stepwise validate` and
`cdk synth` as a field of the settings' model; re-exported as shared.budgets.Budgets, loaded on first use so the
step runner's and the router's imports load no pydantic (issue 11 item 9). The counters are shared/budgets.py's."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Budgets(BaseModel):
    """`settings.budgets` in stepwise.yaml: `{messages_per_contact_per_day: 10, entries_per_hour: 500,
    alert: [ops@example.com]}`. A budget left out is not enforced."""

    # Built where it is first validated (stepwise.yaml's settings, as a field of their model), not at import.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    messages_per_contact_per_day: int | None = Field(default=None, ge=1, le=1000)
    entries_per_hour: int | None = Field(default=None, ge=1, le=1_000_000)
    alert: list[str] = Field(default_factory=list, max_length=5, description="team addresses told of a pause")

    @field_validator("alert")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if "@" not in a]
        if bad:
            raise ValueError(f"not an email address: {', '.join(bad)}")
        return v
