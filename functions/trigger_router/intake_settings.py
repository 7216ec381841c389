"""The intake's configuration, read once per cold start; a missing key fails loudly.

A frozen dataclass, not a pydantic model: its values are the deployment's own environment variables (strings the
stack sets, checked for presence here), nothing a sender controls, and the intake's import stays free of pydantic
(cold start, issue 11 item 9). functions/trigger_router/settings.py keeps the router's settings."""

from __future__ import annotations

import os
from dataclasses import dataclass

from shared import constants as C


def required(role: str, *keys: str) -> dict[str, str]:
    """The named environment variables; RuntimeError naming every one that is unset or empty."""
    missing = [k for k in keys if not os.environ.get(k)]
    if missing:
        raise RuntimeError(f"{role} misconfigured: environment variable(s) {', '.join(missing)} not set")
    return {k: os.environ[k] for k in keys}


def metrics_enabled() -> bool:
    return os.environ.get("POWERTOOLS_METRICS_DISABLED", "false").lower() != "true"


@dataclass(frozen=True)
class IntakeSettings:
    table_name: str
    archive_bucket: str
    queue_url: str
    secrets_prefix: str  # webhook secrets are SSM parameters {prefix}/webhooks/{provider}
    api_key_parameter: str  # SSM SecureString holding the /events API key
    namespace: str = C.METRICS_NAMESPACE
    metrics_enabled: bool = True

    @classmethod
    def from_env(cls) -> IntakeSettings:
        env = required(
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
            metrics_enabled=metrics_enabled(),
        )
