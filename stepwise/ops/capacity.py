"""`stepwise capacity`: for the contacts expected per day per workflow, the open executions at steady state (Little's
law), the StartExecution and state-transition rates, and the monthly cost of Step Functions, Lambda and DynamoDB,
against the account quotas, warning before one is reached. Pure computation over the compiled machines."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared.workflow.compiler import compile_workflow
from shared.workflow.cost import CALLBACK_SUFFIX, PRICE_PER_1000_TRANSITIONS, analyse, transitions
from shared.workflow.model import Trigger, Workflow, WorkflowFileError, load_workflow, workflow_files
from stepwise.errors import EXIT_PROBLEMS, CliError

DAY = 86_400
MONTH_DAYS = 30

# Account quotas per Region (AWS documentation, Step Functions service quotas).
OPEN_EXECUTIONS_QUOTA = 1_000_000
BIG_REGIONS = frozenset({"us-east-1", "us-west-2", "eu-west-1"})
START_REFILL = {"big": 300.0, "other": 150.0}  # StartExecution token bucket refill per second
TRANSITION_REFILL = {"big": 1500.0, "other": 500.0}  # StateTransition refill per second
WARN_AT = 0.8  # warn once a figure reaches 80% of its quota

# Prices (us-east-1, on demand, free tiers left out).
LAMBDA_PER_MILLION_REQUESTS = 0.20
LAMBDA_PER_GB_SECOND = 0.0000166667  # x86
DDB_PER_MILLION_WRITE_UNITS = 0.625
DDB_PER_MILLION_READ_UNITS = 0.125


@dataclass(frozen=True)
class Assumptions:
    """What the figures assume; printed with them."""

    lambda_ms: int = 100  # billed duration of one step-runner invocation
    lambda_mb: int = 512  # the step runner's memory (infra/constructs/step_runner.py)
    # DynamoDB request units per step-runner invocation: GetItem of the profile (1 strongly consistent read of
    # <= 4 KB) plus one more read; TransactWriteItems of the history record and one side effect (2 items, 2 write
    # units each, transactional).
    reads_per_step: int = 2
    writes_per_step: int = 4
    # Per entry: the claim transaction (entry check + ENROLL# claim: 2 items x 2) and the confirming put (1); the
    # ENROLL# read and the workflow status read.
    reads_per_entry: int = 2
    writes_per_entry: int = 5
    peak_factor: float = 10.0  # the busiest second's rate over the day's average (a campaign send, a sale)


@dataclass
class WorkflowCapacity:
    workflow: str
    contacts_per_day: float
    days_inside: float  # time inside along the path with the longest waits (upper bound)
    days_inside_shortest: float
    open_executions: float  # arrivals x time inside (Little's law)
    transitions_per_contact: int  # the path with the most transitions (no loops, no retries)
    invocations_per_contact: int  # step-runner Tasks on that path
    start_per_second: float
    transitions_per_second: float
    monthly_usd: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class CapacityReport:
    region: str
    assumptions: Assumptions
    workflows: list[WorkflowCapacity]
    totals: dict[str, float]
    quotas: dict[str, float]
    warnings: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "assumptions": asdict(self.assumptions),
            "workflows": [asdict(w) for w in self.workflows],
            "totals": self.totals,
            "quotas": self.quotas,
            "warnings": self.warnings,
        }


def _state_seconds(state: dict[str, Any]) -> tuple[int, str | None]:
    """Seconds a contact spends in a state at most, and a note when it cannot be known from the definition."""
    if state["Type"] == "Wait":
        if "Seconds" in state:
            return int(state["Seconds"]), None
        if "Timestamp" in state or "TimestampPath" in state:
            return 0, "a wait until a fixed date is not counted (its length depends on the day the contact enters)"
        return 0, None  # SecondsPath: the trigger's start delay, added from the model
    if state["Type"] == "Task" and str(state.get("Resource", "")).endswith(CALLBACK_SUFFIX):
        # wait_until an event or condition: at most its timeout (a contact resumed earlier spends less).
        return int(state.get("TimeoutSeconds", 0)), None
    return 0, None


def _start_delay(wf: Workflow) -> int:
    return max((int(t.root.delay or 0) for t in wf.triggers if isinstance(t.root, Trigger)), default=0)


def workflow_capacity(wf: Workflow, per_day: float, a: Assumptions) -> WorkflowCapacity:
    asl = compile_workflow(wf, "arn:aws:lambda:us-east-1:123456789012:function:stepwise-step-runner")
    report = analyse(asl, contacts=1, max_loops=wf.settings.max_loops)
    notes: set[str] = set()
    times = []
    for p in report.paths:
        total = 0
        for name in p:
            secs, note = _state_seconds(asl["States"][name])
            total += secs
            if note:
                notes.add(note)
        times.append(total)
    delay = _start_delay(wf)
    longest = (max(times, default=0) + delay) / DAY
    shortest = (min(times, default=0) + delay) / DAY
    most = max(report.paths, key=transitions) if report.paths else []
    per_contact = transitions(most) + report.start_delay_extra
    tasks = sum(1 for n in most if asl["States"][n]["Type"] == "Task")
    if report.loops:
        notes.add(f"loops not counted: each turn adds transitions (settings.max_loops {wf.settings.max_loops})")
    month = per_day * MONTH_DAYS
    invocations = month * tasks
    gb_seconds = invocations * a.lambda_ms / 1000 * a.lambda_mb / 1024
    reads = month * (a.reads_per_entry + tasks * a.reads_per_step)
    writes = month * (a.writes_per_entry + tasks * a.writes_per_step)
    cost = {
        "step_functions": month * per_contact * PRICE_PER_1000_TRANSITIONS / 1000,
        "lambda": invocations * LAMBDA_PER_MILLION_REQUESTS / 1e6 + gb_seconds * LAMBDA_PER_GB_SECOND,
        "dynamodb": reads * DDB_PER_MILLION_READ_UNITS / 1e6 + writes * DDB_PER_MILLION_WRITE_UNITS / 1e6,
    }
    cost["total"] = sum(cost.values())
    return WorkflowCapacity(
        workflow=wf.name,
        contacts_per_day=per_day,
        days_inside=longest,
        days_inside_shortest=shortest,
        open_executions=per_day * longest,
        transitions_per_contact=per_contact,
        invocations_per_contact=tasks,
        start_per_second=per_day / DAY,
        transitions_per_second=per_day * per_contact / DAY,
        monthly_usd=cost,
        notes=sorted(notes),
    )


def quotas(region: str) -> dict[str, float]:
    size = "big" if region in BIG_REGIONS else "other"
    return {
        "open_executions": OPEN_EXECUTIONS_QUOTA,
        "start_execution_per_second": START_REFILL[size],
        "state_transitions_per_second": TRANSITION_REFILL[size],
    }


def capacity(
    workflows: list[Workflow], expected: dict[str, float], region: str = "us-east-1", a: Assumptions | None = None
) -> CapacityReport:
    """The report for the workflows named in `expected` (contacts per day each)."""
    a = a or Assumptions()
    by_name = {wf.name: wf for wf in workflows}
    unknown = sorted(set(expected) - set(by_name))
    if unknown:
        raise KeyError(f"--expect: no workflow named {', '.join(unknown)} (known: {', '.join(sorted(by_name))})")
    rows = [workflow_capacity(by_name[n], expected[n], a) for n in sorted(expected)]
    totals = {
        "open_executions": sum(w.open_executions for w in rows),
        "start_per_second": sum(w.start_per_second for w in rows),
        "transitions_per_second": sum(w.transitions_per_second for w in rows),
        "peak_start_per_second": sum(w.start_per_second for w in rows) * a.peak_factor,
        "peak_transitions_per_second": sum(w.transitions_per_second for w in rows) * a.peak_factor,
        **{f"monthly_{k}_usd": sum(w.monthly_usd[k] for w in rows) for k in ("step_functions", "lambda", "dynamodb")},
    }
    totals["monthly_total_usd"] = sum(w.monthly_usd["total"] for w in rows)
    q = quotas(region)
    warnings = []
    for what, value, limit, unit in (
        ("open executions at steady state", totals["open_executions"], q["open_executions"], ""),
        (
            f"StartExecution at peak ({a.peak_factor:g}x the average)",
            totals["peak_start_per_second"],
            q["start_execution_per_second"],
            "/s",
        ),
        (
            f"state transitions at peak ({a.peak_factor:g}x the average)",
            totals["peak_transitions_per_second"],
            q["state_transitions_per_second"],
            "/s",
        ),
    ):
        share = value / limit
        if share >= 1:
            warnings.append(f"OVER QUOTA: {what} {value:,.1f}{unit} exceeds the {region} quota {limit:,.0f}{unit}")
        elif share >= WARN_AT:
            warnings.append(
                f"near quota: {what} {value:,.1f}{unit} is {share:.0%} of the {region} quota {limit:,.0f}{unit} "
                "(ask AWS for an increase before launch)"
            )
    return CapacityReport(region, a, rows, totals, q, warnings)


def print_capacity(r: CapacityReport, out: Any) -> None:
    a = r.assumptions
    for w in r.workflows:
        print(f"{w.workflow}: {w.contacts_per_day:,.0f} contacts/day", file=out)
        print(
            f"  inside {w.days_inside:,.2f} days on the longest-waiting path ({w.days_inside_shortest:,.2f} on the "
            f"shortest): {w.open_executions:,.0f} open executions at steady state",
            file=out,
        )
        print(
            f"  {w.start_per_second:,.4f} StartExecution/s, {w.transitions_per_second:,.4f} transitions/s "
            f"({w.transitions_per_contact} per contact, {w.invocations_per_contact} step-runner invocations)",
            file=out,
        )
        m = w.monthly_usd
        print(
            f"  per month: Step Functions ${m['step_functions']:,.2f}, Lambda ${m['lambda']:,.2f}, "
            f"DynamoDB ${m['dynamodb']:,.2f}, total ${m['total']:,.2f}",
            file=out,
        )
        for n in w.notes:
            print(f"  note: {n}", file=out)
    t, q = r.totals, r.quotas
    print(
        f"all: {t['open_executions']:,.0f} open executions (quota {q['open_executions']:,.0f}); "
        f"StartExecution {t['start_per_second']:,.3f}/s, peak {t['peak_start_per_second']:,.2f}/s "
        f"(refill {q['start_execution_per_second']:g}/s in {r.region}); "
        f"transitions {t['transitions_per_second']:,.3f}/s, "
        f"peak {t['peak_transitions_per_second']:,.2f}/s (refill {q['state_transitions_per_second']:g}/s); "
        f"${t['monthly_total_usd']:,.2f} a month",
        file=out,
    )
    print(
        f"assumes: Little's law (open = arrivals x time inside) with every contact staying the whole path with the "
        f"longest waits (a wait_until lasts its full timeout; loops and retries not counted); {MONTH_DAYS}-day "
        f"months; Lambda {a.lambda_ms} ms at {a.lambda_mb} MB per step; DynamoDB {a.reads_per_step} read and "
        f"{a.writes_per_step} write units per step, {a.reads_per_entry} and {a.writes_per_entry} per entry, on "
        f"demand; peak {a.peak_factor:g}x the average rate; us-east-1 prices",
        file=out,
    )
    for w_ in r.warnings:
        print(f"WARNING: {w_}", file=out)


def _expect(values: list[str]) -> dict[str, float]:
    out = {}
    for v in values:
        name, sep, n = v.partition("=")
        try:
            out[name] = float(n)
        except ValueError:
            sep = ""
        if not sep or out[name] < 0:
            raise CliError(f"capacity: --expect {v!r}: write WORKFLOW=CONTACTS_PER_DAY, e.g. welcome=500")
    return out


def capacity_command(args: argparse.Namespace) -> int:
    try:
        workflows = [load_workflow(p) for p in workflow_files(Path(args.workflows))]
    except WorkflowFileError as err:
        for line in err.problems:
            print(line, file=sys.stderr)
        return 1
    if not workflows:
        print(f"stepwise capacity: {args.workflows}: no workflow files", file=sys.stderr)
        return 1
    expected = _expect(args.expect or [])
    if args.contacts_per_day is not None:
        expected = {wf.name: float(args.contacts_per_day) for wf in workflows} | expected
    if not expected:
        raise CliError("capacity: give --contacts-per-day N or --expect WORKFLOW=N")  # a usage error: exit 2
    a = Assumptions(lambda_ms=args.lambda_ms, lambda_mb=args.lambda_mb, peak_factor=args.peak_factor)
    try:
        report = capacity(workflows, expected, args.region, a)
    except KeyError as err:  # --expect naming no workflow: a usage error, exit 2
        raise CliError(f"capacity: {err.args[0]}") from None
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print_capacity(report, sys.stdout)
    # Over a quota is a problem found (1), as lint's problems are; 2 is for a command that could not run as given.
    return EXIT_PROBLEMS if any(w.startswith("OVER QUOTA") for w in report.warnings) else 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("capacity", help="open executions, rates and monthly cost for the contacts you expect")
    p.add_argument("--workflows", default="workflows", metavar="DIR", help="the workflow files (default workflows)")
    p.add_argument("--contacts-per-day", type=float, metavar="N", help="contacts entering each workflow per day")
    p.add_argument("--expect", nargs="+", metavar="WORKFLOW=N", help="contacts per day of named workflows")
    p.add_argument("--region", default="us-east-1", help="sets the StartExecution and transition quotas")
    p.add_argument("--lambda-ms", type=int, default=Assumptions.lambda_ms, help="billed ms per step (default 100)")
    p.add_argument("--lambda-mb", type=int, default=Assumptions.lambda_mb, help="step runner memory (default 512)")
    p.add_argument("--peak-factor", type=float, default=Assumptions.peak_factor, help="peak rate over the average")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=capacity_command)
