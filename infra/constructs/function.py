"""One Lambda function as every Stepwise function is deployed: its own role (nothing managed), its own log group
with a retention, active tracing, the Powertools layer, the shared runtime and architecture."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from aws_cdk import Aws, BundlingOptions, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import names
from infra.assets import LAMBDA_TASK_ROOT, has_bytecode
from infra.config import StackConfig
from infra.nag import acknowledge

RUNTIME = lambda_.Runtime.PYTHON_3_12  # keep in step with infra/assets.py LAMBDA_PYTHON and the layers
ARCHITECTURE = lambda_.Architecture.X86_64
POWERTOOLS_LAYER = "AWSLambdaPowertoolsPythonV3-python312-x86_64"
POWERTOOLS_ACCOUNT = "017000801446"
PARAMETER_ACTIONS = ("ssm:GetParameter",)  # Powertools SSMProvider.get: one parameter by name, decrypted


def powertools_layer(scope: Construct, config: StackConfig) -> lambda_.ILayerVersion:
    return lambda_.LayerVersion.from_layer_version_arn(
        scope,
        "Powertools",
        f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{POWERTOOLS_ACCOUNT}:layer:{POWERTOOLS_LAYER}"
        f":{config.powertools_layer_version}",
    )


# The fallback when no CPython 3.12 built the asset's bytecode (infra/assets.py lambda_compiler): the Lambda's own
# build image compiles it in Docker, as CDK bundles any asset (a deploy needs Docker then; `make install` brings
# Pyodide, so the Makefile's synth and deploy never need it).
BUNDLE_COMMAND = (
    "cp -R /asset-input/. /asset-output/ && "
    f"python -m compileall -q -d {LAMBDA_TASK_ROOT} --invalidation-mode unchecked-hash /asset-output"
)


def lambda_code(asset: Path) -> lambda_.Code:
    """The code of a function from a stage_code folder: as it is when it carries python3.12 bytecode, else bundled
    by RUNTIME's build image, which compiles it (synth skips bundling for stacks outside `aws:cdk:bundling-stacks`)."""
    if has_bytecode(asset):
        return lambda_.Code.from_asset(str(asset))
    return lambda_.Code.from_asset(
        str(asset), bundling=BundlingOptions(image=RUNTIME.bundling_image, command=["bash", "-c", BUNDLE_COMMAND])
    )


def nag_arn(arn: str) -> str:
    """An ARN as cdk-nag spells it in a finding id: pseudo parameters as <AWS::Name>."""
    for token, name in ((Aws.PARTITION, "Partition"), (Aws.REGION, "Region"), (Aws.ACCOUNT_ID, "AccountId")):
        arn = arn.replace(token, f"<AWS::{name}>")
    return arn


class StepwiseFunction(Construct):
    """`function`, `role` (its only policy is the statements added to it) and `log_group` of one handler. `layers`
    may be a function of this construct, for layers that are its own children."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        role_name: str,
        handler: str,
        code: lambda_.Code,
        layers: Sequence[lambda_.ILayerVersion] | Callable[[Construct], Sequence[lambda_.ILayerVersion]],
        environment: Mapping[str, str],
        description: str,
        timeout: Duration,
        memory_size: int = 512,
        reserved_concurrency: int | None = None,
        star_reason: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        self.function_name = names.function_name(config.prefix, role_name)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/lambda/{self.function_name}",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Stepwise {role_name}: {description}"[:1000],
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[self.log_group.log_group_arn]
            )
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=self.function_name,
            description=f"Stepwise: {description}"[:256],
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=handler,
            code=code,
            layers=list(layers(self) if callable(layers) else layers),
            role=self.role,
            log_group=self.log_group,
            memory_size=memory_size,
            timeout=timeout,
            tracing=lambda_.Tracing.ACTIVE,
            environment=dict(environment),
            reserved_concurrent_executions=reserved_concurrency,
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "Resource * is only on xray:PutTraceSegments and xray:PutTelemetryRecords (active tracing), which have "
            "no resource-level permissions" + (f"; {star_reason}" if star_reason else "."),
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Pinned to python3.12: the Powertools layer variant (python312) and the pip-built dependency layers "
            "target it; move RUNTIME, POWERTOOLS_LAYER and assets.LAMBDA_PYTHON together.",
        )

    def allow(self, actions: Sequence[str], resources: Sequence[str], **conditions: dict[str, object]) -> None:
        self.role.add_to_policy(
            iam.PolicyStatement(actions=list(actions), resources=list(resources), conditions=conditions or None)
        )

    def allow_parameters(self, parameter_names: Sequence[str], *, wildcard_reason: str = "") -> None:
        """GetParameter on the named SSM parameters (SecureStrings the operator creates; a name ending in * is a
        path), and kms:Decrypt through SSM only, so a customer-managed key works too when its key policy lets the
        role in (the AWS-managed aws/ssm key needs no grant, but the operator chooses the key)."""
        self.allow(PARAMETER_ACTIONS, [names.parameter_arn(n) for n in parameter_names])
        self.allow(
            ["kms:Decrypt"],
            [f"arn:{Aws.PARTITION}:kms:{Aws.REGION}:{Aws.ACCOUNT_ID}:key/*"],
            StringEquals={"kms:ViaService": f"ssm.{Aws.REGION}.amazonaws.com"},
        )
        for n in parameter_names:
            if n.endswith("*"):
                acknowledge(
                    self.role, f"AwsSolutions-IAM5[Resource::{nag_arn(names.parameter_arn(n))}]", wildcard_reason
                )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:kms:<AWS::Region>:<AWS::AccountId>:key/*]",
            "kms:Decrypt only through SSM (kms:ViaService) for this stage's SecureString parameters: the key is "
            "the operator's choice (aws/ssm by default), unknown at deploy time.",
        )
