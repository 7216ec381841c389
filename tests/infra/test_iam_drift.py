"""Each function's IAM actions follow its code: every AWS call reachable from its handler is granted, and every
granted action has a call. Catches a new boto3 call in shared/ before a deploy fails with AccessDenied."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from infra.constructs.step_runner import EXECUTION_ACTIONS, MACHINE_ACTIONS, TABLE_ACTIONS
from tests.infra.conftest import REPO, Synth

# boto3 method -> the IAM actions it needs. A transaction is authorised per item (Put, Update, Delete).
DYNAMODB = {
    "get_item": {"dynamodb:GetItem"},
    "put_item": {"dynamodb:PutItem"},
    "update_item": {"dynamodb:UpdateItem"},
    "delete_item": {"dynamodb:DeleteItem"},
    "query": {"dynamodb:Query"},
    "batch_get_item": {"dynamodb:BatchGetItem"},
    "batch_write_item": {"dynamodb:BatchWriteItem"},
    "transact_write_items": {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
}
STATES = {
    "start_execution": {"states:StartExecution"},
    "send_task_success": {"states:SendTaskSuccess"},
    "describe_execution": {"states:DescribeExecution"},
    "describe_state_machine": {"states:DescribeStateMachine"},
    "stop_execution": {"states:StopExecution"},
}
# Calls in the step runner's modules that the step runner itself never makes, and who does.
NOT_THE_STEP_RUNNERS = {
    "scan": "ContactStore.scan_prefix: the local runtime and reports",
    "create_table": "create_table: the local stack",
    "update_time_to_live": "create_table: the local stack",
}


def closure(module: str) -> set[Path]:
    """Source files of `module` and of every project module it imports, transitively."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        base = REPO / Path(*name.split("."))
        path = base.with_suffix(".py") if base.with_suffix(".py").exists() else base / "__init__.py"
        if path in seen or not path.exists():
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.split(".")[0] in ("shared", "functions")
            ):
                todo.append(node.module)
                todo.extend(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                todo.extend(a.name for a in node.names if a.name.split(".")[0] in ("shared", "functions"))
    return seen


def client_calls(paths: set[Path]) -> set[str]:
    """Methods called on anything named `client` or `sfn` (the injected boto3 clients)."""
    calls = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                if owner_name in ("client", "sfn"):
                    calls.add(node.func.attr)
    return calls


def test_every_call_the_step_runner_can_make_is_granted_and_nothing_more() -> None:
    files = closure("functions.step_runner.handler")
    assert REPO / "shared" / "store" / "contacts.py" in files and REPO / "shared" / "enrollment.py" in files
    calls = client_calls(files) - set(NOT_THE_STEP_RUNNERS)
    unknown = calls - set(DYNAMODB) - set(STATES)
    assert not unknown, f"new AWS calls in the step runner's code: map them to IAM actions here: {sorted(unknown)}"
    needed = set().union(*(DYNAMODB.get(c, set()) | STATES.get(c, set()) for c in calls))
    if any("ConditionCheck" in p.read_text() for p in files):
        needed.add("dynamodb:ConditionCheckItem")
    granted = set(TABLE_ACTIONS) | set(MACHINE_ACTIONS) | set(EXECUTION_ACTIONS)
    assert needed == granted
    # call_webhook's signing secret: Powertools get_parameter, granted per secret the workflows name
    # (test_stack.py test_step_runner_may_read_exactly_the_webhook_secrets_the_workflows_name).
    assert any(marker in p.read_text() for p in files for marker in SSM_USE)


# ---- the ways in and out: every function's policy in the synthesized template against its code ----------------

# boto3 method -> IAM actions, for every service the new functions call. Method names do not collide across these
# services, so the method alone names the action.
ACTIONS: dict[str, set[str]] = {
    **DYNAMODB,
    "transact_get_items": {"dynamodb:GetItem"},
    **STATES,
    "send_task_failure": {"states:SendTaskFailure"},
    "put_object": {"s3:PutObject"},
    "get_object": {"s3:GetObject"},
    "head_object": {"s3:GetObject"},  # HeadObject is authorised as GetObject
    "send_message": {"sqs:SendMessage"},
    "create_schedule": {"scheduler:CreateSchedule", "iam:PassRole"},  # the target's role is passed to Scheduler
    "delete_schedule": {"scheduler:DeleteSchedule"},
    "send_email": {"ses:SendEmail"},  # SES v2 SendEmail, Raw content included
    "send_text_message": {"sms-voice:SendTextMessage"},
    # SnsAlert: the alarm topic, encrypted with the stack's key (publishing needs the key's data keys).
    "publish": {"sns:Publish", "kms:Decrypt", "kms:GenerateDataKey*"},
}
# Powertools parameters (SSMProvider, parameters.get_parameter) call ssm:GetParameter, decrypted through KMS.
SSM_USE = ("SSMProvider(", "get_parameter(")
SSM_ACTIONS = {"ssm:GetParameter", "kms:Decrypt"}
# Calls in these modules that no deployed function makes, and who does.
NOT_IN_AWS = {
    "scan": "ContactStore.scan_prefix: the local runtime and reports",
    "create_table": "create_table: the local stack",
    "update_time_to_live": "create_table: the local stack",
    "create_schedule_group": "ScheduleStore.create_group: the local stack (the group is a stack resource in AWS)",
    "list_schedules": "ScheduleStore.names: Schedules.pending, the local clock and the CLI",
    "get_schedule": "ScheduleStore.get: Schedules.pending, the local clock and the CLI",
    "delete_object": "Archive.delete: `stepwise replay` with the operator's credentials",
    "get_paginator": "Archive.dead_letters (list_objects_v2): `stepwise replay` with the operator's credentials",
}
# What a function's role holds for its event source and its own telemetry, not for a call of its code.
PLUMBING = {
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
    "sqs:ReceiveMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueUrl",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
}

ROUTER_REACHES = {
    "shared/store/contacts.py": "ContactStore: the router's store (client('dynamodb'))",
    "shared/store/checkouts.py": "CheckoutStore over the same client: abandoned-checkout tracking",
    "shared/store/messages.py": "MessageStore over the same client: feedback marks the message it names",
    "shared/store/archive.py": "Archive (client('s3')): deliveries too large for SQS, dead letters",
    "shared/store/broadcasts.py": "BroadcastStore: list snapshots and the broadcast machine's executions",
    "shared/store/schedules.py": "ScheduleStore (client('scheduler')): abandonment and broadcast schedules",
    "shared/enrollment.py": "Enroller (client('stepfunctions')): StartExecution through the alias",
    "shared/routing.py": "Router: execution status of a run it resumes or completes",
    "shared/runtime/inbound.py": "status changes: the execution they name",
    "shared/waits.py": "SendTaskSuccess of a resumed wait",
}
ROUTER_UNREACHED = {
    "shared/messaging/channels.py": "SES and SMS channels are the sender's; the router builds only SnsAlert, the "
    "feedback handler's reputation alert (ROUTER_ONLY_FEEDBACK)",
}
# Calls that only the feedback handler makes (the others are not given the alarm topic).
ROUTER_ONLY_FEEDBACK = ACTIONS["publish"]  # SnsAlert: the reputation guard's pause alerts the team
INTAKE_REACHES = {
    "shared/store/contacts.py": "ContactStore for /unsubscribe/{token} only: get and apply_event",
    "shared/store/archive.py": "Archive (boto3.client('s3')): the raw delivery and an unresolved one's dead letter",
    "shared/store/deliveries.py": "Deliveries (client('dynamodb'), client('sqs')): the claim, the enqueue",
}
INTAKE_UNREACHED = {
    "shared/store/checkouts.py": "no ContactStore, so no CheckoutStore",
    "shared/store/messages.py": "no MessageStore: messages are the sender's and the router's",
    "shared/store/broadcasts.py": "broadcasts are the router's schedule handler's",
    "shared/store/schedules.py": "schedules are the router's",
    "shared/enrollment.py": "the intake never enrols: the router does, from the queue",
    "shared/routing.py": "the intake never routes: the router does, from the queue",
    "shared/runtime/inbound.py": "the router's entry points",
    "shared/waits.py": "the intake never resumes a wait",
}
# Methods of reached modules the intake never calls.
INTAKE_NEVER = {
    "get_object": "Archive.get_json: the router (large deliveries) and replay read; the intake writes",
    "batch_get_item": "ContactStore.batch_get: identity lookups of routing; unsubscribe reads one profile",
    "query": "ContactStore queries (activity, waits, lists): routing's; unsubscribe reads one profile",
    "transact_write_items": "ContactStore transactions (upsert, commit_step): routing's, not apply_event's",
}
SENDER_REACHES = {
    "shared/store/messages.py": "MessageStore (boto3.client('dynamodb')): claim, mark, caps, suppression",
    "shared/messaging/channels.py": "SesEmailChannel / SesAlertChannel (sesv2), SmsChannel (pinpoint-sms-voice-v2)",
}
SENDER_UNREACHED = {
    "shared/store/contacts.py": "the sender builds no ContactStore (it imports its key helpers only)",
}


def _calls_by_file(paths: set[Path]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                if name in ("client", "sfn", "s3", "sqs", "dynamodb", "ddb", "scheduler", "ses", "sms"):
                    out.setdefault(path.relative_to(REPO).as_posix(), set()).add(node.func.attr)
    return out


def needed_actions(
    module: str, reaches: dict[str, str], unreached: dict[str, str], never: dict[str, str] | None = None
) -> set[str]:
    """The IAM actions the calls of `module`'s reachable files need; every file of its import closure that calls
    AWS must be classified as reached or not (with why), so a new module is never silently left out."""
    files = closure(module)
    by_file = _calls_by_file(files)
    assert set(by_file) == set(reaches) | set(unreached), (
        f"{module}: classify these files (reached or not, and why) in tests/infra/test_iam_drift.py: "
        f"{sorted(set(by_file) ^ (set(reaches) | set(unreached)))}"
    )
    calls = set().union(*(by_file[f] for f in reaches)) - set(NOT_IN_AWS) - set(never or {})
    unknown = calls - set(ACTIONS)
    assert not unknown, f"{module}: new AWS calls, map them to IAM actions in ACTIONS: {sorted(unknown)}"
    needed = set().union(*(ACTIONS[c] for c in calls))
    # A transaction's ConditionCheck item (built anywhere in the closure, shared/lifecycle.py today) is authorised
    # as ConditionCheckItem.
    if "transact_write_items" in calls and any('"ConditionCheck"' in p.read_text() for p in files):
        needed.add("dynamodb:ConditionCheckItem")
    if any(marker in p.read_text() for p in files for marker in SSM_USE):
        needed |= SSM_ACTIONS
    return needed


def granted_actions(synth: Synth, fn: Any, ignore_resources: list[str]) -> set[str]:
    """Actions of the function role's policy in the template, less its plumbing and statements on
    `ignore_resources` (logical ids: the on-failure destination its event source writes to)."""
    role = synth.logical_id(fn.role)
    out: set[str] = set()
    for policy in synth.of_type("AWS::IAM::Policy").values():
        if {"Ref": role} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if any(lid in json.dumps(statement["Resource"]) for lid in ignore_resources):
                continue
            actions = statement["Action"]
            out |= {actions} if isinstance(actions, str) else set(actions)
    return out - PLUMBING


def test_intake_policy_is_what_its_code_calls(synth: Synth) -> None:
    needed = needed_actions("functions.trigger_router.intake", INTAKE_REACHES, INTAKE_UNREACHED, INTAKE_NEVER)
    assert needed == granted_actions(synth, synth.stack.trigger_router.intake, [])


@pytest.mark.parametrize("key", ["queue", "stream", "status", "schedule", "feedback"])
def test_router_policies_are_what_its_code_calls(synth: Synth, key: str) -> None:
    # The five entry points share one module and one cold start (router.deps): the same calls are reachable.
    needed = needed_actions("functions.trigger_router.router", ROUTER_REACHES, ROUTER_UNREACHED)
    if key == "feedback":
        needed |= ROUTER_ONLY_FEEDBACK
    failed = synth.logical_id(synth.stack.trigger_router.failed_events)
    assert needed == granted_actions(synth, synth.stack.trigger_router.routers[key], [failed])


def test_sender_policy_is_what_its_code_calls(synth: Synth) -> None:
    needed = needed_actions("functions.senders.handler", SENDER_REACHES, SENDER_UNREACHED)
    failed = synth.logical_id(synth.stack.trigger_router.failed_events)
    assert needed == granted_actions(synth, synth.stack.senders.sender, [failed])
