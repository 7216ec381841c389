"""The step runner Lambda (functions/step_runner/): its code asset, layers, role and environment."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra import names
from infra.assets import REPO, build_layer, stage_code
from infra.config import StackConfig
from infra.constructs.function import ARCHITECTURE, RUNTIME, StepwiseFunction, lambda_code, nag_arn, powertools_layer
from infra.nag import acknowledge
from shared import constants as C
from shared.history import dump_entry_plans
from shared.workflow.compiler import entry_plans
from shared.workflow.model import Workflow

HANDLER = "functions.step_runner.handler.handler"
# What goes into the asset: the function's folder plus shared/, at their repo paths (see CONVENTIONS.md), less
# the compile-time modules (infra/assets.py COMPILE_TIME_ONLY).
CODE_PARTS = ("functions/__init__.py", "functions/step_runner", "shared")
REQUIREMENTS = REPO / "infra" / "requirements" / "step_runner.txt"

# Exactly what the step runner's code calls (boto3 call sites in shared/store/contacts.py, shared/enrollment.py,
# shared/waits.py). TransactWriteItems is authorised per item as PutItem / UpdateItem / DeleteItem; no
# ConditionCheck item is ever written. The GSI is queried only by the trigger router (list members).
TABLE_ACTIONS = (
    "dynamodb:GetItem",  # ContactStore.get, get_item (enrolment records, a split's recorded branch)
    "dynamodb:BatchGetItem",  # ContactStore.batch_get (identity_owners: who holds an identity)
    "dynamodb:PutItem",  # put_item (enrolment records), and Put items of commit_step / transact
    "dynamodb:UpdateItem",  # Update items of commit_step / transact (profile changes, split counters)
    "dynamodb:DeleteItem",  # Delete items of commit_step (list membership, a completed wait record)
    "dynamodb:ConditionCheckItem",  # shared/lifecycle.py: the workflow's activation, checked in an enrolment
    "dynamodb:Query",  # query_prefix (activity, wait records)
)
MACHINE_ACTIONS = (
    "states:StartExecution",  # Enroller.enrol (start_workflow steps, campaign subscriptions), through the alias
    "states:SendTaskSuccess",  # resume_wait, when a wait_until condition already holds
    "states:DescribeStateMachine",  # Enroller.deployed_at: a workflow's activation is its machine's creation
)
EXECUTION_ACTIONS = (
    "states:DescribeExecution",  # Enroller.is_running
    "states:StopExecution",  # Enroller.stop (unsubscribe from a campaign)
)


class StepRunner(StepwiseFunction):
    """The step runner as every Stepwise function (function.py: role, log group, tracing, Powertools layer), with
    its own dependency layer (`deps`, which the trigger router's functions share)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        table: dynamodb.ITable,
        workflows: Sequence[Workflow],
    ) -> None:
        def layers(this: Construct) -> list[lambda_.ILayerVersion]:
            # The dependency layer, which the trigger router's functions share: none while the requirements
            # name no package (the runtime path needs only boto3, pydantic and Powertools).
            self.deps: lambda_.ILayerVersion | None = None
            if requirements(REQUIREMENTS):
                self.deps = lambda_.LayerVersion(
                    this,
                    "Dependencies",
                    code=lambda_.Code.from_asset(str(build_layer(REQUIREMENTS, "step-runner-deps"))),
                    compatible_runtimes=[RUNTIME],
                    compatible_architectures=[ARCHITECTURE],
                    description="Step runner dependencies not in the runtime or the Powertools layer "
                    f"({REQUIREMENTS.name})",
                )
            return [powertools_layer(this, config), *([self.deps] if self.deps else [])]

        super().__init__(
            scope,
            construct_id,
            config=config,
            role_name="step-runner",
            handler=HANDLER,
            code=lambda_code(stage_code(CODE_PARTS, "step-runner", generated=generated(workflows))),
            layers=layers,
            environment=environment(config, table),
            description="performs one state's worth of a workflow for one contact",
            # The longest call is a webhook (its own timeout, 10 s by default) plus a few DynamoDB round trips.
            timeout=Duration.seconds(C.STEP_RUNNER_TIMEOUT_SECONDS),
        )
        self.allow(TABLE_ACTIONS, [table.table_arn])
        # This stage's machines by name prefix rather than one ARN per workflow: a role's inline policies are
        # limited to 10,240 characters, which a list of ARNs would exceed at about fifty workflows.
        self.allow(MACHINE_ACTIONS, [names.machines_arn_pattern(config.prefix)])
        self.allow(EXECUTION_ACTIONS, [names.executions_arn_pattern(config.prefix)])
        secrets = webhook_secrets(workflows)
        if secrets:
            # call_webhook's `secret:` names a SecureString the step runner reads (handler.webhook_secret): those
            # parameters only, decrypted through SSM only.
            self.allow_parameters(secrets)
        acknowledge(
            self.role,
            f"AwsSolutions-IAM5[Resource::{nag_arn(names.machines_arn_pattern(config.prefix))}]",
            "StartExecution (through the live alias) and SendTaskSuccess on this stage's state machines only: "
            "the workflows deployed with the stack, matched by their name prefix.",
        )
        acknowledge(
            self.role,
            f"AwsSolutions-IAM5[Resource::{nag_arn(names.executions_arn_pattern(config.prefix))}]",
            "DescribeExecution and StopExecution on executions of this stage's state machines: execution names "
            "are made per contact at run time (a hash of contact, workflow and event key).",
        )


def requirements(path: Path) -> list[str]:
    """The requirement lines of a requirements file (comments and blank lines left out)."""
    return [line for raw in path.read_text().splitlines() if (line := raw.split("#", 1)[0].strip())]


def webhook_secrets(workflows: Sequence[Workflow]) -> list[str]:
    """The SSM parameter names the workflows' call_webhook steps sign with (their `secret:`), sorted, once each."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            hook = value.get("call_webhook")
            if isinstance(hook, dict) and hook.get("secret"):
                found.add(str(hook["secret"]))
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for wf in workflows:
        walk(wf.model_dump(mode="json", by_alias=True, exclude_none=True).get("steps", []))
    return sorted(found)


def generated(workflows: Sequence[Workflow]) -> dict[str, bytes]:
    """Files made at synth for the asset: the entry plans of the workflows deployed with it, which the enroller
    reads to record the waits a run starts at (shared/history.py EntryPlan)."""
    return {C.ENTRY_PLANS_FILE: dump_entry_plans(entry_plans(list(workflows)))}


def environment(config: StackConfig, table: dynamodb.ITable) -> dict[str, str]:
    """The step runner's environment, keyed by the constants its Settings.from_env reads.

    POWERTOOLS_SERVICE_NAME is deliberately absent: Powertools adds a `service` dimension to every EMF metric when
    it is set, and the dashboards' metrics are keyed by exactly {workflow, step[, branch | reason]}. The logger
    takes its service name from the code (C.SERVICE_NAME)."""
    return {
        C.ENV_TABLE_NAME: table.table_name,
        C.ENV_STATE_MACHINE_ARN_TEMPLATE: names.alias_arn_template(config.prefix),
        C.ENV_METRICS_NAMESPACE: C.METRICS_NAMESPACE,
        C.ENV_STAGE: config.stage,
        C.ENV_ENTRY_PLANS: C.ENTRY_PLANS_FILE,
        # call_webhook's allowlist (cdk.json webhook_allow), as shared/webhooks.parse_allowlist reads it; absent
        # when empty: https to public addresses only.
        **({C.ENV_WEBHOOK_ALLOW: " ".join(config.webhook_allow)} if config.webhook_allow else {}),
    }
