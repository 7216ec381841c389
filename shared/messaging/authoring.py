"""The authoring models of the deployment's send rules (stepwise.yaml's settings, a workflow's and a step's
send_window): pydantic, for `stepwise validate` and `cdk synth` (shared/workflow/model.py) and their JSON Schema.

The run time reads the same data into plain classes (windows.SendWindow, caps.FrequencyCap) that check what these
check: the step runner's import loads no pydantic (issue 11 item 9). The answers (next_open, cap_day) are the run-time
module's, shared through WindowHours."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.messaging.caps import FREQUENCY_CAP_LIMITS, CapRules
from shared.messaging.windows import WindowHours, check_between, check_zone


class SendWindow(WindowHours, BaseModel):
    """`between: "09:00-20:00"` local time of the contact (contact.timezone, else `timezone`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    between: str = Field(description='Local hours a message may go out, "HH:MM-HH:MM"; may wrap midnight')
    timezone: str = Field(default="UTC", description="Zone used when the contact has none (IANA name)")

    @field_validator("between")
    @classmethod
    def _between(cls, v: str) -> str:
        return check_between(v)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return check_zone(v)

    @model_validator(mode="before")
    @classmethod
    def _short(cls, v: object) -> object:
        return {"between": v} if isinstance(v, str) else v


LOW, HIGH = FREQUENCY_CAP_LIMITS


class FrequencyCap(CapRules, BaseModel):
    """`frequency_cap: {email: 2, sms: 1}`: marketing sends per contact per calendar day in the contact's zone
    (`timezone` when the contact has none). A channel left out is not capped; transactional sends never count."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: int | None = Field(default=None, ge=LOW, le=HIGH)
    sms: int | None = Field(default=None, ge=LOW, le=HIGH)
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return check_zone(v)
