"""`stepwise stats WORKFLOW [--since 7d]`: the funnel of a workflow: entered, reached each step, each branch's share,
goals reached, sent / delivered / opened / clicked, split paths and the winner, and (from the table) who waits or
is held at each step now. Two sources behind one interface: the table (the funnel and run indexes on GSI1: bounded
Query pages of keys, per entry, locally and anywhere) and CloudWatch (the step runner's metrics, namespace Stepwise:
the figures the dashboard shows)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared import clock
from shared import constants as C
from shared.store.contacts import ContactStore
from shared.store.operations import FunnelEntry, MetricsReader, OperationsStore
from shared.store.run_index import message_run
from shared.workflow.durations import DurationError, parse_duration
from stepwise.errors import CliError

DELIVERED = ("email.delivered", "sms.delivered")


@dataclass
class Funnel:
    workflow: str
    since: str
    source: str
    entered: int = 0
    reached: dict[str, int] = field(default_factory=dict)  # step -> contacts (table) or arrivals (CloudWatch)
    branches: dict[str, dict[str, int]] = field(default_factory=dict)  # decision step -> branch -> count
    goals: dict[str, int] = field(default_factory=dict)
    messages: dict[str, int | None] = field(default_factory=dict)  # sent, delivered, opened, clicked
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)  # split step -> {paths, winner}
    waiting: dict[str, int] | None = None  # step -> running contacts waiting there now (table only)
    held: dict[str, int] | None = None  # step -> running contacts whose send is held there now (table only)
    reads: dict[str, int] = field(default_factory=dict)

    def shares(self) -> dict[str, dict[str, float]]:
        return {
            step: {b: n / total for b, n in taken.items()}
            for step, taken in self.branches.items()
            if (total := sum(taken.values()))
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "since": self.since,
            "source": self.source,
            "entered": self.entered,
            "reached": self.reached,
            "branches": self.branches,
            "branch_shares": self.shares(),
            "goals": self.goals,
            "messages": self.messages,
            "splits": self.splits,
            "waiting": self.waiting,
            "held": self.held,
            "reads": self.reads,
        }


class StatsSource(Protocol):
    def funnel(self, workflow: str, since: datetime) -> Funnel: ...


class TableSource:
    """Counts from the indexes, per entry: the funnel index (GSI1 FUNNEL#<workflow>#<shard>, one key range from
    `since` on each shard) holds a marker per entry, a key per step record (its step, branch, goal) and per message
    event of the workflow; the run index holds each running enrolment's current step (waiting per step). Both are
    bounded Query pages of keys: nothing is read per contact. A contact who entered twice counts twice, and each
    entry reaches a step once however often it loops through it (its branches are counted per visit)."""

    def __init__(self, ops: OperationsStore) -> None:
        self.ops = ops

    def funnel(self, workflow: str, since: datetime) -> Funnel:
        f = Funnel(workflow, since.isoformat(), "table")
        entries: set[str] = set()
        continued: dict[str, str] = {}  # a restart's execution -> the entry it goes on with
        records: list[FunnelEntry] = []
        message_events: list[FunnelEntry] = []
        messages: dict[str, set[str]] = defaultdict(set)
        start = self.ops.index_pages
        for e in self.ops.funnel(workflow, since):
            if e.mark == "entered":
                entries.add(e.run)
            elif e.mark == "continued":  # a restart (a goal's jump, a resume): the same entry goes on
                continued[e.run] = e.name
            elif e.mark == "msg":
                message_events.append(e)
            else:
                records.append(e)
        funnel_pages = self.ops.index_pages - start
        reached: dict[str, set[str]] = defaultdict(set)
        branches: dict[str, Counter[str]] = defaultdict(Counter)
        split_steps: set[str] = set()
        goals: dict[str, set[str]] = defaultdict(set)
        for r in records:
            run = continued.get(r.run, r.run)
            if run not in entries or r.mark in ("unmet", "held"):
                continue  # a run entered before `since`; a goal passed unmet, a send held (not sent yet): not reached
            reached[r.name].add(run)
            if r.branch:
                branches[r.name][r.branch] += 1
            if r.mark == "split":
                split_steps.add(r.name)
            elif r.mark == "goal":
                goals[r.name].add(run)
        for e in message_events:  # per entry too: the event of a message sent by a run entered since `since`
            execution, message_id = message_run(e.run)
            if execution and continued.get(execution, execution) not in entries:
                continue  # sent by a run entered before `since` (a key without its run: counted by its time)
            messages[e.name].add(message_id)
        f.entered = len(entries)
        f.reached = {s: len(c) for s, c in sorted(reached.items())}
        f.branches = {s: dict(sorted(c.items())) for s, c in sorted(branches.items())}
        f.goals = {s: len(c) for s, c in sorted(goals.items())}
        f.messages = {k: len(messages[k]) for k in ("sent", "delivered", "opened", "clicked")}
        start = self.ops.index_pages
        now: dict[str, Counter[str]] = {"waiting": Counter(), "held": Counter()}  # one read of the running runs
        for ix in self.ops.runs(workflow, status="running"):
            if ix.step and ix.state in now:
                now[ix.state][ix.step] += 1
        f.waiting, f.held = (dict(sorted(now[k].items())) for k in ("waiting", "held"))
        for step in sorted(split_steps):
            stats = self.ops.split_stats(workflow, step) or {}
            f.splits[step] = {"paths": f.branches.get(step, {}), "winner": stats.get("winner")}
        f.reads = {
            "funnel_index_pages": funnel_pages,
            "run_index_pages": self.ops.index_pages - start,
            "partition_queries": 0,
        }
        return f


class CloudWatchSource:
    """The same funnel from the step runner's metrics (GetMetricData over every metric of the workflow). Delivered
    is not a step-runner metric (None); split steps are those named in `split_steps` (from the workflow file), and
    a winner is read from the table when one is given."""

    def __init__(
        self, reader: MetricsReader, split_steps: set[str] | None = None, ops: OperationsStore | None = None
    ) -> None:
        self.reader = reader
        self.split_steps = split_steps or set()
        self.ops = ops

    def funnel(self, workflow: str, since: datetime) -> Funnel:
        f = Funnel(workflow, since.isoformat(), "cloudwatch")
        reached: Counter[str] = Counter()
        branches: dict[str, Counter[str]] = defaultdict(Counter)
        goals: Counter[str] = Counter()
        msg: Counter[str] = Counter()
        sums = self.reader.sums(workflow, since)
        for name, dims, value in sums:
            n = round(value)
            step = dims.get("step", "")
            if name == C.METRIC_ENTERED:
                f.entered += n
            elif name in (C.METRIC_STEP_COMPLETED, C.METRIC_WAIT_STARTED) or (
                name == C.METRIC_ENDED and dims.get("reason") == "end_step"
            ):
                reached[step] += n
            elif name == C.METRIC_BRANCH_TAKEN:
                branches[step][dims.get("branch", "")] += n
                reached[step] += n
            elif name == C.METRIC_GOAL_REACHED:
                goals[step] += n
                reached[step] += n
            elif name == C.METRIC_MESSAGE_SENT:
                msg["sent"] += n
            elif name == C.METRIC_MESSAGE_OPENED:
                msg["opened"] += n
            elif name == C.METRIC_MESSAGE_CLICKED:
                msg["clicked"] += n
        f.reached = dict(sorted((s, n) for s, n in reached.items() if n))
        f.branches = {s: dict(sorted(c.items())) for s, c in sorted(branches.items())}
        f.goals = dict(sorted(goals.items()))
        f.messages = {"sent": msg["sent"], "delivered": None, "opened": msg["opened"], "clicked": msg["clicked"]}
        for step in sorted(self.split_steps & set(branches)):
            stats = (self.ops.split_stats(workflow, step) if self.ops else None) or {}
            f.splits[step] = {"paths": f.branches[step], "winner": stats.get("winner")}
        f.reads = {"metrics": len(sums)}
        return f


def print_funnel(f: Funnel, out: Any) -> None:
    print(f"{f.workflow} since {f.since} (from {f.source}): {f.entered} entered", file=out)
    unit = "contacts" if f.source == "table" else "arrivals"
    for step, n in f.reached.items():
        pct = f" ({n / f.entered:.0%})" if f.entered else ""
        print(f"  {step}: {n} {unit}{pct}", file=out)
    shares = f.shares()
    for step, taken in f.branches.items():
        parts = ", ".join(f"{b} {n} ({shares.get(step, {}).get(b, 0):.0%})" for b, n in taken.items())
        print(f"  {step} branches: {parts}", file=out)
    for step, n in f.goals.items():
        print(f"  goal {step}: {n} reached", file=out)
    m = f.messages
    print(
        "  messages: "
        + ", ".join(f"{k} {'n/a' if m.get(k) is None else m[k]}" for k in ("sent", "delivered", "opened", "clicked")),
        file=out,
    )
    for step, s in f.splits.items():
        paths = ", ".join(f"{p} {n}" for p, n in s["paths"].items())
        print(f"  split {step}: {paths}; winner {s['winner'] or 'not decided'}", file=out)
    if f.waiting:
        print("  waiting now: " + ", ".join(f"{step} {n}" for step, n in f.waiting.items()), file=out)
    if f.held:  # a send held by its window or the frequency cap: not reached (not sent) until it goes
        print("  held now (send not yet gone): " + ", ".join(f"{s} {n}" for s, n in f.held.items()), file=out)


def since_time(text: str, now: datetime | None = None) -> datetime:
    try:
        return (now or clock.now()) - timedelta(seconds=parse_duration(text))
    except DurationError as err:
        raise CliError(f"stats: --since {text!r}: {err}") from None


def stats_command(args: argparse.Namespace) -> int:
    from stepwise.errors import aws

    with aws("stats", table=args.table):  # an AWS error: one line, exit 2
        return _stats(args)


def _stats(args: argparse.Namespace) -> int:
    from stepwise.ops import clients, need

    since = since_time(args.since)
    source = args.source or ("table" if args.table else "cloudwatch")
    ops = None
    if args.table:
        (ddb,) = clients("dynamodb")
        ops = OperationsStore(ContactStore(args.table, ddb))
    src: StatsSource
    if source == "table":
        need(args, ("--table", args.table, C.ENV_TABLE_NAME))
        assert ops is not None
        src = TableSource(ops)
    else:
        splits: set[str] = set()
        if args.file:
            from shared.workflow.model import SplitStep, load_workflow

            splits = {s.id for s, _ in load_workflow(args.file).walk() if isinstance(s.root, SplitStep) and s.id}
        (cw,) = clients("cloudwatch")
        src = CloudWatchSource(MetricsReader(cw), splits, ops)
    funnel = src.funnel(args.workflow, since)
    if args.json:
        print(json.dumps(funnel.as_dict(), indent=2))
    else:
        print_funnel(funnel, sys.stdout)
    return 0


def add_parser(sub: Any) -> None:
    from stepwise.ops import add_stack_options

    p = sub.add_parser("stats", help="a workflow's funnel: entered, steps, branches, goals, messages, split winner")
    p.add_argument("workflow", metavar="WORKFLOW")
    p.add_argument("--since", default="7d", help="how far back (a duration: 7d, 24h; default 7d)")
    p.add_argument(
        "--source",
        choices=("table", "cloudwatch"),
        help="where the figures come from (default: the table when --table is given, else CloudWatch)",
    )
    p.add_argument("--file", metavar="FILE", help="the workflow file (CloudWatch: which steps are splits)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_stack_options(p)
    p.set_defaults(func=stats_command)
