"""The app's parameters, read once from CDK context (cdk.json defaults, `-c key=value` overrides) and checked."""

from __future__ import annotations

import re
from pathlib import Path

from constructs import Node
from pydantic import BaseModel, ConfigDict, Field, field_validator

from infra.assets import REPO

# Context keys (cdk.json and `cdk deploy -c KEY=VALUE`).
CTX_STAGE = "stage"
CTX_WORKFLOWS = "workflows"
CTX_ALARM_EMAIL = "alarm_email"
CTX_POWERTOOLS_LAYER_VERSION = "powertools_layer_version"

# Public Powertools layer (its variant built with every extra, pydantic v2 included). Version 27 is the one the
# Powertools documentation names for the V3 layers at the time of writing; override with -c powertools_layer_version.
POWERTOOLS_LAYER_VERSION = 27


class StackConfig(BaseModel):
    """Everything a deploy can vary. A bad value fails the synth with the key's name, never a half-built stack."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # No hyphen: `stepwise-{stage}-*` must match this stage's machines only (see infra/names.py).
    stage: str = Field(default="dev", pattern=r"^[a-z][a-z0-9]{0,15}$")
    workflows: Path = Field(default=Path("workflows"), validate_default=True)  # relative to the repo
    alarm_email: str = ""
    powertools_layer_version: int = Field(default=POWERTOOLS_LAYER_VERSION, ge=1)

    @field_validator("alarm_email")
    @classmethod
    def _email(cls, v: str) -> str:
        if v and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", v):
            raise ValueError(f"alarm_email {v!r} is not an e-mail address")
        return v

    @field_validator("workflows")
    @classmethod
    def _folder(cls, v: Path) -> Path:
        folder = v if v.is_absolute() else REPO / v
        if not folder.is_dir():
            raise ValueError(f"workflows folder {folder} does not exist")
        return folder

    @property
    def prefix(self) -> str:
        """Physical-name prefix of this stage's resources (state machines, log groups, alarms)."""
        return f"stepwise-{self.stage}"

    @classmethod
    def from_context(cls, node: Node) -> StackConfig:
        raw = {
            key: node.try_get_context(key)
            for key in (CTX_STAGE, CTX_WORKFLOWS, CTX_ALARM_EMAIL, CTX_POWERTOOLS_LAYER_VERSION)
        }
        return cls.model_validate({k: v for k, v in raw.items() if v is not None})
