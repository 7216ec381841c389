"""The step runner's Task payload read without pydantic (functions/step_runner/request.py): a payload it cannot read
fails as InvalidStep naming the field (issue 11 item 5), as the pydantic model's errors did; a good one reads as it
did, defaults fresh per request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from functions.step_runner import handler
from functions.step_runner.logic import InvalidStep, StepRequest
from functions.step_runner.request import RequestError

GOOD: dict[str, Any] = {
    "op": "actions",
    "workflow": "welcome",
    "version": "v1",
    "max_loops": 100,
    "history_days": 30,
    "contact_id": "c1",
    "event": {"id": "e1"},
    "run": {"loops": 0},
    "execution": "arn:aws:states:eu-west-1:1:execution:welcome:r1",
    "steps": [{"id": "hello", "add_tag": ["welcomed"], "kind": "add_tag"}],
}


@dataclass
class Context:
    function_name: str = "stepwise-step-runner"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:1:function:stepwise-step-runner"
    aws_request_id: str = "req-1"


def invalid(payload: Any) -> str:
    with pytest.raises(InvalidStep) as err:
        handler.handler(payload, Context())  # type: ignore[arg-type]
    return str(err.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"priority": "high"}, "payload field priority: Extra inputs are not permitted (1 problem(s))"),
        ({"op": "jump"}, "payload field op: Input should be 'actions', 'decide', 'wait' or 'goal' (1 problem(s))"),
        ({"max_loops": "many"}, "payload field max_loops: Input should be a valid integer (1 problem(s))"),
        ({"max_loops": True}, "payload field max_loops: Input should be a valid integer (1 problem(s))"),
        ({"contact_id": 7}, "payload field contact_id: Input should be a valid string (1 problem(s))"),
        ({"event": []}, "payload field event: Input should be a valid dictionary (1 problem(s))"),
        ({"steps": [{"id": "a"}, "b"]}, "payload field steps.1: Input should be a valid dictionary (1 problem(s))"),
        ({"path_steps": {"a": [1]}}, "payload field path_steps.a.0: Input should be a valid string (1 problem(s))"),
        ({"goto": "yes"}, "payload field goto: Input should be a boolean or a mapping of booleans (1 problem(s))"),
        ({"ahead": [3]}, "payload field ahead: Input should be a list of steps or a mapping of them (1 problem(s))"),
        ({"task_token": 5, "x": 1}, "payload field task_token: Input should be a valid string (2 problem(s))"),
    ],
)
def test_a_malformed_payload_is_invalid_step_naming_the_field(change: dict[str, Any], message: str) -> None:
    assert invalid({**GOOD, **change}) == message


def test_a_missing_field_or_no_object_at_all_is_invalid_step() -> None:
    missing = {k: v for k, v in GOOD.items() if k not in ("workflow", "execution")}
    assert invalid(missing) == "payload field workflow: Field required (2 problem(s))"
    assert invalid(["not", "a", "payload"]) == (
        "payload field (payload): Input should be a valid dictionary or instance of StepRequest (1 problem(s))"
    )


def test_a_good_payload_reads_as_the_model_read_it() -> None:
    req = StepRequest.model_validate({**GOOD, "goto": {"a": True}, "max_loops": 5.0})
    assert (req.op, req.workflow, req.max_loops, req.goto, req.steps) == (
        "actions",
        "welcome",
        5,
        {"a": True},
        GOOD["steps"],
    )
    assert (req.entered, req.step, req.ahead, req.path_steps, req.sending, req.deferrable, req.task_token) == (
        "", None, [], {}, {}, [], None
    )  # fmt: skip
    other = StepRequest.model_validate(GOOD)
    other.path_steps["a"] = ["x"]
    assert StepRequest.model_validate(GOOD).path_steps == {}  # defaults are not shared
    copy = req.model_copy(update={"event": {"id": "e2", "data": {}}})
    assert (copy.event, req.event, copy.workflow) == ({"id": "e2", "data": {}}, {"id": "e1"}, "welcome")
    assert StepRequest(**GOOD) == StepRequest.model_validate(GOOD) != copy
    with pytest.raises(RequestError) as err:
        StepRequest.model_validate({**GOOD, "version": None, "zz": 1})
    assert [(e["loc"], e["msg"]) for e in err.value.errors()] == [
        (("version",), "Input should be a valid string"),
        (("zz",), "Extra inputs are not permitted"),
    ]
