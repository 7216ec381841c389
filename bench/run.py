"""Benchmark (not a test): transitions per path against the design's floor, compile/lint/parse time, demo wall time.

Run with `make bench` (or `.venv/bin/python bench/run.py [--json] [--skip-demo]`).

1. For every workflow in workflows/: each path a contact can take, the state transitions cost.py predicts from the
   compiled machine, the number of steps the user wrote on that path, and the floor this design allows. The floor
   is computed here by walking the workflow model, not from the compiled machine or cost.py, so that the two can
   disagree.
2. Parse (model validation), lint and compile time of a generated 1,000-step workflow (target: compile < 1 s).
3. Wall time of `stepwise demo workflows/` (what `make demo` runs once installed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: `shared` is imported from this checkout
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from shared.workflow.compiler import compile_workflow  # noqa: E402
from shared.workflow.cost import PRICE_PER_1000_TRANSITIONS, paths, price, transitions  # noqa: E402
from shared.workflow.lint import lint  # noqa: E402
from shared.workflow.model import (  # noqa: E402
    ACTION_KINDS,
    BranchStep,
    EndStep,
    GoalStep,
    GotoStep,
    IfStep,
    SplitStep,
    Step,
    Trigger,
    WaitStep,
    WaitUntilStep,
    Workflow,
    branches,
    load_workflow,
    parse_workflow,
    workflow_files,
)

STEP_RUNNER_ARN = "arn:aws:lambda:us-east-1:123456789012:function:stepwise-step-runner"
CONTACTS = 1000
COMPILE_TARGET_SECONDS = 1.0
ASL_MAX_BYTES = 1_048_576  # Step Functions' limit on the size of a state machine definition

CONVENTION = (
    "Counting convention (shared/workflow/cost.py): one transition per state entered, the Entry Choice included, "
    "and the terminal state when it is a separate Succeed/Fail state (a Task or Wait with End: true is itself the "
    "last state, so ending after one adds nothing). A path follows the Entry Choice's Default (no resume_at, no "
    "start delay); error catches are left out, the States.Timeout catch of a wait-until is followed. A trigger's "
    "start delay adds one Wait state (StartDelay) to every path, shown apart."
)
FLOOR_RULE = (
    "Floor (walked from the workflow model): 1 for entry; 1 per wait (wait, wait_until at/event/condition); 1 per run "
    "of consecutive actions in one step list (a go-to target starts a new run: a jump must land on a state); 2 per "
    "decision (if, branch, split: evaluate Task + branch Choice); 1 per goal check, 2 with otherwise: end (Task + "
    "Choice); 0 per go-to; 0 per end or end of steps after a Task or Wait (End: true), 1 after a Choice (which "
    "cannot end an execution, so a Succeed state is needed); after a wait-until's timeout, 1 for a Task recording "
    "the timeout unless the timeout leads straight to a step-runner Task (that Task ends the execution itself)."
)

# What the flow entered last, which decides whether ending there needs a state of its own.
AFTER_CHOICE, AFTER_CATCH, AFTER_TASK, AFTER_WAIT = "choice", "catch", "task", "wait"
CAN_END = (AFTER_TASK, AFTER_WAIT)


# ---- the floor, from the workflow model ------------------------------------------------------------------------


@dataclass(frozen=True)
class FloorPath:
    """One way through the workflow as the user wrote it, and the fewest transitions the design allows for it."""

    route: tuple[str, ...]  # readable: step ids, with the branch or wait outcome taken
    visited: tuple[str, ...]  # every step passed (go-to and end steps included), as step ids or position keys
    floor: int
    parts: tuple[tuple[str, int], ...]  # the floor by reason, e.g. (("entry", 1), ("waits", 1), ...)

    @property
    def steps_written(self) -> int:
        return len(self.visited)


@dataclass
class _Node:
    key: str
    step: Step
    after: str | None  # the step written next, or the enclosing list's continuation; None: the workflow ends
    heads: dict[str, str | None] = field(default_factory=dict)  # branch name -> first step (or continuation)
    joins_run: bool = False  # an action right after an action in the same list, and no go-to lands on it


def step_key(step: Step, where: tuple[str, ...]) -> str:
    """The step's id, or (go-to and end steps may have none) its position."""
    return step.id or f"{step.kind}@{'.'.join(where)}"


def _index(wf: Workflow) -> tuple[dict[str, _Node], str | None]:
    targets = {s.root.goto for s, _ in wf.walk() if isinstance(s.root, GotoStep)}
    nodes: dict[str, _Node] = {}

    def visit(steps: list[Step], where: tuple[str, ...], cont: str | None) -> str | None:
        keys = [step_key(s, (*where, str(i))) for i, s in enumerate(steps)]
        for i, step in enumerate(steps):
            after = keys[i + 1] if i + 1 < len(steps) else cont
            joins = i > 0 and step.kind in ACTION_KINDS and steps[i - 1].kind in ACTION_KINDS and step.id not in targets
            node = nodes[keys[i]] = _Node(keys[i], step, after, joins_run=joins)
            for name, inner in branches(step):
                node.heads[name] = visit(inner, (*where, str(i), *name.split(".")), after)
        return keys[0] if keys else cont

    first = visit(wf.steps, ("steps",), None)
    return nodes, first


def floor_paths(wf: Workflow) -> list[FloorPath]:
    """Every simple path (no step twice) from the first step to the end, with the floor of each.

    A go-to back to a step already on the path is a loop, not a path (cost.py treats repeated states the same way).
    """
    nodes, first = _index(wf)
    out: list[FloorPath] = []

    def finish(last: str, route: tuple[str, ...], visited: tuple[str, ...], parts: dict[str, int]) -> None:
        done = dict(parts)
        done["terminal"] = 0 if last in CAN_END else 1
        out.append(FloorPath(route, visited, sum(done.values()), tuple(done.items())))

    def add(parts: dict[str, int], reason: str, n: int) -> dict[str, int]:
        return {**parts, reason: parts.get(reason, 0) + n}

    def walk(
        key: str | None, last: str, route: tuple[str, ...], visited: tuple[str, ...], parts: dict[str, int]
    ) -> None:
        if key is None:
            finish(last, route, visited, parts)
            return
        if key in visited:
            return
        node = nodes[key]
        r = node.step.root
        seen = (*visited, key)
        if isinstance(r, GotoStep):
            walk(r.goto, last, (*route, f"goto {r.goto}"), seen, parts)
        elif isinstance(r, EndStep):
            # After a Task or Wait the end is that state's End: true, not a state the path enters.
            finish(last, (*route, f"end ({r.end.reason})"), visited if last in CAN_END else seen, parts)
        elif node.step.kind in ACTION_KINDS:
            more = add(parts, "action runs", 0 if node.joins_run else 1)
            walk(node.after, AFTER_TASK, (*route, key), seen, more)
        elif isinstance(r, WaitStep) or (isinstance(r, WaitUntilStep) and r.wait_until.at is not None):
            walk(node.after, AFTER_WAIT, (*route, key), seen, add(parts, "waits", 1))
        elif isinstance(r, WaitUntilStep):
            more = add(parts, "waits", 1)
            walk(node.after, AFTER_TASK, (*route, f"{key} (resumed)"), seen, more)
            timeout_head = node.heads.get("on_timeout", node.after)
            if runs_step_runner(timeout_head):
                walk(timeout_head, AFTER_CATCH, (*route, f"{key} (timed out)"), seen, more)
            else:  # a Task records the timeout, then goes on to the wait or ends
                more = add(more, "timeout record", 1)
                walk(timeout_head, AFTER_TASK, (*route, f"{key} (timed out)"), seen, more)
        elif isinstance(r, IfStep | BranchStep | SplitStep):
            more = add(parts, "decision Task+Choice", 2)
            for name, head in node.heads.items():
                walk(head, AFTER_CHOICE, (*route, f"{key}={name.split('.', 1)[-1]}"), seen, more)
        elif isinstance(r, GoalStep):
            if r.goal.otherwise == "end":
                more = add(parts, "goals", 2)
                walk(node.after, AFTER_CHOICE, (*route, f"{key} (met)"), seen, more)
                finish(AFTER_CHOICE, (*route, f"{key} (not met: end)"), seen, more)
            else:
                walk(node.after, AFTER_TASK, (*route, key), seen, add(parts, "goals", 1))
        else:
            raise TypeError(f"unhandled step kind {node.step.kind}")  # exhaustiveness guard

    def runs_step_runner(key: str | None) -> bool:
        """Whether the flow from `key` (past go-tos) enters a state that invokes the step runner."""
        hops: set[str] = set()
        while key is not None and key not in hops and isinstance(nodes[key].step.root, GotoStep):
            hops.add(key)
            key = nodes[key].step.root.goto  # type: ignore[union-attr]
        if key is None:
            return False
        r = nodes[key].step.root
        return (
            nodes[key].step.kind in ACTION_KINDS
            or isinstance(r, IfStep | BranchStep | SplitStep | GoalStep)
            or (isinstance(r, WaitUntilStep) and r.wait_until.at is None)
        )

    walk(first, AFTER_CHOICE, (), (), {"entry": 1})
    return out


def start_delay_extra(wf: Workflow) -> int:
    """Transitions a trigger's start delay adds to every path (the StartDelay Wait state), if any trigger has one."""
    return 1 if any(isinstance(t.root, Trigger) and t.root.delay for t in wf.triggers) else 0


# ---- the comparison with cost.py ---------------------------------------------------------------------------------


@dataclass
class PathRow:
    """One path: cost.py's prediction next to the floor. `states` is empty when cost.py has no such path."""

    route: list[str]
    states: list[str]
    steps_written: int
    floor: int | None
    floor_parts: dict[str, int]
    predicted: int | None
    usd_per_1000_contacts: float | None

    @property
    def above_floor(self) -> bool:
        return self.predicted is not None and self.floor is not None and self.predicted > self.floor

    @property
    def matches(self) -> bool:
        return self.predicted is not None and self.predicted == self.floor


def compare(wf: Workflow, asl: dict[str, Any]) -> list[PathRow]:
    """Pair each model path with the compiled machine's path through the same step states, and set them side by side.

    Paths are paired by the step ids that are states on both sides (merged actions, go-tos and synthetic names drop
    out); where several paths share those, they pair in order of transitions. A path on one side only is a row
    with the other side's figures missing.
    """
    model = floor_paths(wf)
    step_keys = {k for p in model for k in p.visited}
    state_names = set(asl["States"])

    groups: dict[tuple[str, ...], tuple[list[FloorPath], list[list[str]]]] = {}
    seen: set[tuple[tuple[str, ...], int]] = set()
    for fp in model:
        key = tuple(k for k in fp.visited if k in state_names)
        if (key, fp.floor) in seen:  # branches that reach the same states the same way: one path in the machine
            continue
        seen.add((key, fp.floor))
        groups.setdefault(key, ([], []))[0].append(fp)
    for sp in paths(asl):
        key = tuple(s for s in sp if s in step_keys)
        groups.setdefault(key, ([], []))[1].append(sp)

    rows: list[PathRow] = []
    for fps, sps in groups.values():
        fps.sort(key=lambda p: p.floor)
        sps.sort(key=transitions)
        for i in range(max(len(fps), len(sps))):
            mp: FloorPath | None = fps[i] if i < len(fps) else None
            cp: list[str] | None = sps[i] if i < len(sps) else None
            predicted = transitions(cp) if cp is not None else None
            rows.append(
                PathRow(
                    route=list(mp.route) if mp else [],
                    states=cp or [],
                    steps_written=mp.steps_written if mp else 0,
                    floor=mp.floor if mp else None,
                    floor_parts={k: v for k, v in mp.parts if v} if mp else {},
                    predicted=predicted,
                    usd_per_1000_contacts=price(predicted, CONTACTS) if predicted is not None else None,
                )
            )
    return rows


@dataclass
class WorkflowReport:
    name: str
    file: str
    start_delay_extra: int
    rows: list[PathRow]


def transitions_report(folder: Path) -> list[WorkflowReport]:
    out = []
    for path in workflow_files(folder):
        wf = load_workflow(path)
        asl = compile_workflow(wf, STEP_RUNNER_ARN)
        out.append(WorkflowReport(wf.name, path.name, start_delay_extra(wf), compare(wf, asl)))
    return out


# ---- a generated 1,000-step workflow ----------------------------------------------------------------------------


def _segment(n: int) -> Iterator[dict[str, Any]]:
    """One repeating piece: a run of actions, a wait, an if/else with a branch each side, and every few pieces a
    multi-way branch, a wait-until-event with a timeout branch, or a go-to back to the piece's wait (a loop that
    waits, as lint asks)."""
    yield {"id": f"s{n}-tag", "add_tag": [f"seen-{n}"]}
    yield {"id": f"s{n}-field", "set_field": {"segment": n}}
    yield {"id": f"s{n}-mail", "send_email": {"template": f"t-{n}"}}
    yield {"id": f"s{n}-wait", "wait": "1h"}
    then: list[dict[str, Any]] = [
        {"id": f"s{n}-sms", "send_sms": {"template": f"sms-{n}"}},
        {"id": f"s{n}-score", "adjust_score": 5},
    ]
    if n % 10 == 3:
        then.append({"goto": f"s{n}-wait"})
    yield {
        "id": f"s{n}-vip",
        "if": {"any": [{"all": [{"has_tag": "vip"}]}, {"all": [{"score": {"gt": 50}}, {"not": {"has_tag": "cold"}}]}]},
        "then": then,
        "else": [{"id": f"s{n}-nudge", "remove_tag": ["cold"]}, {"id": f"s{n}-pause", "wait": "10m"}],
    }
    if n % 5 == 1:
        yield {
            "id": f"s{n}-tier",
            "branch": [
                {"name": "gold", "when": {"has_tag": "gold"}, "steps": [{"id": f"s{n}-gold", "add_tag": ["g"]}]},
                {"name": "silver", "when": {"has_tag": "silver"}, "steps": []},
            ],
            "otherwise": [{"id": f"s{n}-basic", "send_email": {"template": "basic"}}],
        }
    if n % 5 == 2:
        yield {
            "id": f"s{n}-await",
            "wait_until": {
                "event": "tag.added",
                "where": {"tag": "Purchased"},
                "timeout": "2d",
                "on_timeout": [{"id": f"s{n}-late", "send_email": {"template": "late"}}],
            },
        }


def _count(steps: list[dict[str, Any]]) -> int:
    total = 0
    for s in steps:
        total += 1
        for key in ("then", "else", "otherwise"):
            total += _count(s.get(key, []))
        for case in s.get("branch", []):
            total += _count(case["steps"])
        total += _count((s.get("wait_until") or {}).get("on_timeout") or [])
    return total


def generated_workflow(size: int = 1000) -> dict[str, Any]:
    """A workflow file (as parsed YAML) of exactly `size` steps, nested steps included."""
    steps: list[dict[str, Any]] = []
    n = 0
    while True:
        piece = list(_segment(n))
        if _count(steps) + _count(piece) > size:
            break
        steps.extend(piece)
        n += 1
    i = 0
    while _count(steps) < size:
        steps.append({"id": f"tail-{i}", "add_tag": [f"tail-{i}"]})
        i += 1
    return {
        "name": "generated",
        "description": f"{size} generated steps for the benchmark",
        "triggers": [{"event": "tag.added", "where": {"tag": "start"}, "delay": "5m"}],
        "reentry": "always",
        "steps": steps,
    }


@dataclass
class Timing:
    runs: int
    median_s: float
    min_s: float
    max_s: float

    @classmethod
    def of(cls, samples: list[float]) -> Timing:
        return cls(len(samples), statistics.median(samples), min(samples), max(samples))


def _time(fn: Callable[[], Any], runs: int) -> tuple[Timing, Any]:
    samples, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t0)
    return Timing.of(samples), result


@dataclass
class CompileBench:
    steps: int
    kinds: dict[str, int]
    lint_violations: list[str]
    states: int
    asl_bytes: int  # compact JSON, as a deployment would send it
    asl_bytes_printed: int  # indented, as `stepwise compile` prints it
    yaml_load: Timing
    parse: Timing
    lint: Timing
    compile: Timing


def compile_bench(size: int, runs: int) -> CompileBench:
    data = generated_workflow(size)
    text = yaml.safe_dump(data, sort_keys=False)
    yaml_t, _ = _time(lambda: yaml.safe_load(text), runs)
    parse_t, wf = _time(lambda: parse_workflow(data, "generated.yaml"), runs)
    lint_t, violations = _time(lambda: lint(wf), runs)
    compile_t, asl = _time(lambda: compile_workflow(wf, STEP_RUNNER_ARN), runs)
    kinds: dict[str, int] = {}
    for step, _ in wf.walk():
        kinds[step.kind] = kinds.get(step.kind, 0) + 1
    return CompileBench(
        steps=sum(kinds.values()),
        kinds=dict(sorted(kinds.items())),
        lint_violations=[str(v) for v in violations],
        states=len(asl["States"]),
        asl_bytes=len(json.dumps(asl, separators=(",", ":")).encode()),
        asl_bytes_printed=len(json.dumps(asl, indent=2).encode()),
        yaml_load=yaml_t,
        parse=parse_t,
        lint=lint_t,
        compile=compile_t,
    )


# ---- make demo ---------------------------------------------------------------------------------------------------


@dataclass
class DemoBench:
    command: list[str]
    exit_codes: list[int]
    wall: Timing
    output_lines: int


def demo_bench(runs: int) -> DemoBench:
    exe = ROOT / ".venv" / "bin" / "stepwise"
    cmd = [str(exe) if exe.exists() else (shutil.which("stepwise") or "stepwise"), "demo", "workflows/"]
    samples, codes, lines = [], [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        samples.append(time.perf_counter() - t0)
        codes.append(done.returncode)
        lines = done.stdout.count("\n")
    return DemoBench(cmd, codes, Timing.of(samples), lines)


# ---- output -----------------------------------------------------------------------------------------------------


def _money(usd: float | None) -> str:
    return "-" if usd is None else f"${usd:.4f}"


def _num(n: int | None) -> str:
    return "-" if n is None else str(n)


def _flag(row: PathRow) -> str:
    if row.floor is None:
        return "EXTRA"  # a path in the machine the workflow does not have
    if row.predicted is None:
        return "NOPATH"  # a path of the workflow the machine does not have
    if row.predicted > row.floor:
        return "ABOVE"
    return "ok" if row.predicted == row.floor else "BELOW"


def print_transitions(reports: list[WorkflowReport]) -> None:
    print("== State transitions per contact, per path ==")
    print(CONVENTION)
    print(FLOOR_RULE)
    print(f"Price: ${PRICE_PER_1000_TRANSITIONS} per 1,000 state transitions (Standard workflows), for {CONTACTS:,} "
          "contacts taking the path.")  # fmt: skip
    print()
    header = f"  {'steps':>5} {'floor':>5} {'cost.py':>7} {'':>6} {'per 1,000':>9}  path"
    for rep in reports:
        delay = (
            f"; a trigger's start delay adds +{rep.start_delay_extra} to every path"
            if rep.start_delay_extra
            else "; no start delay"
        )
        print(f"{rep.name} ({rep.file}){delay}")
        print(header)
        for row in rep.rows:
            flag = _flag(row)
            route = " > ".join(row.route) if row.route else "(no model path) " + " -> ".join(row.states)
            print(
                f"  {row.steps_written:>5} {_num(row.floor):>5} {_num(row.predicted):>7} {flag:>6} "
                f"{_money(row.usd_per_1000_contacts):>9}  {route}"
            )
            if row.states:
                print(f"  {'':>38}states: {' -> '.join(row.states)}")
            parts = ", ".join(f"{k} {v}" for k, v in row.floor_parts.items())
            print(f"  {'':>38}floor:  {parts}")
        print()
    rows = [r for rep in reports for r in rep.rows]
    above = [r for r in rows if r.above_floor]
    odd = [r for r in rows if not r.matches and not r.above_floor]
    print(f"{len(rows)} paths in {len(reports)} workflows: {len(rows) - len(above) - len(odd)} at the floor, "
          f"{len(above)} above it, {len(odd)} unmatched or below")  # fmt: skip
    print()


def _timing(t: Timing, unit: str = "ms") -> str:
    if unit == "s":
        return f"median {t.median_s:.2f} s  (min {t.min_s:.2f}, max {t.max_s:.2f}; {t.runs} runs)"
    return f"median {t.median_s * 1000:8.1f} ms  (min {t.min_s * 1000:.1f}, max {t.max_s * 1000:.1f}; {t.runs} runs)"


def print_compile(b: CompileBench) -> None:
    print(f"== A generated {b.steps}-step workflow ==")
    print("kinds: " + ", ".join(f"{k} {v}" for k, v in b.kinds.items()))
    print(f"  YAML load         {_timing(b.yaml_load)}")
    print(f"  parse (pydantic)  {_timing(b.parse)}")
    print(f"  lint              {_timing(b.lint)}  -> {len(b.lint_violations)} violations")
    verdict = "meets" if b.compile.median_s < COMPILE_TARGET_SECONDS else "MISSES"
    print(f"  compile to ASL    {_timing(b.compile)}  -> {verdict} the {COMPILE_TARGET_SECONDS:g} s target")
    print(f"  ASL: {b.states} states; {b.asl_bytes:,} bytes as compact JSON ({100 * b.asl_bytes / ASL_MAX_BYTES:.0f}% "
          f"of Step Functions' {ASL_MAX_BYTES:,}-byte definition limit), {b.asl_bytes_printed:,} bytes as "
          f"`stepwise compile` prints it ({100 * b.asl_bytes_printed / ASL_MAX_BYTES:.0f}%)")  # fmt: skip
    for v in b.lint_violations[:5]:
        print(f"  lint: {v}")
    print()


def print_demo(d: DemoBench) -> None:
    print("== make demo, once installed ==")
    print(f"  {' '.join(d.command)}  (cwd {ROOT.name}/)")
    print(f"  wall time {_timing(d.wall, 's')}  exit codes {d.exit_codes}  ({d.output_lines} lines of output)")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    parser.add_argument("--skip-demo", action="store_true", help="do not time `stepwise demo workflows/`")
    parser.add_argument("--workflows", type=Path, default=ROOT / "workflows", help="folder of workflow files")
    parser.add_argument("--size", type=int, default=1000, help="steps in the generated workflow (default 1000)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs of parse, lint and compile (default 7)")
    parser.add_argument("--demo-runs", type=int, default=3, help="timed runs of the demo (default 3)")
    args = parser.parse_args(argv)

    reports = transitions_report(args.workflows)
    bench = compile_bench(args.size, args.runs)
    demo = None if args.skip_demo else demo_bench(args.demo_runs)

    if args.json:
        doc = {
            "convention": CONVENTION,
            "floor_rule": FLOOR_RULE,
            "usd_per_1000_transitions": PRICE_PER_1000_TRANSITIONS,
            "contacts": CONTACTS,
            "workflows": [
                {
                    "name": r.name,
                    "file": r.file,
                    "start_delay_extra": r.start_delay_extra,
                    "paths": [
                        {**asdict(row), "above_floor": row.above_floor, "at_floor": row.matches} for row in r.rows
                    ],
                }
                for r in reports
            ],
            "generated_workflow": {**asdict(bench), "compile_target_s": COMPILE_TARGET_SECONDS},
            "demo": asdict(demo) if demo else None,
        }
        print(json.dumps(doc, indent=2))
    else:
        print_transitions(reports)
        print_compile(bench)
        if demo:
            print_demo(demo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
