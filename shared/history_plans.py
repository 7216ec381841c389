"""Entry plans, the authoring model and the plans file: what a workflow's machine meets before its first
step-runner call (compiler `entry_plan`), written beside the code by the build (infra/assets.py) and read back with
pydantic by `stepwise` and the tests. The Lambdas read the same file into runtime.EntryPlan without pydantic
(runtime.load_entry_plans). Re-exported by shared/history.py, which loads this module on first use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, field_serializer, field_validator

from shared.workflow import runtime


class EntryPlan(BaseModel):
    """What a workflow's machine meets before its first step-runner call, per place a run can start: nothing
    performs those steps, so the enroller records them when it starts the execution (compiler `entry_plan`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    version: str
    history_days: int
    # The workflow's re-entry policy: a start by another workflow (start_workflow, a campaign subscription)
    # keeps to it as the router's start by a trigger does.
    # Its run-time form (shared/workflow/runtime.py): the authoring model's, or its dump, converted.
    reentry: runtime.Reentry | None = None
    # "" is a run from the first step; any other key is a `resume_at` step. Places with nothing passive ahead
    # (the first state is a Task) are left out, so most workflows' plans are empty.
    ahead: dict[str, list[dict[str, Any]]] = {}
    # The deployment's runaway budgets (shared/budgets.py Budgets, dumped): the enroller counts entries against
    # them, the step runner messages. Carried here rather than in the Task payload: the definitions stay as they are.
    budgets: dict[str, Any] = {}

    @field_validator("reentry", mode="plain")
    @classmethod
    def _reentry(cls, v: Any) -> runtime.Reentry | None:
        if v is None or isinstance(v, runtime.Reentry):
            return v
        return runtime.as_runtime(v) if hasattr(v, "model_dump") else runtime.reentry(v)

    @field_serializer("reentry")
    def _dump_reentry(self, v: runtime.Reentry | None) -> dict[str, Any] | None:
        return None if v is None else {"mode": v.mode, "period": v.period}

    def passive(self, resume_at: str) -> list[dict[str, Any]]:
        return self.ahead.get(resume_at, [])


ENTRY_PLANS = TypeAdapter(dict[str, EntryPlan])


def load_entry_plans(path: str | Path) -> dict[str, EntryPlan]:
    """The plans file the build writes beside the code (infra/assets.py), keyed by workflow name."""
    return ENTRY_PLANS.validate_json(Path(path).read_bytes())


def dump_entry_plans(plans: dict[str, EntryPlan]) -> bytes:
    return ENTRY_PLANS.dump_json(dict(sorted(plans.items())))
