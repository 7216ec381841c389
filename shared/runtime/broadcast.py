"""Fixed-date broadcasts: at a ScheduleTrigger's date the list is snapshot to S3 and the broadcast machine enters
its contacts batch by batch, each exactly once, under the StartExecution quota, resumable after a failure."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from shared import clock
from shared import constants as C
from shared.enrollment import Enroller, Enrolment, confirmed
from shared.events import stable_hash
from shared.runtime import schedules as sched
from shared.store.broadcasts import BroadcastStore
from shared.store.contacts import contact_pk, epoch
from shared.workflow.broadcast import BATCH_SIZE, KIND_BATCH, RATE_PER_BATCH
from shared.workflow.runtime import ScheduleTrigger, Workflow
from shared.workflow.runtime import workflows as runtime_workflows

if TYPE_CHECKING:
    from shared.routing import Routed, Router
    from shared.workflow import model as authoring

KIND_FIRE = "broadcast"
SNAPSHOT_PREFIX = "broadcasts/"
KEEP = timedelta(days=90)
_THROTTLE_CODES = frozenset({"ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"})


class Throttled(Exception):
    """StartExecution (or another call of a batch) was throttled: the state machine retries the batch with
    backoff; contacts the batch entered already are skipped on the retry."""


class BroadcastNotConfigured(Exception):
    """A fixed-date list must go out but no broadcaster is bound (the handler's start-up or the local stack)."""


class UnknownBroadcast(Exception):
    """A broadcast id, workflow or trigger that this deployment does not have."""


def broadcast_id(workflow: str, at: datetime) -> str:
    return f"{workflow[:40]}-{stable_hash(workflow, at.isoformat(), length=16)}"


def entry_key(workflow: str, at: datetime) -> str:
    """The enrolment key (and event id) of a fixed-date entry: one execution per contact and date, however often
    the broadcast runs."""
    return f"schedule:{workflow}:{at.isoformat()}"


@dataclass(frozen=True)
class ScheduleSpec:
    """The one-time schedule of one fixed-date trigger: what the local stack creates (schedule_all) and what the
    CDK app declares (AWS::Scheduler::Schedule), from this one definition."""

    workflow: str
    list_name: str
    at: datetime
    key: str
    name: str  # the deterministic Scheduler name (schedules.schedule_name of kind + key)
    payload: dict[str, Any]  # what the schedule handler receives, kind included


def schedule_specs(workflows: list[Workflow] | list[authoring.Workflow]) -> list[ScheduleSpec]:
    """One schedule per fixed-date trigger of the workflows, in their order."""
    out = []
    for wf in runtime_workflows(workflows):
        for entry in wf.triggers:
            t = entry.root
            if isinstance(t, ScheduleTrigger):
                key = f"{wf.name}:{t.at.isoformat()}"
                payload = {"workflow": wf.name, "at": t.at.isoformat(), "list": t.list, "kind": KIND_FIRE}
                out.append(ScheduleSpec(wf.name, t.list, t.at, key, sched.schedule_name(KIND_FIRE, key), payload))
    return out


def schedule_all(workflows: list[Workflow] | list[authoring.Workflow], schedules: sched.Schedules) -> int:
    """One Scheduler schedule per fixed-date trigger (at deploy / first load); existing ones are kept. Returns how
    many were created."""
    return sum(schedules.at(KIND_FIRE, s.key, s.at, s.payload) for s in schedule_specs(workflows))


@dataclass(frozen=True)
class Started:
    broadcast_id: str
    execution_arn: str
    contacts: int
    batches: int
    new: bool  # False: this attempt was started before (a repeated schedule invocation)


class Broadcaster:
    """Snapshots lists and starts (or resumes) the broadcast machine over a snapshot. Progress lives in the
    table: BROADCAST#id / META (snapshot, attempts) and BATCH#n markers of the batches done."""

    def __init__(
        self,
        router: Router,
        store: BroadcastStore,
        rate_per_batch: float = RATE_PER_BATCH,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.router = router
        self.store = store
        self.rate = rate_per_batch
        self.batch_size = batch_size

    def start(self, wf: Workflow, trigger: ScheduleTrigger) -> Started:
        bid = broadcast_id(wf.name, trigger.at)
        key = f"{SNAPSHOT_PREFIX}{bid}.json"
        if self.store.snapshot_exists(key):  # a repeat: the list as it was at the date, not as it is now
            batches = self.store.read_snapshot(key)
        else:
            members = sorted(set(self.router.store.list_members(trigger.list)))
            batches = [
                {"batch": n, "contacts": members[i : i + self.batch_size]}
                for n, i in enumerate(range(0, len(members), self.batch_size))
            ]
            self.store.write_snapshot(key, batches)
        now = clock.now()
        meta = {
            C.PK: f"BROADCAST#{bid}",
            C.SK: "META",
            "workflow": wf.name,
            "at": trigger.at.isoformat(),
            "list": trigger.list,
            "key": key,
            "attempts": 1,
            "contacts": sum(len(b["contacts"]) for b in batches),
            "batches": len(batches),
            "started_at": now.isoformat(),
            C.TTL_ATTRIBUTE: epoch(now + KEEP),
        }
        self.router.store.put_item(meta, only_new=True)
        return self._run(bid, meta, 1)

    def resume(self, bid: str) -> Started:
        """Start a new attempt over the same snapshot (what RedriveExecution would do): batches marked done are
        skipped whole, and contacts entered already are not entered again (their enrolment key)."""
        meta = self.router.store.get_item(f"BROADCAST#{bid}", "META")
        if meta is None:
            raise UnknownBroadcast(f"broadcast {bid}: no such broadcast")
        attempt = int(meta["attempts"]) + 1
        self.router.store.put_item({**meta, "attempts": attempt})
        return self._run(bid, meta, attempt)

    def progress(self, bid: str) -> tuple[int, int]:
        """(batches done, batches in the snapshot): a broadcast with batches left is resumed. Read from the
        table, not the execution's status: moto's Distributed Map counts a failed batch and still succeeds."""
        meta = self.router.store.get_item(f"BROADCAST#{bid}", "META")
        if meta is None:
            raise UnknownBroadcast(f"broadcast {bid}: no such broadcast")
        done = self.router.store.query_prefix(f"BROADCAST#{bid}", "BATCH#")
        return len(done), int(meta["batches"])

    def _run(self, bid: str, meta: dict[str, Any], attempt: int) -> Started:
        run_input = {
            "broadcast_id": bid,
            "workflow": meta["workflow"],
            "at": meta["at"],
            "list": meta["list"],
            "bucket": self.store.bucket,
            "key": meta["key"],
            "rate": self.rate,
        }
        arn, new = self.store.start(f"{bid}-{attempt}", run_input)
        return Started(bid, arn, int(meta["contacts"]), int(meta["batches"]), new)


# ---- binding (as shared.runtime.schedules.bind) -----------------------------------------------------------

_bound: Broadcaster | None = None


def bind(broadcaster: Broadcaster | None) -> None:
    global _bound
    _bound = broadcaster


def required() -> Broadcaster:
    if _bound is None:
        raise BroadcastNotConfigured(
            "no broadcaster bound: the router's start-up binds one from STEPWISE_ARCHIVE_BUCKET and "
            "STEPWISE_BROADCAST_MACHINE_ARN"
        )
    return _bound


def start_broadcast(router: Router, wf: Workflow, trigger: ScheduleTrigger) -> list[Routed]:
    """Router.fire_schedule: the date came; the broadcast takes the list from here."""
    from shared.routing import Routed

    s = required().start(wf, trigger)
    how = "started" if s.new else "already started"
    why = f"list {trigger.list}: {s.contacts} contacts in {s.batches} batches, broadcast {s.broadcast_id} {how}"
    return [Routed(f"(list {trigger.list})", wf.name, "broadcast", why)]


@sched.register(KIND_FIRE)
def fire(payload: dict[str, Any], ctx: sched.ScheduleContext) -> dict[str, Any]:
    wf = _workflow(ctx.router, str(payload["workflow"]))
    at = datetime.fromisoformat(str(payload["at"]))
    trigger = next(
        (e.root for e in wf.triggers if isinstance(e.root, ScheduleTrigger) and e.root.at == at),
        None,
    )
    if trigger is None:
        raise UnknownBroadcast(f"workflow {wf.name}: no fixed-date trigger at {payload['at']} (changed since?)")
    return {"routed": [asdict(r) for r in ctx.router.fire_schedule(wf, trigger)]}


def _workflow(router: Router, name: str) -> Workflow:
    for wf in router.workflows:
        if wf.name == name:
            return wf
    raise UnknownBroadcast(f"field workflow: {name!r} is not deployed")


@sched.register(KIND_BATCH)
def run_batch(
    payload: dict[str, Any],
    ctx: sched.ScheduleContext,
    *,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Enter one batch of the snapshot, one contact after another, paced to `rate` StartExecution calls a second
    (0: unpaced). A batch marked done is skipped whole; a contact already entered on this date is skipped before
    any call. A throttle (or any failure) stops the batch: its retry skips whoever was entered. The fan-out is the
    Distributed Map's (MaxConcurrency batches at once, shared/workflow/broadcast.py), never threads in a batch."""
    router = ctx.router
    bid, n, contacts = str(payload["broadcast_id"]), int(payload["batch"]), list(payload["contacts"])
    marker_pk, marker_sk = f"BROADCAST#{bid}", f"BATCH#{n:07d}"
    if router.store.get_item(marker_pk, marker_sk) is not None:
        return {"entered": 0, "skipped": len(contacts), "routed": []}
    wf = _workflow(router, str(payload["workflow"]))
    at = datetime.fromisoformat(str(payload["at"]))
    key = entry_key(wf.name, at)
    event = {"id": key, "type": "schedule.fired", "data": {"list": payload.get("list"), "at": at.isoformat()}}
    rate = float(payload.get("rate") or 0)
    pace = _Pace(1.0 / rate if rate > 0 else 0.0, sleep, monotonic)
    # The batch's enrolment items in one BatchGetItem (per 100 contacts) instead of a GetItem per contact, and
    # each handed to the enrolment's first try, which would otherwise read it again.
    sk = f"ENROLL#{wf.name}"
    items = router.store.batch_get([(contact_pk(c), sk) for c in contacts])
    todo: list[tuple[int, str, dict[str, Any] | None]] = []
    for i, contact_id in enumerate(contacts):
        item = items.get((contact_pk(contact_id), sk))
        record = confirmed(item)
        if record is None or datetime.fromisoformat(record["entered_at"]) < at:
            todo.append((i, contact_id, item))
        # else: entered on this date already (an earlier attempt): no Step Functions call
    entered = 0
    routed: list[dict[str, Any]] = []
    for i, contact_id, item in todo:
        pace.wait()
        try:
            res = _enrol(router.enroller, contact_id, wf, event, key, item)
        except ClientError as err:
            if err.response["Error"]["Code"] in _THROTTLE_CODES:
                raise Throttled(
                    f"batch {n} of broadcast {bid}: throttled at contact {i + 1} of {len(contacts)}"
                ) from err
            raise
        entered += res.started
        routed.append(
            {
                "contact": contact_id,
                "workflow": wf.name,
                "action": "entered" if res.started else "not entered",
                "why": res.reason,
            }
        )
    skipped = len(contacts) - entered
    now = clock.now()
    router.store.put_item(
        {
            C.PK: marker_pk,
            C.SK: marker_sk,
            "entered": entered,
            "skipped": skipped,
            "at": now.isoformat(),
            C.TTL_ATTRIBUTE: epoch(now + KEEP),
        }
    )
    return {"entered": entered, "skipped": skipped, "routed": routed}


class _Pace:
    """StartExecution calls of a batch spaced `interval` seconds apart (0: no spacing)."""

    def __init__(self, interval: float, sleep: Callable[[float], None], monotonic: Callable[[], float]) -> None:
        self.interval, self.sleep, self.monotonic = interval, sleep, monotonic
        self.next = float("-inf")

    def wait(self) -> None:
        if not self.interval:
            return
        now = self.monotonic()
        slot = max(now, self.next)
        self.next = slot + self.interval
        if slot > now:
            self.sleep(slot - now)


def _enrol(
    enroller: Enroller, contact_id: str, wf: Workflow, event: dict[str, Any], key: str, item: dict[str, Any] | None
) -> Enrolment:
    """Enroller.enrol for a batch: the first try decides from the ENROLL# item the batch read (`item`, None when
    the contact has none); a lost race re-reads, as enrol does."""
    return enroller.enrol(contact_id, wf.name, event, key=key, reentry=wf.reentry, item=item)
