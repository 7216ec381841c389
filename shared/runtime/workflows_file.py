"""The deployed workflow models as one JSON file: the build writes it into the asset (validated: synth), the
router loads it into the run-time forms (shared/workflow/runtime.py), with no pydantic model built or run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from shared.workflow import runtime

if TYPE_CHECKING:
    from shared.workflow.model import Workflow


class WorkflowsFileError(Exception):
    """The workflows file is missing or does not hold valid workflow models; names the file and the problem."""


def dump_workflows(workflows: list[Workflow]) -> bytes:
    """The models as JSON, by alias (`else`, not `else_`), unset fields left out (what a Compare was given is
    what it has), so that load_workflows reads back the run-time forms of these models."""
    dumped = [
        w.model_dump(mode="json", by_alias=True, exclude_unset=True) for w in sorted(workflows, key=lambda w: w.name)
    ]
    return json.dumps(dumped, separators=(",", ":"), ensure_ascii=False).encode()


def load_workflows(path: str | Path) -> list[runtime.Workflow]:
    """The workflows file the build wrote (C.WORKFLOWS_FILE). A missing or invalid file fails the cold start
    loudly: a router with no workflows would silently enrol nobody."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise WorkflowsFileError(f"{p}: cannot read the workflows file: {err.strerror or err}") from None
    try:
        workflows = runtime.workflows(json.loads(raw))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise WorkflowsFileError(f"{p}: not a valid workflows file: {err}") from None
    names = [w.name for w in workflows]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise WorkflowsFileError(f"{p}: a workflow name appears twice: {', '.join(twice)}")
    return workflows
