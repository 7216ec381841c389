"""Step runner Lambda: parses the Task payload, performs the step for one contact, returns the next run state."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from functions.step_runner.logic import Deps, InvalidStep, StepRequest, run
from functions.step_runner.request import RequestError
from shared import constants as C
from shared.enrollment import Enroller
from shared.lambda_logger import FirstUseLogger
from shared.metrics import emit_metric
from shared.store.contacts import ContactStore
from shared.webhooks import WebhookPolicy
from shared.workflow.runtime import EntryPlan, load_entry_plans

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# Powertools' Logger is made at the first invocation (its import loads its Metrics and Tracer too, ~25 ms); the
# Task payload and the entry plans are read into plain classes: the step runner's import loads no pydantic.
logger = FirstUseLogger(C.SERVICE_NAME)
CODE_ROOT = Path(__file__).resolve().parents[2]  # the asset's root in AWS (/var/task), the repository here


@dataclass(frozen=True)
class Settings:
    """Configuration, read once per cold start; a missing key fails loudly. The stack's own environment variables
    (strings, checked for presence): a frozen dataclass, so the import loads no pydantic."""

    table_name: str
    state_machine_arn_template: str
    namespace: str = C.METRICS_NAMESPACE
    metrics_enabled: bool = True
    entry_plans: str = ""  # a path, relative to CODE_ROOT unless absolute; "" = none
    webhook_allow: str = ""  # hosts / networks a call_webhook may reach beyond public https (shared/webhooks.py)

    @classmethod
    def from_env(cls) -> Settings:
        missing = [k for k in (C.ENV_TABLE_NAME, C.ENV_STATE_MACHINE_ARN_TEMPLATE) if not os.environ.get(k)]
        if missing:
            raise RuntimeError(f"step runner misconfigured: environment variable(s) {', '.join(missing)} not set")
        return cls(
            table_name=os.environ[C.ENV_TABLE_NAME],
            state_machine_arn_template=os.environ[C.ENV_STATE_MACHINE_ARN_TEMPLATE],
            namespace=os.environ.get(C.ENV_METRICS_NAMESPACE, C.METRICS_NAMESPACE),
            metrics_enabled=os.environ.get("POWERTOOLS_METRICS_DISABLED", "false").lower() != "true",
            entry_plans=os.environ.get(C.ENV_ENTRY_PLANS, ""),
            webhook_allow=os.environ.get(C.ENV_WEBHOOK_ALLOW, ""),
        )

    def plans(self) -> dict[str, EntryPlan]:
        """The entry plans of the deployed workflows; a configured file that is missing or malformed fails the
        cold start loudly rather than silently dropping history records."""
        if not self.entry_plans:
            return {}
        return load_entry_plans(CODE_ROOT / self.entry_plans)


_deps: Deps | None = None
# The local runtime's collector of metrics (the simulator's counter); in AWS metrics are EMF in the logs.
local_metrics: Any = None


def deps() -> Deps:
    global _deps
    if _deps is None:
        settings = Settings.from_env()
        ddb, sfn = boto3.client("dynamodb"), boto3.client("stepfunctions")
        store = ContactStore(settings.table_name, ddb)
        metrics = local_metrics or (emit_metric(settings.namespace) if settings.metrics_enabled else None)
        _deps = Deps(
            store=store,
            enroller=Enroller(store, sfn, settings.state_machine_arn_template, metrics, settings.plans()),
            sfn=sfn,
            metrics=metrics,
            webhook_policy=WebhookPolicy.from_allowlist(settings.webhook_allow),
            secret_for=webhook_secret,
        )
    return _deps


SECRET_MAX_AGE_SECONDS = 300  # a rotated signing secret is used within 5 minutes; one GetParameter per 5 minutes


def webhook_secret(name: str) -> bytes:
    """A call_webhook step's `secret:`, an SSM parameter name (SecureString), through Powertools parameters (cached).
    The role needs ssm:GetParameter on it (and kms:Decrypt for a customer-managed key)."""
    from aws_lambda_powertools.utilities.parameters import get_parameter

    return str(get_parameter(name, decrypt=True, max_age=SECRET_MAX_AGE_SECONDS)).encode()


def reset() -> None:
    """Forget the cold-start state (the local runtime calls this when it swaps the environment)."""
    global _deps
    _deps = None


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = StepRequest.model_validate(event)
    except RequestError as err:
        # A payload this runner cannot read (a machine compiled by another version) fails the same way on every
        # try: InvalidStep, which the machine never retries, rather than a ValidationError retried three times.
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(payload)"
        raise InvalidStep(f"payload field {where}: {first['msg']} ({err.error_count()} problem(s))") from None
    logger.append_keys(workflow=request.workflow, op=request.op, contact_id=request.contact_id)
    result = run(request, deps())
    logger.debug("step done", extra={"result": result})
    return result
