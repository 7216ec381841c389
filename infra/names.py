"""Physical names both sides of a reference must agree on, built in one place.

State machines get deterministic names so the step runner's environment can name them (the ARN template) without
referring to the machines, which refer to the step runner: no dependency cycle."""

from __future__ import annotations

from aws_cdk import Aws

from shared import constants as C

STEP_RUNNER_ARN_PLACEHOLDER = "StepRunnerArn"  # ${StepRunnerArn} in definitions, a DefinitionSubstitutions key


def machine_name(prefix: str, workflow: str) -> str:
    return f"{prefix}-{workflow}"


def machine_arn(prefix: str, workflow: str) -> str:
    """Unqualified state machine ARN: what IAM authorises StartExecution and SendTaskSuccess against, even when the
    call names the alias (Step Functions authorises a version or alias through its state machine's ARN)."""
    return f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:stateMachine:{machine_name(prefix, workflow)}"


def machines_arn_pattern(prefix: str) -> str:
    """Every state machine of one stage (and their versions and aliases). Stage names have no hyphen, so
    `stepwise-dev-*` cannot match another stage's machines (`stepwise-dev2-...` does not start `stepwise-dev-`)."""
    return machine_arn(prefix, "*")


def executions_arn_pattern(prefix: str) -> str:
    """Every execution of one stage's state machines: execution names are made per contact at run time."""
    return f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:{machine_name(prefix, '*')}:*"


def alias_arn_template(prefix: str) -> str:
    """The step runner's C.ENV_STATE_MACHINE_ARN_TEMPLATE: `{workflow}` stays literal for the enroller to fill in.
    It names the alias, so a contact entering now runs the version deployed now."""
    return f"{machine_arn(prefix, '{workflow}')}:{C.STATE_MACHINE_ALIAS}"
