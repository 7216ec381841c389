"""Integration tests for the embedded local stack: real ASL in moto on a virtual clock, Lambda in-process."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import shared.clock
from stepwise.local import LocalStack
from tests.integration import handlers_for_tests as handlers

START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
HANDLERS = "tests.integration.handlers_for_tests"
SEVEN_DAYS = 7 * 24 * 3600


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    handlers.reset()
    with LocalStack(start=START) as local:
        yield local
    handlers.reset()


class RealTime:
    """Asserts a block of test code stays within a real-time budget."""

    def __init__(self, budget_seconds: float) -> None:
        self.budget = budget_seconds
        self.elapsed = 0.0

    def __enter__(self) -> RealTime:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self._t0
        assert self.elapsed < self.budget, f"took {self.elapsed:.2f}s real time, budget {self.budget}s"


def lambda_task(function_arn: str, next_state: str | None = None, **extra: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": function_arn, "Payload.$": "$"},
        "OutputPath": "$.Payload",
        **extra,
    }
    if next_state is None:
        task["End"] = True
    else:
        task["Next"] = next_state
    return task


def start(stack: LocalStack, machine_arn: str, payload: dict[str, Any] | None = None) -> str:
    response = stack.sfn.start_execution(stateMachineArn=machine_arn, input=json.dumps(payload or {}))
    return str(response["executionArn"])


def describe(stack: LocalStack, execution_arn: str) -> dict[str, Any]:
    result: dict[str, Any] = stack.sfn.describe_execution(executionArn=execution_arn)
    return result


def output_of(stack: LocalStack, execution_arn: str) -> Any:
    return json.loads(describe(stack, execution_arn)["output"])


def test_three_day_wait_runs_in_virtual_time(stack: LocalStack) -> None:
    machine = stack.create_state_machine(
        "wait-three-days",
        {
            "StartAt": "Wait",
            "States": {
                "Wait": {"Type": "Wait", "Seconds": 3 * 24 * 3600, "Next": "Done"},
                "Done": {"Type": "Pass", "End": True},
            },
        },
    )
    with RealTime(1.0):
        execution = start(stack, machine, {"contact": "c-1"})
        stack.run_all()

    assert describe(stack, execution)["status"] == "SUCCEEDED"
    assert output_of(stack, execution) == {"contact": "c-1"}
    assert stack.clock.now() == START + timedelta(days=3)
    assert shared.clock.now() == START + timedelta(days=3)
    events = stack.history(execution)
    assert events[0]["timestamp"] == START
    assert events[-1]["type"] == "ExecutionSucceeded"
    assert events[-1]["timestamp"] == START + timedelta(days=3)
    assert not stack.clock.blocked_owners()


@pytest.mark.parametrize("tz", [None, "Asia/Tokyo", "America/Los_Angeles"])
def test_timestamp_path_wait_uses_virtual_utc(stack: LocalStack, tz: str | None) -> None:
    previous = os.environ.get("TZ")
    if tz is not None:
        os.environ["TZ"] = tz
        time.tzset()
    try:
        recorder = stack.create_function("record", f"{HANDLERS}.record", {})
        machine = stack.create_state_machine(
            "wait-until",
            {
                "StartAt": "Until",
                "States": {
                    "Until": {"Type": "Wait", "TimestampPath": "$.send_at", "Next": "Record"},
                    "Record": lambda_task(recorder),
                },
            },
        )
        send_at = START + timedelta(days=1, hours=3, minutes=25, seconds=7)
        with RealTime(1.0):
            execution = start(stack, machine, {"send_at": f"{send_at:%Y-%m-%dT%H:%M:%SZ}", "label": "sent"})
            stack.run_all()
    finally:
        if previous is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = previous
        time.tzset()

    assert describe(stack, execution)["status"] == "SUCCEEDED"
    assert [("sent", send_at.isoformat())] == handlers.RECORDS
    assert stack.clock.now() == send_at


def test_timestamp_in_the_past_does_not_wait(stack: LocalStack) -> None:
    machine = stack.create_state_machine(
        "wait-past",
        {
            "StartAt": "Until",
            "States": {"Until": {"Type": "Wait", "Timestamp": "2020-01-01T00:00:00Z", "End": True}},
        },
    )
    execution = start(stack, machine)
    stack.run_all()
    assert describe(stack, execution)["status"] == "SUCCEEDED"
    assert stack.clock.now() == START


def test_lambda_invoke_runs_handler_in_process(stack: LocalStack) -> None:
    echo = stack.create_function("echo", f"{HANDLERS}.echo", {"GREETING": "hello"})
    machine = stack.create_state_machine("echo", {"StartAt": "Echo", "States": {"Echo": lambda_task(echo)}})
    with RealTime(2.0):
        execution = start(stack, machine, {"contact_id": "c-42"})
        stack.run_all()

    assert describe(stack, execution)["status"] == "SUCCEEDED"
    assert output_of(stack, execution) == {
        "echo": {"contact_id": "c-42"},
        "greeting": "hello",
        "now": START.isoformat(),
    }
    [context] = handlers.CONTEXTS
    assert context["function_name"] == "echo"
    assert context["invoked_function_arn"] == echo
    assert context["memory_limit_in_mb"] == 256
    assert 0 < context["remaining_ms"] <= 30_000
    assert context["greeting"] == "hello"
    # The function's variables exist only for the duration of the call.
    assert "GREETING" not in os.environ


def test_typed_handler_error_is_caught_by_class_name(stack: LocalStack) -> None:
    finder = stack.create_function("find-contact", f"{HANDLERS}.find_contact", {})
    machine = stack.create_state_machine(
        "typed-error",
        {
            "StartAt": "Find",
            "States": {
                "Find": lambda_task(
                    finder,
                    "Found",
                    Catch=[
                        {"ErrorEquals": ["SomethingElse"], "Next": "Wrong"},
                        {"ErrorEquals": ["ContactNotFound"], "ResultPath": "$.error", "Next": "Missing"},
                    ],
                ),
                "Found": {"Type": "Pass", "End": True},
                "Wrong": {"Type": "Fail", "Error": "Wrong"},
                "Missing": {"Type": "Pass", "End": True},
            },
        },
    )
    execution = start(stack, machine, {"contact_id": "c-404"})
    stack.run_all()

    assert describe(stack, execution)["status"] == "SUCCEEDED"
    error = output_of(stack, execution)["error"]
    assert error["Error"] == "ContactNotFound"
    assert json.loads(error["Cause"])["errorMessage"] == "no contact c-404"


def test_uncaught_handler_error_fails_execution_with_its_type(stack: LocalStack) -> None:
    finder = stack.create_function("find-contact", f"{HANDLERS}.find_contact", {})
    machine = stack.create_state_machine("uncaught", {"StartAt": "Find", "States": {"Find": lambda_task(finder)}})
    execution = start(stack, machine, {"contact_id": "c-1"})
    stack.run_all()
    description = describe(stack, execution)
    assert description["status"] == "FAILED"
    assert description["error"] == "ContactNotFound"


def test_retry_intervals_are_virtual(stack: LocalStack) -> None:
    finder = stack.create_function("find-contact", f"{HANDLERS}.find_contact", {})
    machine = stack.create_state_machine(
        "retry",
        {
            "StartAt": "Find",
            "States": {
                "Find": lambda_task(
                    finder,
                    None,
                    Retry=[
                        {
                            "ErrorEquals": ["ContactNotFound"],
                            "IntervalSeconds": 3600,
                            "BackoffRate": 2.0,
                            "MaxAttempts": 2,
                        }
                    ],
                ),
            },
        },
    )
    with RealTime(2.0):
        execution = start(stack, machine, {"contact_id": "c-1"})
        stack.run_all()
    assert describe(stack, execution)["status"] == "FAILED"
    scheduled = [e["timestamp"] for e in stack.history(execution) if e["type"] == "TaskScheduled"]
    assert scheduled == [START, START + timedelta(hours=1), START + timedelta(hours=3)]


def callback_machine(stack: LocalStack, **task_extra: Any) -> str:
    storer = stack.create_function("store-token", f"{HANDLERS}.store_token", {})
    return stack.create_state_machine(
        "callback",
        {
            "StartAt": "AwaitReply",
            "States": {
                "AwaitReply": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                    "Parameters": {"FunctionName": storer, "Payload": {"token.$": "$$.Task.Token"}},
                    "TimeoutSeconds": SEVEN_DAYS,
                    "ResultPath": "$.reply",
                    "Catch": [
                        {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "TimedOut"},
                        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"},
                    ],
                    "Next": "Replied",
                    **task_extra,
                },
                "Replied": {"Type": "Pass", "End": True},
                "TimedOut": {"Type": "Pass", "Result": "timed out", "ResultPath": "$.outcome", "End": True},
                "Failed": {"Type": "Pass", "Result": "failed", "ResultPath": "$.outcome", "End": True},
            },
        },
    )


def test_task_token_success_before_deadline_resumes(stack: LocalStack) -> None:
    machine = callback_machine(stack)
    with RealTime(2.0):
        execution = start(stack, machine, {"contact_id": "c-1"})
        stack.run_until(START + timedelta(days=2))
        assert describe(stack, execution)["status"] == "RUNNING"
        assert stack.clock.blocked_owners() == {execution}
        [token] = handlers.TOKENS
        stack.sfn.send_task_success(taskToken=token, output=json.dumps({"clicked": True}))
        stack.run_all()

    assert describe(stack, execution)["status"] == "SUCCEEDED"
    assert output_of(stack, execution) == {"contact_id": "c-1", "reply": {"clicked": True}}
    assert stack.clock.now() == START + timedelta(days=2)
    assert stack.history(execution)[-1]["timestamp"] == START + timedelta(days=2)


def test_task_token_failure_is_caught(stack: LocalStack) -> None:
    machine = callback_machine(stack)
    execution = start(stack, machine)
    stack.settle()
    [token] = handlers.TOKENS
    stack.sfn.send_task_failure(taskToken=token, error="Bounced", cause="mailbox full")
    stack.run_all()
    output = output_of(stack, execution)
    assert output["outcome"] == "failed"
    assert output["error"] == {"Error": "Bounced", "Cause": "mailbox full"}


def test_task_token_without_callback_times_out_into_catch(stack: LocalStack) -> None:
    machine = callback_machine(stack)
    with RealTime(2.0):
        execution = start(stack, machine)
        stack.run_all()

    assert describe(stack, execution)["status"] == "SUCCEEDED"
    output = output_of(stack, execution)
    assert output["outcome"] == "timed out"
    assert output["error"]["Error"] == "States.Timeout"
    assert stack.clock.now() == START + timedelta(days=7)


def test_missed_heartbeat_times_out_at_heartbeat_interval(stack: LocalStack) -> None:
    machine = callback_machine(stack, HeartbeatSeconds=3600)
    execution = start(stack, machine)
    stack.settle()
    [token] = handlers.TOKENS
    stack.run_until(START + timedelta(minutes=50))
    stack.sfn.send_task_heartbeat(taskToken=token)
    stack.run_all()

    # moto reports a missed heartbeat as States.Timeout (it never emits States.HeartbeatTimeout).
    output = output_of(stack, execution)
    assert output["error"]["Error"] == "States.Timeout"
    assert stack.clock.now() == START + timedelta(minutes=110)


def test_task_token_without_timeout_leaves_run_all_early(stack: LocalStack) -> None:
    storer = stack.create_function("store-token", f"{HANDLERS}.store_token", {})
    machine = stack.create_state_machine(
        "no-timeout",
        {
            "StartAt": "AwaitReply",
            "States": {
                "AwaitReply": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                    "Parameters": {"FunctionName": storer, "Payload": {"token.$": "$$.Task.Token"}},
                    "End": True,
                }
            },
        },
    )
    execution = start(stack, machine)
    stack.run_all()
    assert stack.clock.now() == START
    assert stack.clock.blocked_owners() == {execution}
    stack.sfn.send_task_success(taskToken=handlers.TOKENS[0], output='"ok"')
    stack.settle()
    assert describe(stack, execution)["status"] == "SUCCEEDED"


def test_executions_interleave_deterministically(stack: LocalStack) -> None:
    recorder = stack.create_function("record", f"{HANDLERS}.record", {})

    def record(label: str, next_state: str | None) -> dict[str, Any]:
        task = lambda_task(recorder, next_state)
        task["Parameters"] = {"FunctionName": recorder, "Payload": {"label": label}}
        return task

    slow = stack.create_state_machine(
        "slow",
        {
            "StartAt": "Wait2h",
            "States": {
                "Wait2h": {"Type": "Wait", "Seconds": 7200, "Next": "A"},
                "A": record("A", None),
            },
        },
    )
    fast = stack.create_state_machine(
        "fast",
        {
            "StartAt": "Wait1h",
            "States": {
                "Wait1h": {"Type": "Wait", "Seconds": 3600, "Next": "B1"},
                "B1": record("B1", "Wait2hMore"),
                "Wait2hMore": {"Type": "Wait", "Seconds": 7200, "Next": "B2"},
                "B2": record("B2", None),
            },
        },
    )
    with RealTime(2.0):
        executions = [start(stack, slow), start(stack, fast)]
        stack.run_all()

    assert [describe(stack, arn)["status"] for arn in executions] == ["SUCCEEDED", "SUCCEEDED"]
    assert [
        ("B1", (START + timedelta(hours=1)).isoformat()),
        ("A", (START + timedelta(hours=2)).isoformat()),
        ("B2", (START + timedelta(hours=3)).isoformat()),
    ] == handlers.RECORDS


def test_run_until_stops_between_deadlines(stack: LocalStack) -> None:
    recorder = stack.create_function("record", f"{HANDLERS}.record", {})
    machine = stack.create_state_machine(
        "two-waits",
        {
            "StartAt": "W1",
            "States": {
                "W1": {"Type": "Wait", "Seconds": 3600, "Next": "R"},
                "R": lambda_task(recorder, "W2"),
                "W2": {"Type": "Wait", "Seconds": 3600, "End": True},
            },
        },
    )
    execution = start(stack, machine, {"label": "mid"})
    stack.run_until(START + timedelta(minutes=90))
    assert stack.clock.now() == START + timedelta(minutes=90)
    assert [("mid", (START + timedelta(hours=1)).isoformat())] == handlers.RECORDS
    assert stack.clock.next_deadline() == START + timedelta(hours=2)
    assert describe(stack, execution)["status"] == "RUNNING"


@pytest.mark.parametrize("kind", ["wait", "task_token"])
def test_stop_execution_while_blocked(stack: LocalStack, kind: str) -> None:
    if kind == "wait":
        machine = stack.create_state_machine(
            "stoppable",
            {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 86400, "End": True}}},
        )
    else:
        machine = callback_machine(stack)
    with RealTime(2.0):
        execution = start(stack, machine)
        stack.settle()
        assert stack.clock.blocked_owners() == {execution}
        stack.sfn.stop_execution(executionArn=execution)
        assert not stack.clock.blocked_owners()
        stack.settle()

    assert describe(stack, execution)["status"] == "ABORTED"
    assert stack.clock.next_deadline() is None
    assert not stack.clock.blocked_owners()
    assert stack.clock.now() == START


@pytest.mark.slow
def test_fifty_executions_with_a_day_wait_and_a_lambda(stack: LocalStack) -> None:
    recorder = stack.create_function("record", f"{HANDLERS}.record", {})
    machine = stack.create_state_machine(
        "bulk",
        {
            "StartAt": "Wait",
            "States": {
                "Wait": {"Type": "Wait", "Seconds": 86400, "Next": "Record"},
                "Record": lambda_task(recorder),
            },
        },
    )
    with RealTime(5.0):
        executions = [start(stack, machine, {"label": f"c-{i}"}) for i in range(50)]
        stack.run_all()

    assert {describe(stack, arn)["status"] for arn in executions} == {"SUCCEEDED"}
    assert len(handlers.RECORDS) == 50
    assert {at for _, at in handlers.RECORDS} == {(START + timedelta(days=1)).isoformat()}


def test_short_task_timeout_is_virtual_not_real(stack: LocalStack) -> None:
    # TimeoutSeconds=1 must not expire while the test spends more than a real second.
    storer = stack.create_function("store-token", f"{HANDLERS}.store_token", {})
    machine = stack.create_state_machine(
        "short-timeout",
        {
            "StartAt": "AwaitReply",
            "States": {
                "AwaitReply": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                    "Parameters": {"FunctionName": storer, "Payload": {"token.$": "$$.Task.Token"}},
                    "TimeoutSeconds": 1,
                    "End": True,
                }
            },
        },
    )
    execution = start(stack, machine)
    stack.settle()
    time.sleep(1.2)
    assert describe(stack, execution)["status"] == "RUNNING"
    stack.sfn.send_task_success(taskToken=handlers.TOKENS[0], output='{"late": false}')
    stack.run_all()
    assert describe(stack, execution)["status"] == "SUCCEEDED"
    assert output_of(stack, execution) == {"late": False}


def test_exit_restores_moto_environment_and_wall_clock() -> None:
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

    original_wait = WaitFunction.__dict__["_wait_interval"]
    previous_key = os.environ.get("AWS_ACCESS_KEY_ID")
    with LocalStack(start=START) as local:
        assert WaitFunction.__dict__["_wait_interval"] is not original_wait
        assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
        assert shared.clock.now() == START
        assert local.account_id == "123456789012"
    assert WaitFunction.__dict__["_wait_interval"] is original_wait
    assert os.environ.get("AWS_ACCESS_KEY_ID") == previous_key
    assert abs(shared.clock.now() - datetime.now(UTC)) < timedelta(seconds=5)


def test_exit_stops_executions_left_blocked() -> None:
    threads_before = threading.active_count()
    with LocalStack(start=START) as local:
        machine = local.create_state_machine(
            "left-behind", {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": True}}}
        )
        executions = [start(local, machine) for _ in range(3)]
        local.settle()
        assert local.clock.blocked_owners() == set(executions)
        left_behind = local._running_executions()
    assert [execution.status for execution in left_behind] == ["ABORTED"] * 3
    assert threading.active_count() <= threads_before


def test_powertools_logger_and_metrics_accept_the_context(stack: LocalStack, capsys: pytest.CaptureFixture) -> None:
    fn = stack.create_function("powertools", f"{HANDLERS}.powertools", {})
    machine = stack.create_state_machine("powertools", {"StartAt": "P", "States": {"P": lambda_task(fn)}})
    executions = [start(stack, machine, {"contact_id": f"c-{i}"}) for i in (7, 8)]
    stack.run_all()
    assert [describe(stack, e)["status"] for e in executions] == ["SUCCEEDED"] * 2
    outputs = [output_of(stack, e) for e in executions]
    # Each invocation has its own request id, and the logger's record carries it with the function's context.
    ids = [o["request_id"] for o in outputs]
    assert len(set(ids)) == 2 and all(str(uuid.UUID(i)) == i for i in ids)
    for i, out in zip((7, 8), outputs, strict=True):
        log = out["log"]
        assert log["function_request_id"] == out["request_id"]
        assert (log["function_name"], log["function_arn"], log["function_memory_size"]) == ("powertools", fn, 256)
        assert (log["message"], log["service"], log["contact_id"]) == ("handled", "stepwise-tests", f"c-{i}")
    # Metrics flush one EMF document per invocation, with the metric the handler added.
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    flushed = [(d["_aws"]["CloudWatchMetrics"][0]["Namespace"], d["Handled"]) for d in emf]
    assert flushed == [("StepwiseTests", [1.0])] * 2


def record_task(function_arn: str, label: str) -> dict[str, Any]:
    task = lambda_task(function_arn)
    task["Parameters"] = {"FunctionName": function_arn, "Payload": {"label": label}}
    return task


def test_parallel_branches_each_see_their_own_wake_time(stack: LocalStack) -> None:
    # Branches run on their own threads; an execution is only idle once all of them are blocked.
    recorder = stack.create_function("record", f"{HANDLERS}.record", {})

    def branch(label: str, seconds: int) -> dict[str, Any]:
        return {
            "StartAt": "W",
            "States": {"W": {"Type": "Wait", "Seconds": seconds, "Next": "R"}, "R": record_task(recorder, label)},
        }

    machine = stack.create_state_machine(
        "parallel",
        {
            "StartAt": "Both",
            "States": {"Both": {"Type": "Parallel", "Branches": [branch("A", 3600), branch("B", 3601)], "End": True}},
        },
    )
    execution = start(stack, machine)
    stack.run_all()
    expected = [("A", START + timedelta(seconds=3600)), ("B", START + timedelta(seconds=3601))]
    assert describe(stack, execution)["status"] == "SUCCEEDED"
    recorded = list(handlers.RECORDS)
    assert recorded == [(label, at.isoformat()) for label, at in expected]


@pytest.mark.parametrize(
    ("max_concurrency", "expected"),
    [
        (0, [("z", "09:30:00"), ("x", "10:00:00"), ("y", "11:00:00")]),
        (1, [("x", "10:00:00"), ("y", "12:00:00"), ("z", "12:30:00")]),
    ],
)
def test_map_iterations_wait_in_virtual_time(
    stack: LocalStack, max_concurrency: int, expected: list[tuple[str, str]]
) -> None:
    recorder = stack.create_function("record", f"{HANDLERS}.record", {})
    machine = stack.create_state_machine(
        "map",
        {
            "StartAt": "Each",
            "States": {
                "Each": {
                    "Type": "Map",
                    "ItemsPath": "$.items",
                    "MaxConcurrency": max_concurrency,
                    "ItemProcessor": {
                        "ProcessorConfig": {"Mode": "INLINE"},
                        "StartAt": "W",
                        "States": {
                            "W": {"Type": "Wait", "SecondsPath": "$.seconds", "Next": "R"},
                            "R": lambda_task(recorder),
                        },
                    },
                    "End": True,
                }
            },
        },
    )
    items = [{"seconds": 3600, "label": "x"}, {"seconds": 7200, "label": "y"}, {"seconds": 1800, "label": "z"}]
    execution = start(stack, machine, {"items": items})
    stack.run_all()
    assert describe(stack, execution)["status"] == "SUCCEEDED"
    assert [(label, at[11:19]) for label, at in handlers.RECORDS] == expected


def test_state_machine_timeout_is_virtual(stack: LocalStack) -> None:
    machine = stack.create_state_machine(
        "machine-timeout",
        {"TimeoutSeconds": 3600, "StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 7200, "End": True}}},
    )
    with RealTime(2.0):
        execution = start(stack, machine)
        stack.run_all()
    assert describe(stack, execution)["status"] == "TIMED_OUT"
    assert stack.clock.now() == START + timedelta(hours=1)
    assert stack.clock.next_deadline() is None


def test_only_one_stack_at_a_time(stack: LocalStack) -> None:
    with pytest.raises(RuntimeError, match="already installed"), LocalStack(start=START):
        pass
    # The failed second stack left the first one working.
    machine = stack.create_state_machine(
        "still-works", {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 5, "End": True}}}
    )
    execution = start(stack, machine)
    stack.run_all()
    assert describe(stack, execution)["status"] == "SUCCEEDED"
    assert stack.clock.now() == START + timedelta(seconds=5)
