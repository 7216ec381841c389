"""The deployed workflow models as one JSON file: the build writes it into the asset, the router loads it."""

from __future__ import annotations

from pathlib import Path

from pydantic import TypeAdapter

from shared.workflow.model import Workflow

_WORKFLOWS = TypeAdapter(list[Workflow])


class WorkflowsFileError(Exception):
    """The workflows file is missing or does not hold valid workflow models; names the file and the problem."""


def dump_workflows(workflows: list[Workflow]) -> bytes:
    """The models as JSON, by alias (`else`, not `else_`), so that load_workflows reads back equal models."""
    return _WORKFLOWS.dump_json(sorted(workflows, key=lambda w: w.name), by_alias=True)


def load_workflows(path: str | Path) -> list[Workflow]:
    """The workflows file the build wrote (C.WORKFLOWS_FILE). A missing or invalid file fails the cold start
    loudly: a router with no workflows would silently enrol nobody."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise WorkflowsFileError(f"{p}: cannot read the workflows file: {err.strerror or err}") from None
    try:
        workflows = _WORKFLOWS.validate_json(raw)
    except ValueError as err:
        raise WorkflowsFileError(f"{p}: not a valid workflows file: {err}") from None
    names = [w.name for w in workflows]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise WorkflowsFileError(f"{p}: a workflow name appears twice: {', '.join(twice)}")
    return workflows
