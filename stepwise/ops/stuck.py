"""`stepwise stuck WORKFLOW`: the contacts whose run failed, timed out, or waits past the time its step should have
ended (a Wait's scheduled end, a wait_until's timeout, a held send's `until`, plus a margin). Reads the run index
(running enrolments, each with its current step), ListExecutions with a status filter (failed and timed-out runs)
and BatchGetItem of the stuck runs' enrolment records: never a Scan, never one Query per contact."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from shared import clock
from shared import constants as C
from shared.store.contacts import ContactStore
from shared.store.operations import OperationsStore, payload_versions
from shared.store.run_index import PROGRESS
from shared.workflow.durations import parse_duration

DEFAULT_MARGIN = timedelta(hours=1)  # a Wait fires on time; a step runner retrying for an hour is stuck
ENDED_PROBLEMS = {"FAILED": "failed", "TIMED_OUT": "timed_out"}


@dataclass(frozen=True)
class Deadline:
    """When a step the contact waits at should have let it go: `seconds` after it began, or at a fixed time."""

    seconds: int | None = None
    at: datetime | None = None

    def due(self, began: datetime) -> datetime:
        if self.at is not None:
            return max(began, self.at)
        return began + timedelta(seconds=self.seconds or 0)


def deadlines(asl: dict[str, Any]) -> dict[str, Deadline]:
    """Each waiting step of a compiled machine (state name = step id) and how long it lasts: a Wait's Seconds or
    Timestamp, a wait_until's TimeoutSeconds. Waits on a path (SecondsPath, TimestampPath: a start delay, a held
    send) are left out: their length is in the run's data, and the held send's record carries its `until`."""
    out: dict[str, Deadline] = {}
    for name, st in asl.get("States", {}).items():
        if st.get("Type") == "Wait":
            if "Seconds" in st:
                out[name] = Deadline(seconds=int(st["Seconds"]))
            elif "Timestamp" in st:
                out[name] = Deadline(at=datetime.fromisoformat(str(st["Timestamp"]).replace("Z", "+00:00")))
        elif st.get("Type") == "Task" and "waitForTaskToken" in str(st.get("Resource", "")) and "TimeoutSeconds" in st:
            out[name] = Deadline(seconds=int(st["TimeoutSeconds"]))
    return out


@dataclass
class StuckRun:
    contact_id: str
    execution_arn: str
    problem: str  # failed, timed_out, overdue
    step: str  # the last step the run recorded
    since: str  # when that step began (or the run stopped)
    detail: str  # the error and cause, or when the wait was due


@dataclass
class StuckReport:
    workflow: str
    checked_at: str
    running: int  # running enrolments read from the run index
    ended_read: int  # failed and timed-out executions listed
    stuck: list[StuckRun]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stuck": [asdict(s) for s in self.stuck]}


def failure_detail(error: object, cause: object) -> str:
    """A failed execution's error and cause as a user reads them: a Lambda's cause is its error as JSON (type,
    message and the stack trace with file paths); only the message is kept."""
    text = str(cause or "")
    try:
        parsed = json.loads(text) if text.startswith("{") else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        text = str(parsed["errorMessage"])
    return ": ".join(x for x in (str(error or ""), text) if x)


def _last(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not records:
        return None
    return max(records, key=lambda h: (str(h["at"]), str(h.get("entered", "")), int(h.get("seq", 0))))


def find_stuck(
    ops: OperationsStore,
    workflow: str,
    machine_arn: str,
    *,
    now: datetime | None = None,
    margin: timedelta = DEFAULT_MARGIN,
    since: timedelta = timedelta(days=30),
) -> StuckReport:
    """The workflow's stuck runs. A failed run counts only while it is still the contact's current run (a contact
    who entered again since has moved on); a running one is overdue when its current step is a wait whose end,
    plus `margin`, has passed. The current step comes from the run index's keys (the step runner keeps it), so
    the running enrolments are the index's pages; only the runs found stuck are read (BatchGetItem, 100 a
    request), and an entry written before the index carried the step is judged from the contact's records."""
    now = now or clock.now()
    ended: dict[str, tuple[str, str, str]] = {}  # execution -> (problem, contact, detail)
    for status, problem in ENDED_PROBLEMS.items():
        for e in ops.ended_executions(machine_arn, status, now - since):
            desc = ops.describe_execution(e["executionArn"]) or {}
            contact = json.loads(desc.get("input") or "{}").get("contact_id")
            if contact:
                detail = failure_detail(desc.get("error"), desc.get("cause")) or status
                ended[e["executionArn"]] = (problem, str(contact), detail)
    running = list(ops.runs(workflow, status="running"))
    ended_contacts = {c for _, c, _ in ended.values()}
    definitions = _Definitions(ops, machine_arn, workflow)
    overdue: dict[str, tuple[str, str, datetime]] = {}  # contact -> (step, began, due), from the index
    legacy: list[str] = []
    for run in running:
        if not run.state:
            legacy.append(run.contact_id)
            continue
        due = _due(run.state, run.step, run.at, run.until, definitions.deadlines(run.version, run.contact_id))
        if due is not None and now > due + margin:
            overdue[run.contact_id] = (run.step, run.at, due)
    out: list[StuckRun] = []
    records = ops.enrolments(workflow, [*ended_contacts, *overdue])
    for contact in list(dict.fromkeys(c for _, c, _ in ended.values())):
        enrol = records.get(contact)
        if enrol is None or "execution_arn" not in enrol:
            continue
        arn = str(enrol["execution_arn"])
        if arn not in ended:
            continue  # entered again since: the failed run is not the current one
        progress = enrol.get(PROGRESS)
        if progress is None or progress.get("execution") != arn:
            legacy.append(contact)
            continue
        problem, _, detail = ended[arn]
        overdue.pop(contact, None)
        out.append(StuckRun(contact, arn, problem, str(progress.get("step", "")), str(progress.get("at", "")), detail))
    for contact, (step, began, due) in overdue.items():
        enrol = records.get(contact)
        if enrol is None or enrol.get("status") != "running" or "execution_arn" not in enrol:
            continue
        late = now - due
        out.append(
            StuckRun(
                contact, str(enrol["execution_arn"]), "overdue", step, began, f"due {due.isoformat()}, {late} late"
            )
        )
    out += _stuck_from_records(ops, workflow, legacy, ended, definitions, now, margin)
    # In the order the runs were always listed: the index's, then the ended runs'.
    order = {c: i for i, c in enumerate(dict.fromkeys([*(r.contact_id for r in running), *ended_contacts]))}
    out.sort(key=lambda s: order.get(s.contact_id, len(order)))
    return StuckReport(workflow, now.isoformat(), len(running), len(ended), out)


def _due(state: str, step: str, began: str, until: str, deadline_of: dict[str, Deadline]) -> datetime | None:
    """When a run at `step` since `began` should have moved on: a held send's `until`, a wait's end."""
    if state == "held" and until:
        return datetime.fromisoformat(until.replace("Z", "+00:00"))
    if state == "waiting" and began:
        deadline = deadline_of.get(step)
        return deadline.due(datetime.fromisoformat(began)) if deadline else None
    return None


class _Definitions:
    """Each waiting step's deadline per version of the workflow the runs execute (the version their records
    name), read once per version: the alias's definition, or the machine's version whose Task payloads carry
    that version."""

    def __init__(self, ops: OperationsStore, machine_arn: str, workflow: str = "") -> None:
        self.ops, self.machine_arn, self.workflow = ops, machine_arn, workflow
        self.cache: dict[str, dict[str, Deadline]] = {}
        self.by_arn: dict[str, dict[str, Deadline]] = {}

    def of_arn(self, arn: str) -> dict[str, Deadline]:
        if arn not in self.by_arn:
            self.by_arn[arn] = deadlines(self.ops.deployed_definition(arn))
        return self.by_arn[arn]

    def deadlines(self, version: str, contact_id: str = "") -> dict[str, Deadline]:
        if version not in self.cache:
            asl = self.ops.definition_of_version(self.machine_arn, version) if version else None
            if asl is None and version and contact_id:
                asl = self._of_run(version, contact_id)
            self.cache[version] = deadlines(asl) if asl is not None else self.of_arn(self.machine_arn)
        return self.cache[version]

    def _of_run(self, version: str, contact_id: str) -> dict[str, Any] | None:
        """The definition of `version` found through one run that executes it, once per version (not per contact):
        its enrolment's pinned version ARN, else the version its execution was started on (DescribeExecution). For
        a version neither the alias runs nor a version listing finds (moto lists none)."""
        enrol = self.ops.enrolments(self.workflow, [contact_id]).get(contact_id) or {}
        arn = str(enrol.get("version_arn") or "")
        if not arn and enrol.get("execution_arn"):
            arn = str(
                (self.ops.describe_execution(str(enrol["execution_arn"])) or {}).get("stateMachineVersionArn", "")
            )
        if not arn:
            return None
        asl = self.ops.deployed_definition(arn)
        return asl if version in payload_versions(asl) else None


def _stuck_from_records(
    ops: OperationsStore,
    workflow: str,
    contacts: list[str],
    ended: dict[str, tuple[str, str, str]],
    definitions: _Definitions,
    now: datetime,
    margin: timedelta,
) -> list[StuckRun]:
    """Stuck runs judged from the contacts' records (one Query each): enrolments whose index entry predates the
    current step on it."""
    out: list[StuckRun] = []
    for part in ops.partitions(list(dict.fromkeys(contacts)), workflow=workflow):
        enrol = next(iter(part.of(f"ENROLL#{workflow}")), None)
        if enrol is None or "execution_arn" not in enrol:
            continue
        arn = str(enrol["execution_arn"])
        last = _last([h for h in part.of("HIST#") if h.get("execution") == arn])
        step, began = (str(last["step"]), str(last["at"])) if last else ("", str(enrol.get("entered_at", "")))
        if arn in ended:
            problem, _, detail = ended[arn]
            out.append(StuckRun(part.contact_id, arn, problem, step, began, detail))
            continue
        if enrol.get("status") != "running" or last is None or str(last[C.SK]).endswith("#resumed"):
            continue
        state = "held" if last.get("outcome") == "held" else "waiting" if last.get("outcome") == "waiting" else ""
        # The version the run executes: noted on a pinned restart, else what the alias runs.
        source = str(enrol.get("version_arn") or definitions.machine_arn)
        due = _due(state, step, began, str(last.get("until") or ""), definitions.of_arn(source))
        if due is not None and now > due + margin:
            late = now - due
            out.append(StuckRun(part.contact_id, arn, "overdue", step, began, f"due {due.isoformat()}, {late} late"))
    return out


def print_stuck(r: StuckReport, out: Any) -> None:
    print(
        f"{r.workflow}: {len(r.stuck)} stuck of {r.running} running and {r.ended_read} failed or timed out"
        f" (checked {r.checked_at})",
        file=out,
    )
    for s in r.stuck:
        print(
            f"  {s.contact_id}  {s.problem:<9} at {s.step or '(no step recorded)'} since {s.since}: {s.detail}",
            file=out,
        )
        print(
            f"      resume: stepwise resume {s.contact_id} {r.workflow}" + (f" --at {s.step}" if s.step else ""),
            file=out,
        )


def stuck_command(args: argparse.Namespace) -> int:
    from stepwise.errors import aws

    with aws("stuck", table=args.table, machine=_machine(args)):  # an AWS error: one line, exit 2
        return _stuck(args)


def _machine(args: argparse.Namespace) -> str | None:
    template = args.arn_template
    return template.replace("{workflow}", args.workflow) if template else None


def _stuck(args: argparse.Namespace) -> int:
    from stepwise.ops import clients, need

    need(
        args,
        ("--table", args.table, C.ENV_TABLE_NAME),
        ("--machine-arn-template", args.arn_template, C.ENV_STATE_MACHINE_ARN_TEMPLATE),
    )
    ddb, sfn = clients("dynamodb", "stepfunctions")
    ops = OperationsStore(ContactStore(args.table, ddb), sfn=sfn)
    machine = args.arn_template.replace("{workflow}", args.workflow)
    report = find_stuck(
        ops,
        args.workflow,
        machine,
        margin=timedelta(seconds=parse_duration(args.margin)),
        since=timedelta(seconds=parse_duration(args.since)),
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        print_stuck(report, sys.stdout)
    return 0


def add_parser(sub: Any) -> None:
    from stepwise.ops import add_stack_options

    p = sub.add_parser("stuck", help="contacts whose run failed, timed out, or waits past its step's expected time")
    p.add_argument("workflow", metavar="WORKFLOW")
    p.add_argument("--margin", default="1h", help="how late a wait may be before it counts as stuck (default 1h)")
    p.add_argument("--since", default="30d", help="failed and timed-out runs started within (default 30d)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_stack_options(p, machines=True)
    p.set_defaults(func=stuck_command)
