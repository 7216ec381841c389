"""Configuration of the router's functions, read once per cold start; a missing key fails loudly. The intake's is
functions/trigger_router/intake_settings.py, whose environment checks these share. A frozen dataclass as that one
is, not a pydantic model: its values are the stack's own environment variables, checked here, and the router's
import stays free of pydantic (cold start, issue 11 item 9)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from functions.trigger_router.intake_settings import metrics_enabled as _metrics_enabled
from functions.trigger_router.intake_settings import required as _required
from shared import constants as C

CODE_ROOT = Path(__file__).resolve().parents[2]  # the asset's root in AWS (/var/task), the repository here


@dataclass(frozen=True)
class RouterSettings:
    table_name: str
    state_machine_arn_template: str
    archive_bucket: str
    workflows: str  # path of the workflows file, relative to CODE_ROOT unless absolute
    entry_plans: str = ""  # likewise; "" = none (a start records no passive steps)
    max_receive_count: int | None = None  # required where SQS records arrive (checked there)
    namespace: str = C.METRICS_NAMESPACE
    metrics_enabled: bool = True

    @classmethod
    def from_env(cls) -> RouterSettings:
        env = _required(
            "router", C.ENV_TABLE_NAME, C.ENV_STATE_MACHINE_ARN_TEMPLATE, C.ENV_ARCHIVE_BUCKET, C.ENV_WORKFLOWS_FILE
        )
        count = os.environ.get(C.ENV_MAX_RECEIVE_COUNT, "")
        if count and not count.isdigit():
            raise RuntimeError(f"router misconfigured: {C.ENV_MAX_RECEIVE_COUNT} is {count!r}, not a whole number")
        return cls(
            table_name=env[C.ENV_TABLE_NAME],
            state_machine_arn_template=env[C.ENV_STATE_MACHINE_ARN_TEMPLATE],
            archive_bucket=env[C.ENV_ARCHIVE_BUCKET],
            workflows=env[C.ENV_WORKFLOWS_FILE],
            entry_plans=os.environ.get(C.ENV_ENTRY_PLANS, ""),
            max_receive_count=int(count) if count else None,
            namespace=os.environ.get(C.ENV_METRICS_NAMESPACE, C.METRICS_NAMESPACE),
            metrics_enabled=_metrics_enabled(),
        )

    def path(self, value: str) -> Path:
        return CODE_ROOT / value  # an absolute value stays as it is
