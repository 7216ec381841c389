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


def function_name(prefix: str, role: str) -> str:
    return f"{prefix}-{role}"


def function_arn(prefix: str, role: str) -> str:
    """A function's ARN from its physical name: what another function's environment (or its own) can name without
    a reference, so the schedule handler can be the target of the schedules it and the router create."""
    return f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{Aws.ACCOUNT_ID}:function:{function_name(prefix, role)}"


def broadcast_machine_name(prefix: str) -> str:
    """The fixed-date broadcast machine. An underscore, which workflow names cannot hold, so it is never taken for
    a workflow: `stepwise-dev-*` (the step runner's StartExecution grant, the status rule) does not match it."""
    return f"{prefix}_broadcast"


def broadcast_machine_arn(prefix: str) -> str:
    name = broadcast_machine_name(prefix)
    return f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:stateMachine:{name}"


def broadcast_executions_arn(prefix: str) -> str:
    name = broadcast_machine_name(prefix)
    return f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:{name}:*"


def broadcast_children_arn(prefix: str) -> str:
    """The broadcast machine's Distributed Map child executions: execution:<machine>/<map run>:<name>."""
    name = broadcast_machine_name(prefix)
    return f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:{name}/*"


def schedule_group_name(prefix: str) -> str:
    return prefix


def schedules_arn_pattern(prefix: str) -> str:
    """Every schedule of this stage's group (one-time abandonment and broadcast schedules, named at run time)."""
    group = schedule_group_name(prefix)
    return f"arn:{Aws.PARTITION}:scheduler:{Aws.REGION}:{Aws.ACCOUNT_ID}:schedule/{group}/*"


def parameter_arn(name: str) -> str:
    """An SSM parameter's ARN from its name, with or without the leading slash."""
    return f"arn:{Aws.PARTITION}:ssm:{Aws.REGION}:{Aws.ACCOUNT_ID}:parameter/{name.lstrip('/')}"


def sms_origination_arn(origination: str) -> str:
    """The ARN IAM authorises SendTextMessage against, from the ARN or id the sms_origination context gives."""
    if origination.startswith("arn:"):
        return origination
    kind = "phone-number" if origination.startswith("phone-") else "pool"
    return f"arn:{Aws.PARTITION}:sms-voice:{Aws.REGION}:{Aws.ACCOUNT_ID}:{kind}/{origination}"


def sms_configuration_set_arn(name: str) -> str:
    return f"arn:{Aws.PARTITION}:sms-voice:{Aws.REGION}:{Aws.ACCOUNT_ID}:configuration-set/{name}"


def ses_identity_arns(address: str) -> list[str]:
    """SES authorises a send against the identity that verifies the From address: the address itself or its
    domain, whichever the operator verified. Both, and nothing else."""
    domain = address.rsplit("@", 1)[1]
    base = f"arn:{Aws.PARTITION}:ses:{Aws.REGION}:{Aws.ACCOUNT_ID}:identity"
    return [f"{base}/{domain}", f"{base}/{address}"]


def ses_configuration_set_arn(name: str) -> str:
    return f"arn:{Aws.PARTITION}:ses:{Aws.REGION}:{Aws.ACCOUNT_ID}:configuration-set/{name}"
