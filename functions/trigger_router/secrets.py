"""Webhook secrets and the API key, from SSM Parameter Store through Powertools parameters (cached 5 minutes)."""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

MAX_AGE_SECONDS = 300  # a rotated secret is picked up within 5 minutes, at one GetParameter per 5 minutes


class Secrets:
    """`secret_for(provider)` as shared.intake.base.SecretSource wants it; `api_key()` for POST /events."""

    def __init__(self, prefix: str, api_key_parameter: str, ssm: Any) -> None:
        self.prefix = prefix
        self.api_key_parameter = api_key_parameter
        # Imported at the first delivery's cold start, not the module's: the import alone is ~50 ms.
        from aws_lambda_powertools.utilities.parameters import SSMProvider

        self.provider = SSMProvider(boto3_client=ssm)
        self._missing: dict[str, float] = {}  # name -> until when it is known to be missing

    def secret_for(self, provider: str) -> str | None:
        return self._get(f"{self.prefix}/webhooks/{provider}")

    def api_key(self) -> str | None:
        return self._get(self.api_key_parameter)

    def _get(self, name: str) -> str | None:
        """The parameter's value; None when no such parameter exists (no secret configured). Any other failure
        (throttling, access denied) raises: the sender gets a 5xx and retries, rather than a wrong 401."""
        now = time.monotonic()
        if self._missing.get(name, 0.0) > now:
            return None
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        try:
            value = self.provider.get(name, max_age=MAX_AGE_SECONDS, decrypt=True)
        except GetParameterError as err:
            cause = err.__cause__ or err.__context__
            if isinstance(cause, ClientError) and cause.response["Error"]["Code"] == "ParameterNotFound":
                # Powertools caches values, not absences: remember it here so an unconfigured provider costs
                # one GetParameter per 5 minutes, not one per delivery.
                self._missing[name] = now + MAX_AGE_SECONDS
                return None
            raise
        return str(value) if value else None
