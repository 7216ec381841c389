"""Configuration of the trigger router's functions, read once per cold start; a missing key fails loudly."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from shared import constants as C

CODE_ROOT = Path(__file__).resolve().parents[2]  # the asset's root in AWS (/var/task), the repository here


def _required(role: str, *keys: str) -> dict[str, str]:
    missing = [k for k in keys if not os.environ.get(k)]
    if missing:
        raise RuntimeError(f"{role} misconfigured: environment variable(s) {', '.join(missing)} not set")
    return {k: os.environ[k] for k in keys}


def _metrics_enabled() -> bool:
    return os.environ.get("POWERTOOLS_METRICS_DISABLED", "false").lower() != "true"


class IntakeSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    table_name: str
    archive_bucket: str
    queue_url: str
    secrets_prefix: str  # webhook secrets are SSM parameters {prefix}/webhooks/{provider}
    api_key_parameter: str  # SSM SecureString holding the /events API key
    namespace: str = C.METRICS_NAMESPACE
    metrics_enabled: bool = True

    @classmethod
    def from_env(cls) -> IntakeSettings:
        env = _required(
            "intake",
            C.ENV_TABLE_NAME,
            C.ENV_ARCHIVE_BUCKET,
            C.ENV_INTAKE_QUEUE_URL,
            C.ENV_SECRETS_PREFIX,
            C.ENV_API_KEY_PARAMETER,
        )
        return cls(
            table_name=env[C.ENV_TABLE_NAME],
            archive_bucket=env[C.ENV_ARCHIVE_BUCKET],
            queue_url=env[C.ENV_INTAKE_QUEUE_URL],
            secrets_prefix=env[C.ENV_SECRETS_PREFIX].rstrip("/"),
            api_key_parameter=env[C.ENV_API_KEY_PARAMETER],
            namespace=os.environ.get(C.ENV_METRICS_NAMESPACE, C.METRICS_NAMESPACE),
            metrics_enabled=_metrics_enabled(),
        )


class RouterSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

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
