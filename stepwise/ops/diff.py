"""`stepwise diff OLD NEW` (or `FILE --deployed`): what changed step by step between two versions of a workflow, as
their compiled machines say it (added, removed, moved, changed fields), and how many contacts inside are waiting on
a step the new version removes or moves, read from the run index (GSI1: each running enrolment's current step)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shared import constants as C
from shared.store.contacts import ContactStore
from shared.store.operations import OperationsStore
from shared.workflow.compiler import compile_workflow
from shared.workflow.model import Workflow, WorkflowFileError, load_workflow

END = "(end)"
_HELPER_SUFFIXES = (C.CHOICE_SUFFIX, C.TIMEOUT_SUFFIX, C.DEFERRED_SUFFIX, C.HELD_SUFFIX)
_HELPERS = {C.STATE_ENTRY, C.STATE_START_DELAY, C.STATE_DONE, C.STATE_LOOP_LIMIT}
RUNNER_ARN = "arn:aws:lambda:us-east-1:123456789012:function:stepwise-step-runner"


@dataclass(frozen=True)
class StepSpec:
    kind: str
    fields: dict[str, Any]
    next: tuple[str, ...]  # the steps the flow goes to after this one ((end) for the end of the run)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out |= _flat(v, f"{key}.")
        else:
            out[key] = v
    return out


def _is_helper(name: str) -> bool:
    return name in _HELPERS or name.startswith(C.STATE_FAILED_PREFIX) or name.endswith(_HELPER_SUFFIXES)


def step_specs(asl: dict[str, Any]) -> dict[str, StepSpec]:
    """Each step of a compiled machine by id: its kind, its fields (as the Task payload carries them, or the Wait
    state's time), and where the flow goes after it."""
    states: dict[str, Any] = asl["States"]

    def resolve(name: str | None, seen: frozenset[str] = frozenset()) -> tuple[str, ...]:
        if name is None or name in seen:
            return (END,)
        st = states.get(name, {})
        if name in (C.STATE_DONE, C.STATE_LOOP_LIMIT) or name.startswith(C.STATE_FAILED_PREFIX):
            return (END,)
        if name.endswith(C.CHOICE_SUFFIX):
            targets = [c["Next"] for c in st.get("Choices", [])] + ([st["Default"]] if "Default" in st else [])
            return tuple(sorted({t for x in targets for t in resolve(x, seen | {name})}))
        if name.endswith(_HELPER_SUFFIXES) or name == C.STATE_START_DELAY:
            return resolve(st.get("Next"), seen | {name})
        return (name,)

    def after(st: dict[str, Any]) -> tuple[str, ...]:
        out = set(resolve(st.get("Next")))
        for c in st.get("Catch", []):
            if "States.Timeout" in c["ErrorEquals"]:
                out |= set(resolve(c["Next"]))
        if not st.get("Next") and not any("States.Timeout" in c["ErrorEquals"] for c in st.get("Catch", [])):
            out.add(END)
        return tuple(sorted(out))

    specs: dict[str, StepSpec] = {}
    for name, st in states.items():
        if _is_helper(name):
            continue
        payload = st.get("Parameters", {}).get("Payload", {}) if st["Type"] == "Task" else {}
        if payload.get("steps"):
            steps = payload["steps"]
            for i, s in enumerate(steps):
                nxt = (steps[i + 1]["id"],) if i + 1 < len(steps) else after(st)
                specs[s["id"]] = StepSpec(s.get("kind", ""), _flat(_fields(s)), nxt)
        elif payload.get("step"):
            s = payload["step"]
            specs[s["id"]] = StepSpec(s.get("kind", ""), _flat(_fields(s)), after(st))
        elif st["Type"] == "Wait":
            f = {k.lower(): v for k, v in st.items() if k in ("Seconds", "Timestamp")}
            specs[name] = StepSpec("wait", f, after(st))
        elif st["Type"] in ("Succeed", "Fail", "Pass"):
            specs[name] = StepSpec("end", {}, (END,))
    return specs


def _fields(step: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in step.items() if k not in ("id", "kind")}


@dataclass
class StepChange:
    step: str
    change: str  # added, removed, moved, changed
    detail: list[str] = field(default_factory=list)


def diff_specs(old: dict[str, StepSpec], new: dict[str, StepSpec]) -> list[StepChange]:
    out: list[StepChange] = []
    for sid in old:
        if sid not in new:
            out.append(StepChange(sid, "removed", [old[sid].kind]))
    for sid in new:
        if sid not in old:
            out.append(StepChange(sid, "added", [new[sid].kind]))
            continue
        if sid not in old:
            continue
        o, n = old[sid], new[sid]
        if o.kind != n.kind:
            out.append(StepChange(sid, "changed", [f"kind: {o.kind} -> {n.kind}"]))
        else:
            keys = sorted(set(o.fields) | set(n.fields))
            changed = [
                f"{k}: {json.dumps(o.fields.get(k), default=str)} -> {json.dumps(n.fields.get(k), default=str)}"
                for k in keys
                if o.fields.get(k) != n.fields.get(k)
            ]
            if changed:
                out.append(StepChange(sid, "changed", changed))
        if o.next != n.next:
            out.append(StepChange(sid, "moved", [f"then {', '.join(o.next)} -> then {', '.join(n.next)}"]))
    return out


def workflow_changes(old: Workflow, new: Workflow) -> list[str]:
    """What changed outside the steps: triggers, re-entry, settings."""
    out = []
    for name in ("triggers", "reentry", "settings"):
        a, b = old.model_dump(mode="json")[name], new.model_dump(mode="json")[name]
        if a != b:
            out.append(f"{name}: {json.dumps(a)} -> {json.dumps(b)}")
    return out


def waiting_by_step(ops: OperationsStore, workflow: str) -> tuple[Counter[str], int]:
    """How many running contacts wait at each step, and how many running enrolments were read: the run index's
    keys say each run's current step and whether it waits there (kept current by the step runner), so this is
    the index's pages of the workflow's running enrolments and nothing per contact. An entry written before the
    index carried the step is judged from the contact's records, as before."""
    waiting: Counter[str] = Counter()
    read = 0
    legacy: list[str] = []
    for run in ops.runs(workflow, status="running"):
        read += 1
        if not run.state:
            legacy.append(run.contact_id)
        elif run.state == "waiting":
            waiting[run.step] += 1
    for part in ops.partitions(legacy, workflow=workflow):
        enrol = next((i for i in part.of(f"ENROLL#{workflow}")), None)
        if enrol is None or enrol.get("status") != "running":
            continue
        records = [h for h in part.of("HIST#") if h.get("execution") == enrol.get("execution_arn")]
        if not records:
            continue
        last = max(records, key=lambda h: (str(h["at"]), str(h.get("entered", "")), int(h.get("seq", 0))))
        if last.get("outcome") == "waiting" and not str(last[C.SK]).endswith("#resumed"):
            waiting[str(last["step"])] += 1
    return waiting, read


@dataclass
class DiffReport:
    workflow: str
    changes: list[StepChange]
    workflow_changes: list[str]
    waiting: dict[str, int] | None = None  # step -> contacts waiting there now (None: not read)
    affected: dict[str, int] | None = None  # removed or moved steps with contacts waiting on them

    def as_dict(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "steps": [{"step": c.step, "change": c.change, "detail": c.detail} for c in self.changes],
            "workflow_changes": self.workflow_changes,
            "waiting": self.waiting,
            "affected": self.affected,
            "contacts_affected": sum((self.affected or {}).values()),
        }


def diff(
    old_asl: dict[str, Any],
    new_asl: dict[str, Any],
    workflow: str,
    ops: OperationsStore | None = None,
    old: Workflow | None = None,
    new: Workflow | None = None,
) -> DiffReport:
    changes = diff_specs(step_specs(old_asl), step_specs(new_asl))
    report = DiffReport(workflow, changes, workflow_changes(old, new) if old and new else [])
    if ops is not None:
        waiting, _ = waiting_by_step(ops, workflow)
        report.waiting = dict(waiting)
        gone = {c.step for c in changes if c.change in ("removed", "moved")}
        report.affected = {s: n for s, n in sorted(waiting.items()) if s in gone}
    return report


def print_diff(r: DiffReport, out: Any) -> None:
    if not r.changes and not r.workflow_changes:
        print(f"{r.workflow}: no step changed", file=out)
    for c in r.changes:
        mark = {"added": "+", "removed": "-", "moved": "~", "changed": "*"}[c.change]
        print(f"{mark} {c.step}: {c.change}", file=out)
        for d in c.detail:
            print(f"    {d}", file=out)
    for w in r.workflow_changes:
        print(f"* {w}", file=out)
    if r.affected is None:
        print("(contacts waiting not counted: give --table to read the running enrolments)", file=out)
        return
    total = sum(r.affected.values())
    print(f"contacts waiting on a step this version removes or moves: {total}", file=out)
    for step, n in r.affected.items():
        what = next(c.change for c in r.changes if c.step == step and c.change in ("removed", "moved"))
        print(f"  {step} ({what}): {n}", file=out)
    print(
        "(contacts inside keep the version they entered with; these are the ones a restart or a move to the new "
        "version would strand)",
        file=out,
    )


def _load(path: str) -> Workflow | None:
    try:
        return load_workflow(path)
    except WorkflowFileError as err:
        for line in err.problems:
            print(line, file=sys.stderr)
        return None


def diff_command(args: argparse.Namespace) -> int:
    from stepwise.errors import aws

    with aws("diff", table=args.table, machine=args.arn_template):  # an AWS error: one line, exit 2
        return _diff(args)


def _diff(args: argparse.Namespace) -> int:
    from stepwise.ops import clients, need

    new_path = args.new if args.new else args.old
    new = _load(new_path)
    if new is None:
        return 1
    ops = None
    if args.table or args.deployed:
        need(args, ("--table", args.table, C.ENV_TABLE_NAME))
        ddb, sfn = clients("dynamodb", "stepfunctions")
        ops = OperationsStore(ContactStore(args.table, ddb), sfn=sfn)
    old: Workflow | None = None
    if args.deployed:
        need(args, ("--machine-arn-template", args.arn_template, C.ENV_STATE_MACHINE_ARN_TEMPLATE))
        assert ops is not None
        old_asl = ops.deployed_definition(args.arn_template.replace("{workflow}", new.name))
    else:
        if not args.new:
            print("stepwise diff: give OLD NEW, or FILE --deployed", file=sys.stderr)
            return 1
        old = _load(args.old)
        if old is None:
            return 1
        old_asl = compile_workflow(old, RUNNER_ARN)
    report = diff(old_asl, compile_workflow(new, RUNNER_ARN), new.name, ops, old, new)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print_diff(report, sys.stdout)
    return 0


def add_parser(sub: Any) -> None:
    from stepwise.ops import add_stack_options

    p = sub.add_parser("diff", help="what changed between two versions, and who waits on a removed or moved step")
    p.add_argument("old", metavar="OLD", help="the old workflow file (or the only one, with --deployed)")
    p.add_argument("new", nargs="?", metavar="NEW", help="the new workflow file")
    p.add_argument("--deployed", action="store_true", help="compare FILE with the version the alias runs now")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_stack_options(p, machines=True)
    p.set_defaults(func=diff_command)
