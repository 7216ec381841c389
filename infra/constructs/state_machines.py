"""One Standard state machine per workflow file, compiled at synth time by shared/workflow/compiler.py, with a
version published per definition and a `live` alias that new contacts enter through."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra import names
from infra.config import StackConfig
from infra.nag import acknowledge
from shared import constants as C
from shared.workflow.compiler import compile_workflow
from shared.workflow.lint import lint_together
from shared.workflow.model import Workflow, workflow_files
from stepwise.cli import check_file


@dataclass(frozen=True)
class CompiledWorkflow:
    path: Path
    workflow: Workflow
    definition: str  # ASL JSON with ${StepRunnerArn} where the step runner's ARN goes

    @property
    def name(self) -> str:
        return self.workflow.name

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.definition.encode()).hexdigest()[:16]


class WorkflowLintError(ValueError):
    """Workflow files the synth refuses: `problems` are the lines `stepwise validate` prints for them, one
    'FILE: step X, field F: message' a line, and the message is those lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_workflows(folder: Path) -> list[CompiledWorkflow]:
    """Every workflow file of the folder (*.yaml, *.yml; subfolders such as samples/ are not workflows), compiled.

    Nothing is built unless every file passes what `stepwise validate` checks: each file loads, lints and compiles
    (cli.check_file), no two files name the same workflow, and the names one file gives another (start_workflow,
    campaigns) are defined (lint_together). Otherwise WorkflowLintError lists every problem of every file.

    The definition is compiled with a placeholder for the function's ARN and the ARN is put in by CloudFormation's
    DefinitionSubstitutions: the template keeps the whole definition as one literal string, which is what the
    compiler produced and what cfn-lint's state machine rule can check."""
    problems: list[str] = []
    seen: dict[str, Path] = {}
    loaded: dict[str, Workflow] = {}  # file -> workflow, the first file of each name only
    for path in workflow_files(folder):
        wf, found = check_file(path)
        problems.extend(found)
        if wf is None:
            continue
        if wf.name in seen:
            problems.append(f"{path}: workflow name {wf.name!r} is also the name in {seen[wf.name]}")
            continue
        seen[wf.name] = path
        loaded[str(path)] = wf
    # One file per name, so lint_together does not report the duplicate names found above a second time.
    problems.extend(lint_together(loaded))
    if problems:
        raise WorkflowLintError(problems)
    placeholder = "${" + names.STEP_RUNNER_ARN_PLACEHOLDER + "}"
    out: list[CompiledWorkflow] = []
    for file, wf in loaded.items():
        asl = compile_workflow(wf, placeholder)
        out.append(CompiledWorkflow(Path(file), wf, json.dumps(asl, separators=(",", ":"))))
    return out


@dataclass
class Machine:
    compiled: CompiledWorkflow
    state_machine: sfn.StateMachine
    version: sfn.CfnStateMachineVersion
    alias: sfn.CfnStateMachineAlias


class StateMachines(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        workflows: list[CompiledWorkflow],
        step_runner: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        # One role for every machine: they all need the same (invoke the step runner, deliver logs, trace), and a
        # role per machine would cost two of the stack's 500 resources per workflow.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="Stepwise state machines: invoke the step runner, deliver logs, trace",
        )
        # The definitions name the unqualified function ARN, so that ARN alone (no `:*` for versions or aliases).
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[step_runner.function_arn])
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "Resource * is only on the log-delivery actions (logs:CreateLogDelivery, PutResourcePolicy, ...) and "
            "the X-Ray actions CDK adds for logging and tracing: neither service supports resource-level permissions "
            "for them.",
        )
        self.machines: dict[str, Machine] = {}
        for compiled in workflows:
            self.machines[compiled.name] = self._machine(config, compiled, step_runner)

    def _machine(self, config: StackConfig, compiled: CompiledWorkflow, step_runner: lambda_.IFunction) -> Machine:
        scope = Construct(self, compiled.name)
        name = names.machine_name(config.prefix, compiled.name)
        log_group = logs.LogGroup(
            scope,
            "Logs",
            # Under /aws/vendedlogs/ so Step Functions' log delivery doesn't grow a resource policy per group.
            log_group_name=f"/aws/vendedlogs/states/{name}",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        machine = sfn.StateMachine(
            scope,
            "StateMachine",
            state_machine_name=name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_string(compiled.definition),
            definition_substitutions={names.STEP_RUNNER_ARN_PLACEHOLDER: step_runner.function_arn},
            # Every state transition, without inputs and outputs: those carry contact data, which the execution
            # history already keeps (90 days) behind Step Functions' own permissions.
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            tracing_enabled=True,
            role=self.role,
        )
        # A new definition gets a new version (the description changes, so CloudFormation replaces the resource);
        # old versions are retained so contacts inside keep running the version they entered with.
        version = sfn.CfnStateMachineVersion(
            scope,
            "Version",
            state_machine_arn=machine.state_machine_arn,
            state_machine_revision_id=machine.state_machine_revision_id,
            description=f"{compiled.name} definition {compiled.digest}",
        )
        version.apply_removal_policy(RemovalPolicy.RETAIN)
        alias = sfn.CfnStateMachineAlias(
            scope,
            "Alias",
            name=C.STATE_MACHINE_ALIAS,
            description=f"What new contacts of {compiled.name} enter",
            routing_configuration=[
                sfn.CfnStateMachineAlias.RoutingConfigurationVersionProperty(
                    state_machine_version_arn=version.attr_arn, weight=100
                )
            ],
        )
        return Machine(compiled, machine, version, alias)
