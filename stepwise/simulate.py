"""Runs workflows on the embedded local stack against timed events: `stepwise simulate` and `stepwise demo`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import boto3
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared import constants as C
from shared.enrollment import Enroller
from shared.events import ContactEvent
from shared.history import dump_entry_plans
from shared.routing import Routed, Router, outbox_to_event
from shared.runtime import broadcast as broadcast_module
from shared.runtime import schedules as schedules_module
from shared.runtime.broadcast import Broadcaster, schedule_all
from shared.runtime.schedules import ScheduleContext, Schedules, dispatch
from shared.store.broadcasts import BroadcastStore
from shared.store.contacts import ContactStore, create_table, deserialise
from shared.store.schedules import ScheduleStore, StoredSchedule
from shared.workflow.broadcast import broadcast_definition
from shared.workflow.compiler import compile_workflow, entry_plans
from shared.workflow.durations import parse_duration
from shared.workflow.model import ScheduleTrigger, Workflow, WorkflowFileError, load_workflow, workflow_files
from stepwise.errors import strict_json_loads
from stepwise.lifecycle import Lifecycle
from stepwise.local.stack import LocalStack
from stepwise.outbox import LocalDelivery, outbox_rows, print_outbox, templates_dir, use_templates

TABLE = "stepwise-local"
STEP_RUNNER = "functions.step_runner.handler.handler"
DEFAULT_START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
RUN_ENDED = "run.ended"  # the timeline's label for what the end of a run caused
_STREAM_PAGE = 1000  # records per GetRecords call, the most DynamoDB Streams returns


# Schedules locally: the group, the bucket of list snapshots, and the in-process schedule handler (in AWS the
# router's schedule_handler, C.HANDLER_ROUTER_SCHEDULE) that the broadcast machine's batches invoke.
LOCAL_SCHEDULE_GROUP = "stepwise-local"
LOCAL_BUCKET = "stepwise-local-archive"
LOCAL_SCHEDULE_HANDLER = "stepwise.simulate.local_schedule_handler"
SETTLE_SECONDS = 600.0  # real seconds a broadcast of thousands of contacts may take on moto before advance gives up
_ACTIVE: Simulation | None = None  # the one simulation of this process (the local stack's patches are global)


def local_schedule_handler(event: dict[str, Any], context: Any) -> Any:
    """The schedule handler of the local stack: dispatches to the running simulation's router."""
    if _ACTIVE is None:
        raise RuntimeError("no simulation is running: the local schedule handler has nothing to route with")
    result = dispatch(event, _ACTIVE.schedule_context)
    _ACTIVE.record(result, str(event.get("kind")))
    return {k: v for k, v in result.items() if k != "routed"} if isinstance(result, dict) else result


def _unbind_schedules() -> None:
    global _ACTIVE
    schedules_module.bind(None)
    broadcast_module.bind(None)
    _ACTIVE = None


class EventsFileError(Exception):
    """A line of an events file that cannot be used; the message names the line and the field."""


@dataclass
class TimedEvent:
    at: datetime
    event: ContactEvent


@dataclass
class TimedDelivery:
    """A raw webhook delivery of an events file, judged by the same intake code as the API when its time comes."""

    at: datetime
    provider: str
    headers: dict[str, str]
    body: bytes  # the exact bytes a signature is over
    token: str | None  # the secret path token of providers that cannot sign (/webhooks/{provider}/{token})
    where: str  # file:line, for the timeline


class _EventLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: str | None = None
    event: dict[str, Any]


class _DeliveryLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: str | None = None
    provider: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None  # a JSON value (serialised compactly) or a string (its UTF-8 bytes, e.g. multipart)
    body_raw: str | None = None  # the exact bytes, when a signature must match them as sent
    token: str | None = None


TimedItem = TimedEvent | TimedDelivery
_LINE_SHAPES = (
    '{"at": "+10m" | ISO time, "event": {...}} or '
    '{"at": ..., "provider": "shopify", "headers": {...}, "body": JSON value | "raw text"}'
)


def delivery_bytes(body: Any) -> bytes:
    """The bytes of a delivery line's body: a string as it is (UTF-8), any other JSON value serialised compactly
    (no spaces, non-ASCII kept), which is what a signature in its headers must be computed over."""
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _first_error(err: ValidationError, prefix: str = "") -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return f"field {prefix}{loc}: {first['msg']}" if loc or prefix else first["msg"]


def parse_at(text: str, start: datetime) -> datetime:
    if text.startswith("+"):
        return start + timedelta(seconds=parse_duration(text[1:]))
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if at.tzinfo is None:
        raise ValueError(f"{text!r} needs a time zone (e.g. 2026-12-01T09:00:00Z)")
    return at


def read_events(path: Path, start: datetime) -> list[TimedItem]:
    """The timed lines of an events file (JSON Lines; blank lines and lines starting with # are skipped), in time
    order. A line without "at" happens at the start (+0). Raises EventsFileError naming the file, line and field."""
    out: list[TimedItem] = []
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line_no = data[: err.start].count(b"\n") + 1
        raise EventsFileError(
            f"{path}:{line_no}: not UTF-8 text (byte 0x{data[err.start]:02x}); save the file as UTF-8"
        ) from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            raw = strict_json_loads(line)  # no NaN, Infinity or 1e400: DynamoDB could not store them
        except json.JSONDecodeError as err:
            raise EventsFileError(f"{path}:{n}: not JSON: {err.msg}") from None
        except ValueError as err:
            raise EventsFileError(f"{path}:{n}: {err}") from None
        if not isinstance(raw, dict) or ("event" in raw) == ("provider" in raw):
            raise EventsFileError(f"{path}:{n}: a line is {_LINE_SHAPES}")
        try:
            parsed: _EventLine | _DeliveryLine = (_EventLine if "event" in raw else _DeliveryLine).model_validate(raw)
        except ValidationError as err:
            raise EventsFileError(f"{path}:{n}: {_first_error(err)}") from None
        try:
            at = parse_at(parsed.at or "+0s", start)
        except ValueError as err:
            raise EventsFileError(f"{path}:{n}: field at: {err}") from None
        if isinstance(parsed, _EventLine):
            # Read as POST /events reads its body: the same checks (a time needs its zone), the same words.
            from shared.intake.base import IntakeError
            from shared.intake.generic import parse_events

            try:
                (event,) = parse_events(json.dumps(parsed.event).encode())
            except IntakeError as err:
                raise EventsFileError(f"{path}:{n}: field event.{err}") from None
            out.append(TimedEvent(at, event))
            continue
        if (parsed.body is None) == (parsed.body_raw is None):
            raise EventsFileError(f"{path}:{n}: field body: give exactly one of body (a JSON value) and body_raw")
        body = parsed.body_raw.encode() if parsed.body_raw is not None else delivery_bytes(parsed.body)
        headers = {k.lower(): v for k, v in parsed.headers.items()}
        out.append(TimedDelivery(at, parsed.provider, headers, body, parsed.token, f"{path}:{n}"))
    return sorted(out, key=lambda e: e.at)


class Simulation:
    """The whole engine in one process: moto's Step Functions and DynamoDB, the step runner in-process,
    the router fed by the events file and by the step runner's outbox, all on one virtual clock."""

    def __init__(
        self, workflows: list[Workflow], start: datetime = DEFAULT_START, activated_at: datetime | None = None
    ) -> None:
        self.workflows = workflows
        self.start = start
        # When the workflows count as deployed: events that happened before never enter (default: the start).
        self.activated_at = activated_at or start
        self.routed: list[tuple[datetime, Routed, str]] = []
        self._ended: set[str] = set()  # executions whose end the router has been told of
        self.machines: dict[str, str] = {}
        # Metrics by (name, workflow, step): the router's and the in-process step runner's (EMF in AWS).
        self.metrics: Counter[tuple[str, str, str]] = Counter()

    def __enter__(self) -> Simulation:
        from functions.step_runner import handler as step_runner

        step_runner.reset()  # its clients belong to the previous mock
        step_runner.local_metrics = self._count_metric  # what it would emit as EMF in AWS, counted here
        self.stack = LocalStack(start=self.start).__enter__()
        try:
            self._build()
        except BaseException:
            # A definition moto refuses, say: the stack's patches are process-wide and must not outlive this.
            self.__exit__(*sys.exc_info())
            raise
        return self

    def _build(self) -> None:
        create_table(self.stack.dynamodb, TABLE)
        self._outbox_position = self._stream_start()
        template = f"arn:aws:states:{self.stack.region}:{self.stack.account_id}:stateMachine:stepwise-{{workflow}}"
        # The entry plans file, as the build writes it beside the deployed code (infra/constructs/step_runner.py).
        plans = entry_plans(self.workflows)
        self._plans_dir = tempfile.TemporaryDirectory(prefix="stepwise-plans-")
        plans_file = Path(self._plans_dir.name) / C.ENTRY_PLANS_FILE
        plans_file.write_bytes(dump_entry_plans(plans))
        fn = self.stack.create_function(
            "stepwise-step-runner",
            STEP_RUNNER,
            {
                C.ENV_TABLE_NAME: TABLE,
                C.ENV_STATE_MACHINE_ARN_TEMPLATE: template,
                C.ENV_ENTRY_PLANS: str(plans_file),
                "POWERTOOLS_METRICS_DISABLED": "true",
                "POWERTOOLS_LOG_LEVEL": "WARNING",
            },
        )
        for wf in self.workflows:
            self.machines[wf.name] = self.stack.create_state_machine(f"stepwise-{wf.name}", compile_workflow(wf, fn))
        self.store = ContactStore(TABLE, self.stack.dynamodb)
        self.enroller = Enroller(
            self.store, self.stack.sfn, template, self._count_metric, plans, activated_at=self.activated_at
        )
        self.router = Router(self.workflows, self.store, self.enroller, self.stack.sfn)
        # The sender in-process (stepwise/outbox.py): SES on moto, SMS recorded; off without a templates folder.
        folder = templates_dir()
        self.delivery = LocalDelivery(TABLE, self.stack.dynamodb, self.stack.region, folder) if folder else None
        self.arn_template = template
        self.lifecycle = Lifecycle(self.store, self.stack.sfn, template)
        self.timers: list[tuple[datetime, Callable[[], None]]] = []
        self._start_schedules()

    # ---- schedules: EventBridge Scheduler on moto stores them, the virtual clock fires them ----------------

    def _start_schedules(self) -> None:
        """The group, the schedule handler and the broadcast machine, as the CDK app declares them; the fixed-date
        triggers' schedules created as at deployment (shared/runtime/broadcast.schedule_all)."""
        global _ACTIVE
        region = self.stack.region
        scheduler = boto3.client("scheduler", region_name=region)
        s3 = boto3.client("s3", region_name=region)
        s3.create_bucket(Bucket=LOCAL_BUCKET)
        handler_arn = self.stack.create_function("stepwise-schedules", LOCAL_SCHEDULE_HANDLER, {}, timeout=900)
        role = f"arn:aws:iam::{self.stack.account_id}:role/stepwise-local-scheduler"
        store = ScheduleStore(scheduler, LOCAL_SCHEDULE_GROUP, handler_arn, role)
        store.create_group()
        self.schedules = Schedules(store)
        machine = self.stack.create_state_machine("stepwise-broadcast", broadcast_definition(handler_arn))
        # Unpaced locally: moto has no StartExecution quota; the rate is the bench's measurement.
        self.broadcaster = Broadcaster(self.router, BroadcastStore(s3, self.stack.sfn, LOCAL_BUCKET, machine), 0)
        self.schedule_context = ScheduleContext(self.router, self.schedules)
        schedules_module.bind(self.schedules)
        broadcast_module.bind(self.broadcaster)
        _ACTIVE = self
        self._known_schedules: dict[str, StoredSchedule] = {}
        schedule_all(self.workflows, self.schedules)

    def _pending_schedules(self) -> list[StoredSchedule]:
        """The group's schedules, earliest first (each read once: a schedule never changes after creation)."""
        names = self.schedules.store.names()
        for name in names:
            if name not in self._known_schedules and (got := self.schedules.store.get(name)) is not None:
                self._known_schedules[name] = got
        for gone in set(self._known_schedules) - set(names):
            del self._known_schedules[gone]
        return sorted(self._known_schedules.values(), key=lambda s: (s.at, s.name))

    def _fire_due_schedules(self) -> bool:
        """Invoke, in process, every schedule now due (earliest first), then delete it as ActionAfterCompletion
        DELETE does. True when any fired."""
        fired = False
        for due in (s for s in self._pending_schedules() if s.at <= self.now):
            self.record(dispatch(due.payload, self.schedule_context), str(due.payload.get("kind")))
            self.schedules.store.delete(due.name)
            self._known_schedules.pop(due.name, None)
            fired = True
            self.stack.settle(timeout=SETTLE_SECONDS)
            self.settle()
        return fired

    def record(self, result: Any, label: str) -> None:
        """Note in the timeline what a schedule's handler (or a broadcast batch) routed."""
        for r in (result or {}).get("routed", []) if isinstance(result, dict) else []:
            self.routed.append((self.now, Routed(**r), label))

    def __exit__(self, *exc: object) -> None:
        from functions.step_runner import handler as step_runner

        try:
            self.stack.__exit__(*exc)  # type: ignore[arg-type]
        finally:
            step_runner.local_metrics = None
            step_runner.reset()
            if hasattr(self, "_plans_dir"):
                self._plans_dir.cleanup()
            _unbind_schedules()

    def _count_metric(self, name: str, workflow: str, step: str, dims: dict[str, str]) -> None:
        self.metrics[(name, workflow, step)] += 1

    @property
    def now(self) -> datetime:
        return self.stack.clock.now()

    def _fire(self, wf: Workflow, trig: ScheduleTrigger) -> None:
        for r in self.router.fire_schedule(wf, trig):
            self.routed.append((self.now, r, "schedule.fired"))

    def send(self, event: ContactEvent) -> list[Routed]:
        """Deliver one event now, as the trigger router would, and let everything it causes run."""
        routed = self.router.handle(event)
        self.routed.extend((self.now, r, event.type) for r in routed)
        self.settle()
        return routed

    def settle(self) -> None:
        """Run until every execution waits on the clock or a token and the outbox is empty."""
        while True:
            self.stack.settle()
            ended = self._report_ended_runs()
            pending = self._new_outbox_items()
            # New message items the stream brought go to the sender, as the stream's Lambda trigger does in AWS.
            sent, due = self.delivery.settle(self.now) if self.delivery is not None else (0, [])
            if not pending and not ended and not sent and not due:
                return
            for event in due:  # email.not_opened / not_clicked whose window passed
                self.routed.extend((self.now, r, event.type) for r in self.router.handle(event, internal=True))
            for item in pending:
                self.store.delete_item(item[C.PK], item[C.SK])
                event = outbox_to_event(item)
                self.routed.extend((self.now, r, event.type) for r in self.router.handle(event, internal=True))

    def _report_ended_runs(self) -> bool:
        """Tell the router of runs that ended since the last look, as EventBridge's execution status change
        events would in AWS (campaign completion). True when any was reported."""
        new = [(arn, status) for arn, status in self.stack.ended_executions() if arn not in self._ended]
        for arn, status in new:
            self._ended.add(arn)
            run_input = json.loads(self.stack.sfn.describe_execution(executionArn=arn).get("input") or "{}")
            self.routed.extend((self.now, r, RUN_ENDED) for r in self.router.execution_ended(arn, status, run_input))
        return bool(new)

    def _stream_start(self) -> str:
        streams = self.stack.dynamodbstreams
        arn = self.stack.dynamodb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        return str(it["ShardIterator"])

    def _new_outbox_items(self) -> list[dict[str, Any]]:
        """Events the step runner wrote to its outbox since the last look, read from the table's stream as
        in AWS (a scan would grow with the table on every settle)."""
        items = []
        while True:
            page = self.stack.dynamodbstreams.get_records(ShardIterator=self._outbox_position, Limit=_STREAM_PAGE)
            self._outbox_position = page["NextShardIterator"]
            for record in page["Records"]:
                if self.delivery is not None:
                    self.delivery.offer(record)
                if record["eventName"] != "INSERT":
                    continue
                item = deserialise(record["dynamodb"]["NewImage"])
                if item[C.PK].startswith("EVENT#") and item.get("status") == "pending":
                    items.append(item)
            if len(page["Records"]) < _STREAM_PAGE:  # moto returns all it has, up to the limit
                return sorted(items, key=lambda i: (i["at"], i["id"]))

    def advance(self, target: datetime) -> None:
        """Move virtual time to `target`, waking waits and firing schedules in time order."""
        while True:
            self.stack.settle(timeout=SETTLE_SECONDS)  # a broadcast's batches may keep it busy a while
            self.settle()
            nxt = self._next_due()
            if nxt is None or nxt > target:
                break
            if nxt > self.now:
                self.stack.clock.advance_to(nxt)
            due = [(t, f) for t, f in self.timers if t <= self.now]
            self.timers = [(t, f) for t, f in self.timers if t > self.now]
            for _, fire in due:
                fire()
            self.settle()
            self._fire_due_schedules()
        if target > self.now:
            self.stack.clock.advance_to(target)
        self.settle()

    def run(self, events: list[TimedEvent], horizon: timedelta = timedelta(days=400)) -> None:
        for te in events:
            self.advance(te.at)
            self.send(te.event)
        self.finish(horizon)

    def finish(self, horizon: timedelta = timedelta(days=400)) -> None:
        """Let every execution run to its end (bounded by `horizon` of virtual time)."""
        limit = self.now + horizon
        while True:
            self.settle()
            nxt = self._next_due()
            if nxt is None or nxt > limit:
                return
            self.advance(nxt)

    def _next_due(self) -> datetime | None:
        """The earliest of the clock's next wake-up and the next fixed-date trigger."""
        schedule = min((s.at for s in self._pending_schedules()), default=None)
        due = [
            d for d in (self.stack.clock.next_deadline(), min((t for t, _ in self.timers), default=None), schedule) if d
        ]
        return min(due, default=None)

    # ---- what a user sees --------------------------------------------------------------------

    def contacts(self) -> list[str]:
        return sorted({i["contact_id"] for i in self.store.scan_prefix("CONTACT#") if i[C.SK] == "PROFILE"})

    def timeline(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for at, r, etype in self.routed:
            rows.append(
                {
                    "at": at.isoformat(),
                    "contact": r.contact,
                    "workflow": r.workflow,
                    "step": f"({etype})",
                    "outcome": r.action,
                    "why": r.why,
                    # What an event caused comes before the steps it starts; what a run's end caused, after them.
                    "_seq": ("~", 0) if etype == RUN_ENDED else ("", -1),
                }
            )
        for cid in self.contacts():
            for h in self.store.history(cid):
                row = {
                    "at": h["at"],
                    "contact": cid,
                    "workflow": h["workflow"],
                    "step": h["step"],
                    "outcome": h["outcome"],
                    "why": h.get("why", ""),
                    "_seq": (h.get("entered", ""), h.get("seq", 0)),
                }
                if h.get("conditions"):
                    row["conditions"] = h["conditions"]
                rows.append(row)
        rows.extend(self._failures())
        # Within one contact: time, then routing before steps, then the order states were entered.
        rows.sort(key=lambda r: (r["at"], r["contact"], r["_seq"]))
        for item in rows:
            del item["_seq"]
        return rows

    def _failures(self) -> list[dict[str, Any]]:
        """Executions that failed: shown in the timeline so an error is never silent."""
        rows = []
        for wf, arn in self.machines.items():
            for page in self.stack.sfn.get_paginator("list_executions").paginate(
                stateMachineArn=arn, statusFilter="FAILED"
            ):
                for e in page["executions"]:
                    d = self.stack.sfn.describe_execution(executionArn=e["executionArn"])
                    inp = json.loads(d.get("input", "{}"))
                    cause = str(d.get("cause", ""))
                    with contextlib.suppress(ValueError, AttributeError):
                        cause = json.loads(cause).get("errorMessage", cause)
                    rows.append(
                        {
                            "at": self.now.isoformat(),
                            "contact": inp.get("contact_id", "?"),
                            "workflow": wf,
                            "step": "(execution)",
                            "outcome": "FAILED",
                            "why": f"{d.get('error')}: {cause[:300]}",
                            "_seq": ("~", 0),
                        }
                    )
        return rows

    def summary(self) -> dict[str, Any]:
        contacts = []
        for cid in self.contacts():
            c = self.store.get(cid)
            msgs = [
                {
                    k: m.get(k)
                    for k in ("at", "channel", "template", "workflow", "step", "to", "subject", "message_id")
                    if m.get(k) is not None
                }
                for m in self.store.messages(cid)
            ]
            contacts.append({**c.summary(), "messages": msgs})
        return {"contacts": contacts, "messages_sent": sum(len(c["messages"]) for c in contacts)}

    def execution_arns(self, workflow: str) -> list[str]:
        arns: list[str] = []
        for page in self.stack.sfn.get_paginator("list_executions").paginate(stateMachineArn=self.machines[workflow]):
            arns.extend(e["executionArn"] for e in page["executions"])
        return arns


# ---- commands ---------------------------------------------------------------------------------


def _load(paths: list[Path], out: TextIO) -> list[Workflow] | None:
    """The workflows of `paths`, or None with every problem printed: each file's load and lint errors, then what
    only the files together show (names used twice, a campaign or workflow no file defines), as validate does."""
    from shared.workflow.lint import lint, lint_together

    loaded: dict[str, Workflow] = {}
    problems: list[str] = []
    for p in paths:
        try:
            wf = load_workflow(p)
        except WorkflowFileError as err:
            problems.extend(err.problems)
            continue
        problems.extend(f"{p}: {v}" for v in lint(wf))
        loaded[str(p)] = wf
    together = lint_together(loaded)
    problems.extend(together)
    if problems:
        print("\n".join(problems), file=out)
        if together and len(paths) == 1:
            print(f"(simulate the folder, `stepwise simulate {paths[0].parent}`, to run the files together)", file=out)
        return None
    return list(loaded.values())


def _workflow_paths(path: Path) -> list[Path] | str:
    """One workflow file, or every *.yaml / *.yml of a folder; a message when there is none."""
    if path.is_dir():
        return workflow_files(path) or f"{path}: no *.yaml or *.yml workflow files in this folder"
    return [path] if path.is_file() else f"{path}: no such file or folder"


class Feeder:
    """Drives a Simulation through the lines of events files: a contact event is routed as it is; a raw delivery
    first goes through the API's own intake (shared.intake.pipeline.accept), unsigned deliveries allowed and
    marked unverified, a refused one noted with the reason. What intake made of each delivery joins the timeline."""

    def __init__(self, sim: Simulation, environ: Mapping[str, str] | None = None) -> None:
        self.sim = sim
        self.environ = os.environ if environ is None else environ
        self.rows: list[dict[str, Any]] = []  # deliveries that reached no contact: refused, duplicates, about nobody
        self._seen: set[str] = set()
        self._secret_for: Any = None

    def run(self, items: list[TimedItem], horizon: timedelta = timedelta(days=400)) -> None:
        for item in items:
            self.sim.advance(item.at)
            if isinstance(item, TimedEvent):
                self.sim.send(item.event)
            else:
                self.deliver(item)
        self.sim.finish(horizon)

    def deliver(self, item: TimedDelivery) -> None:
        from shared.intake.base import Delivery, IntakeError
        from shared.intake.pipeline import accept, local_secrets

        if self._secret_for is None:
            self._secret_for = local_secrets(self.environ)
        sim = self.sim
        delivery = Delivery(item.provider, item.headers, item.body, sim.now, path_token=item.token)
        label = f"({item.provider} delivery)"
        try:
            accepted = accept(item.provider, delivery, self._secret_for, allow_unverified=True)
        except IntakeError as err:
            self._note(item, label, f"refused {err.status}", str(err))
            return
        if accepted.dedupe_key in self._seen:
            self._note(item, label, "duplicate", f"redelivery of {accepted.delivery_id or 'the same body'}: ignored")
            return
        self._seen.add(accepted.dedupe_key)
        how = "accepted" if accepted.verified else "unverified"
        why = "signature checked" if accepted.verified else f"no {C.ENV_LOCAL_SECRET_PREFIX}{item.provider.upper()}"
        if accepted.test:
            why += ", test mode"
        if not accepted.events:
            self._note(item, label, how, f"{why}; about no contact event")
            return
        for event in accepted.events:
            position = len(sim.routed)
            sim.send(event)
            contact = sim.store.resolve(event.contact) or ""
            note = Routed(contact, "(intake)", how, f"{event.type} from {item.where} ({why})")
            sim.routed.insert(position, (sim.now, note, label.strip("()")))

    def _note(self, item: TimedDelivery, label: str, outcome: str, why: str) -> None:
        self.rows.append(
            {"at": self.sim.now.isoformat(), "contact": "", "workflow": "(intake)", "step": label,
             "outcome": outcome, "why": f"{why} ({item.where})"}
        )  # fmt: skip

    def timeline(self) -> list[dict[str, Any]]:
        return sorted([*self.rows, *self.sim.timeline()], key=lambda r: r["at"])


def simulate_command(args: argparse.Namespace) -> int:
    out = sys.stdout
    try:
        start = parse_at(args.start, DEFAULT_START) if getattr(args, "start", None) else DEFAULT_START
        activated = getattr(args, "activated_at", None)
        activated_at = parse_at(activated, start) if activated else None
    except ValueError as err:
        print(f"--start / --activated-at: {err}", file=sys.stderr)
        return 1
    paths = _workflow_paths(Path(args.path))
    if isinstance(paths, str):
        print(paths, file=sys.stderr)
        return 1
    workflows = _load(paths, sys.stderr)
    if workflows is None:
        return 1
    try:
        items = read_events(Path(args.events), start)
    except EventsFileError as err:
        print(err, file=sys.stderr)
        return 1
    except OSError as err:
        print(f"{args.events}: cannot read: {err.strerror or err}", file=sys.stderr)
        return 1
    deliver = bool(getattr(args, "outbox", False) or getattr(args, "templates", None))  # render and send, locally
    with (
        use_templates(Path(args.path), getattr(args, "templates", None)) if deliver else contextlib.nullcontext(),
        Simulation(workflows, start, activated_at=activated_at) as sim,
    ):
        feeder = Feeder(sim)
        feeder.run(items)
        if not getattr(args, "outbox_only", False):
            for row in feeder.timeline():
                print(json.dumps(row, default=str), file=out)
            print(json.dumps({"summary": sim.summary()}, default=str), file=out)
        if getattr(args, "outbox", False):
            print_outbox(outbox_rows(sim), out, as_json=not getattr(args, "outbox_only", False) or args.json)
    return 0


def demo_command(args: argparse.Namespace) -> int:
    folder = Path(getattr(args, "folder", None) or "workflows")
    files = workflow_files(folder)
    workflows = _load(files, sys.stderr)
    if workflows is None:
        return 1
    samples = folder / "samples"
    items: list[TimedItem] = []
    try:
        for f in sorted(samples.glob("*.jsonl")):
            items.extend(read_events(f, DEFAULT_START))
    except EventsFileError as err:
        print(err, file=sys.stderr)
        return 1
    items.sort(key=lambda e: e.at)
    deliveries = sum(isinstance(i, TimedDelivery) for i in items)
    print(
        f"Stepwise demo: {len(workflows)} workflows, {deliveries} provider deliveries and "
        f"{len(items) - deliveries} other events from {samples}/, virtual start {DEFAULT_START:%Y-%m-%d %H:%M} UTC\n"
    )
    with use_templates(folder), Simulation(workflows, DEFAULT_START) as sim:
        feeder = Feeder(sim)
        feeder.run(items)
        for row in feeder.rows:
            print(f"  {row['at']}  {row['step']} {row['outcome']}: {row['why']}")
        print_timelines(sim, sys.stdout)
        if sim.delivery is not None:  # what the contacts received, as rendered and sent
            print_outbox(outbox_rows(sim), sys.stdout)
    return 0


def print_timelines(sim: Simulation, out: TextIO) -> None:
    rows = sim.timeline()
    summary = {c["id"]: c for c in sim.summary()["contacts"]}
    for cid in sim.contacts():
        c = summary[cid]
        label = c.get("email") or c.get("phone") or cid
        print(f"── {label} ({cid})", file=out)
        for r in (r for r in rows if r["contact"] == cid):
            at = datetime.fromisoformat(r["at"])
            offset = _offset(at - sim.start)
            print(
                f"  {offset:>9}  {at:%a %d %b %H:%M}  {r['workflow']:<20} {r['step']:<24} {r['outcome']:<14} "
                f"{r['why']}",
                file=out,
            )
            for cond in r.get("conditions", []):
                verdict = "yes" if cond["result"] else "no"
                print(f"{'':>62}· {cond['condition']}: {verdict} (saw {json.dumps(cond['value'])})", file=out)
        msgs = ", ".join(f"{m['channel']}:{m.get('template') or m.get('subject')}" for m in c["messages"]) or "none"
        print(
            f"  tags={c['tags']} lists={c['lists']} campaigns={sorted(c['campaigns'])} score={c['score']:g} "
            f"stages={c['stages']}",
            file=out,
        )
        print(f"  messages: {msgs}\n", file=out)


def _offset(delta: timedelta) -> str:
    secs = int(delta.total_seconds())
    d, rem = divmod(secs, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    parts = [f"{d}d" if d else "", f"{h}h" if h else "", f"{m}m" if m else "", f"{s}s" if s else ""]
    return "+" + ("".join(parts) or "0s")
