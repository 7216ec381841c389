"""History records: one per step a contact reaches, written by the step runner and, for the passive steps a run
starts at (a first step that is a wait), by the enroller. Both build them here so the two cannot drift."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared import constants as C
from shared.store.contacts import ContactStore, contact_pk, epoch


def execution_name(execution_arn: str) -> str:
    return execution_arn.rsplit(":", 1)[-1]


def visit_key(execution_arn: str, loops: int, step_id: str) -> str:
    """Idempotency key of one visit of one step: stable across Lambda retries, redrives and redeliveries."""
    return f"{execution_name(execution_arn)}#{loops:04d}#{step_id}"


@dataclass(frozen=True)
class Run:
    """The run a record belongs to: what every record of one execution shares."""

    contact_id: str
    workflow: str
    version: str
    execution: str  # the execution ARN
    history_days: int
    entered: str = ""  # $$.State.EnteredTime of the state writing; orders records of one instant

    def order_stamp(self) -> str:
        """Sorts items of one virtual instant in the order they were made: the state's entered time, then the
        wall clock (history records and messages carry it as `entered`)."""
        return f"{self.entered}|{time.time_ns():020d}"

    def record(
        self, loops: int, step_id: str, kind: str, outcome: str, why: str, at: datetime, seq: int, **extra: Any
    ) -> dict[str, Any]:
        return {
            C.SK: f"HIST#{visit_key(self.execution, loops, step_id)}",
            "contact_id": self.contact_id,
            "workflow": self.workflow,
            "version": self.version,
            "execution": self.execution,
            "step": step_id,
            "kind": kind,
            "outcome": outcome,
            "why": why,
            "at": at.isoformat(),
            "seq": seq,
            "entered": self.order_stamp(),
            C.TTL_ATTRIBUTE: epoch(at + timedelta(days=self.history_days)),
            **extra,
        }


def passive_records(
    run: Run, loops: int, ahead: list[dict[str, Any]], start: datetime, first_seq: int = 1
) -> list[dict[str, Any]]:
    """Records of the passive steps (waits, ends) a contact meets from `start` until the next step-runner call,
    each at the time the contact reaches it: a wait after a wait starts when the first one ends, an end after a
    wait happens when the wait is over. `ahead` is what the compiler computed (Compiler.ahead); a go-to in it
    (kind "goto") has no record of its own, and the steps after it are the next visit's (`loops` + 1)."""
    out = []
    at = start
    for n, p in enumerate(ahead, first_seq):
        if p["kind"] == "goto":
            loops += 1
            continue
        if p["kind"] == "wait":
            until = at + timedelta(seconds=p["seconds"])
            rec = run.record(loops, p["id"], "wait", "waiting", f"for {p['seconds']}s until {until.isoformat()}", at, n)
        elif p["kind"] == "wait_until":
            until = max(at, datetime.fromisoformat(p["at"]))
            rec = run.record(loops, p["id"], "wait_until", "waiting", f"until {p['at']}", at, n)
        else:
            until = at
            rec = run.record(loops, p["id"], "end", "ended", p.get("reason") or "ended", at, n)
        out.append(rec)
        at = until
    return out


def cut_at_bound(
    ahead: list[dict[str, Any]], loops: int, max_loops: int, goto: bool = False
) -> tuple[list[dict[str, Any]], int, bool]:
    """Where the go-tos in `ahead` (Compiler.ahead) take a run that has jumped `loops` times: the passive steps it
    reaches, the loop count it goes on with, and whether a jump one too many (over `max_loops`) cuts it short.
    Each jump is counted where the contact meets it, after the waits before it. `goto` marks a machine compiled
    before jumps were listed in `ahead`: its one jump is counted first. Cut short, the count is `max_loops` + 1,
    so the next step-runner call ends the run (the step runner's `run`)."""
    if goto and not any(p["kind"] == "goto" for p in ahead):
        ahead = [{"id": "", "kind": "goto"}, *ahead]
    n = loops
    for i, p in enumerate(ahead):
        if p["kind"] == "goto":
            n += 1
            if n > max_loops:
                return ahead[:i], max_loops + 1, True
    return ahead, n, False


def passive_end(ahead: list[dict[str, Any]], start: datetime) -> datetime:
    """When a contact leaving at `start` is past the passive steps `ahead`: the end of its waits."""
    at = start
    for p in ahead:
        if p["kind"] == "wait":
            at += timedelta(seconds=p["seconds"])
        elif p["kind"] == "wait_until":
            at = max(at, datetime.fromisoformat(p["at"]))
    return at


def drop_unreached(store: ContactStore, contact_id: str, execution_arn: str, now: datetime) -> int:
    """Delete the records of run `execution_arn` dated after `now`, and say how many: the passive steps a Task
    wrote ahead (a wait after a wait, an end or a go-to's loop limit after a wait) that a run stopped now, by a
    goal's jump or an unsubscribe, never reaches. One Query of the run's records; they share the partition."""
    pk = contact_pk(contact_id)
    records = store.query_prefix(pk, f"HIST#{execution_name(execution_arn)}#", live_only=False)
    unreached = [r[C.SK] for r in records if datetime.fromisoformat(str(r["at"])) > now]
    for i in range(0, len(unreached), 100):  # TransactWriteItems takes at most 100 writes
        store.transact([store.delete(pk, sk) for sk in unreached[i : i + 100]])
    return len(unreached)


def passive_metric(record: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The metric a passive step's record counts, with its extra dimensions: an end, or a wait reached."""
    if record["kind"] == "end":
        return C.METRIC_ENDED, {"reason": "end_step"}
    return C.METRIC_WAIT_STARTED, {}


def stage_entered(
    store: ContactStore, contact_id: str, key: str, campaign: str, stage: str, at: datetime
) -> dict[str, Any]:
    """The outbox write saying a subscriber reached `stage` of `campaign`; keyed to the visit, so once per visit."""
    return store.outbox(contact_id, key, C.EVENT_STAGE_ENTERED, {"campaign": campaign, "stage": stage}, at)


# The entry plans' authoring model and the plans file (pydantic: the build writes it, `stepwise` and the tests read
# it) live in shared/history_plans.py, loaded on first use of these names: the Lambdas read the file into
# runtime.EntryPlan (runtime.load_entry_plans), so their imports load no pydantic (issue 11 item 9).
_PLANS = ("EntryPlan", "ENTRY_PLANS", "load_entry_plans", "dump_entry_plans")

if TYPE_CHECKING:
    from shared.history_plans import ENTRY_PLANS as ENTRY_PLANS
    from shared.history_plans import EntryPlan as EntryPlan
    from shared.history_plans import dump_entry_plans as dump_entry_plans
    from shared.history_plans import load_entry_plans as load_entry_plans
else:

    def __getattr__(name: str) -> Any:
        if name in _PLANS:
            from shared import history_plans

            return getattr(history_plans, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
