"""The step runner Lambda (functions/step_runner/): its code asset, layers, role and environment."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import names
from infra.assets import REPO, build_layer, stage_code
from infra.config import StackConfig
from infra.nag import acknowledge
from infra.names import parameter_arn
from shared import constants as C
from shared.history import dump_entry_plans
from shared.workflow.compiler import entry_plans
from shared.workflow.model import Workflow

RUNTIME = lambda_.Runtime.PYTHON_3_12  # keep in step with infra/assets.py LAMBDA_PYTHON and the layer below
ARCHITECTURE = lambda_.Architecture.X86_64
HANDLER = "functions.step_runner.handler.handler"
# What goes into the asset: the function's folder plus shared/, at their repo paths (see CONVENTIONS.md).
CODE_PARTS = ("functions/__init__.py", "functions/step_runner", "shared")
REQUIREMENTS = REPO / "infra" / "requirements" / "step_runner.txt"
POWERTOOLS_LAYER = "AWSLambdaPowertoolsPythonV3-python312-x86_64"
POWERTOOLS_ACCOUNT = "017000801446"

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


class StepRunner(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        table: dynamodb.ITable,
        workflows: Sequence[Workflow],
    ) -> None:
        super().__init__(scope, construct_id)
        function_name = f"{config.prefix}-step-runner"
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/lambda/{function_name}",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Stepwise step runner: the contact table, this stage's state machines, its own logs",
        )
        self.role.add_to_policy(iam.PolicyStatement(actions=list(TABLE_ACTIONS), resources=[table.table_arn]))
        # This stage's machines by name prefix rather than one ARN per workflow: a role's inline policies are
        # limited to 10,240 characters, which a list of ARNs would exceed at about fifty workflows.
        self.role.add_to_policy(
            iam.PolicyStatement(actions=list(MACHINE_ACTIONS), resources=[names.machines_arn_pattern(config.prefix)])
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=list(EXECUTION_ACTIONS), resources=[names.executions_arn_pattern(config.prefix)]
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        powertools = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "Powertools",
            f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{POWERTOOLS_ACCOUNT}:layer:{POWERTOOLS_LAYER}"
            f":{config.powertools_layer_version}",
        )
        self.deps = deps = lambda_.LayerVersion(
            self,
            "Dependencies",
            code=lambda_.Code.from_asset(str(build_layer(REQUIREMENTS, "step-runner-deps"))),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description=f"Step runner dependencies not in the runtime or the Powertools layer ({REQUIREMENTS.name})",
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=function_name,
            description="Stepwise: performs one state's worth of a workflow for one contact",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=HANDLER,
            code=lambda_.Code.from_asset(str(stage_code(CODE_PARTS, "step-runner", generated=generated(workflows)))),
            layers=[powertools, deps],
            role=self.role,
            log_group=self.log_group,
            memory_size=512,
            # The longest call is a webhook (its own timeout, 10 s by default) plus a few DynamoDB round trips.
            timeout=Duration.seconds(C.STEP_RUNNER_TIMEOUT_SECONDS),
            tracing=lambda_.Tracing.ACTIVE,
            environment=environment(config, table),
        )
        secrets = webhook_secrets(workflows)
        if secrets:
            # call_webhook's `secret:` names a SecureString the step runner reads (handler.webhook_secret): those
            # parameters only, decrypted through SSM only.
            self.role.add_to_policy(
                iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[parameter_arn(n) for n in secrets])
            )
            self.role.add_to_policy(
                iam.PolicyStatement(
                    actions=["kms:Decrypt"],
                    resources=[f"arn:{Aws.PARTITION}:kms:{Aws.REGION}:{Aws.ACCOUNT_ID}:key/*"],
                    conditions={"StringEquals": {"kms:ViaService": f"ssm.{Aws.REGION}.amazonaws.com"}},
                )
            )
            acknowledge(
                self.role,
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:kms:<AWS::Region>:<AWS::AccountId>:key/*]",
                "kms:Decrypt only through SSM (kms:ViaService) for the webhook signing secrets the workflows name: "
                "the key is the operator's choice (aws/ssm by default), unknown at deploy time.",
            )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "Resource * is only on xray:PutTraceSegments and xray:PutTelemetryRecords (active tracing), which have "
            "no resource-level permissions.",
        )
        acknowledge(
            self.role,
            f"AwsSolutions-IAM5[Resource::{_nag_arn(names.machines_arn_pattern(config.prefix))}]",
            "StartExecution (through the live alias) and SendTaskSuccess on this stage's state machines only: "
            "the workflows deployed with the stack, matched by their name prefix.",
        )
        acknowledge(
            self.role,
            f"AwsSolutions-IAM5[Resource::{_nag_arn(names.executions_arn_pattern(config.prefix))}]",
            "DescribeExecution and StopExecution on executions of this stage's state machines: execution names "
            "are made per contact at run time (a hash of contact, workflow and event key).",
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Pinned to python3.12: the Powertools layer variant (python312) and the pip-built dependency layer "
            "target it; move RUNTIME, POWERTOOLS_LAYER and assets.LAMBDA_PYTHON together.",
        )


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


def _nag_arn(arn: str) -> str:
    """An ARN as cdk-nag spells it in a finding id: pseudo parameters as <AWS::Name>."""
    for token, name in ((Aws.PARTITION, "Partition"), (Aws.REGION, "Region"), (Aws.ACCOUNT_ID, "AccountId")):
        arn = arn.replace(token, f"<AWS::{name}>")
    return arn


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
    }
