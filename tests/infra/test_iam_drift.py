"""The step runner's IAM actions follow its code: every AWS call reachable from its handler is granted, and every
granted action has a call. Catches a new boto3 call in shared/ before a deploy fails with AccessDenied."""

from __future__ import annotations

import ast
from pathlib import Path

from infra.constructs.step_runner import EXECUTION_ACTIONS, MACHINE_ACTIONS, TABLE_ACTIONS
from tests.infra.conftest import REPO

# boto3 method -> the IAM actions it needs. A transaction is authorised per item (Put, Update, Delete).
DYNAMODB = {
    "get_item": {"dynamodb:GetItem"},
    "put_item": {"dynamodb:PutItem"},
    "update_item": {"dynamodb:UpdateItem"},
    "delete_item": {"dynamodb:DeleteItem"},
    "query": {"dynamodb:Query"},
    "transact_write_items": {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
}
STATES = {
    "start_execution": {"states:StartExecution"},
    "send_task_success": {"states:SendTaskSuccess"},
    "describe_execution": {"states:DescribeExecution"},
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
