"""Runaway budgets: a per-contact message budget across workflows per day and a per-workflow entry budget per hour.

Each is a counter item incremented by a conditional ADD in the same transaction as the write it counts (the step
runner's message write; the enrolment's claim), so concurrent sends or entries can never overshoot. When a budget
is reached, the workflow that hit it is paused (its status item, as `stepwise deactivate` writes it, with the
reason), the team is alerted (an alert message, as a notify step writes one) and the contact's history says why."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared import constants as C
from shared.events_base import stable_hash
from shared.lifecycle import STATUS_SK, epoch_ms, status_pk
from shared.store.contacts import ContactStore, contact_pk, epoch

BUDGET_PREFIX = "BUDGET#"
COUNT = "count"
MESSAGE_CHANNELS = ("email", "sms")  # what the message budget counts, transactional or not: a loop is a loop
PAUSED_BY_BUDGET = "budget"


if TYPE_CHECKING:
    from shared.budgets_model import Budgets as Budgets
else:

    def __getattr__(name: str) -> Any:
        """`Budgets`, the authoring model of `settings.budgets` (pydantic), loaded on first use: stepwise.yaml's
        settings validate it; the run time reads the budgets dumped (an entry plan's `budgets`) and never does."""
        if name == "Budgets":
            from shared.budgets_model import Budgets

            return Budgets
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def message_key(now: datetime) -> str:
    return f"{BUDGET_PREFIX}messages#{now.date().isoformat()}"  # a UTC day: the budget is a guard, not a courtesy


def entry_key(now: datetime) -> str:
    return f"{BUDGET_PREFIX}entries#{now.strftime('%Y-%m-%dT%H')}"


def _counter(store: ContactStore, pk: str, sk: str, limit: int, expires: datetime) -> dict[str, Any]:
    write: dict[str, Any] = store.add(pk, sk, {COUNT: 1}, {C.TTL_ATTRIBUTE: epoch(expires)})
    update = write["Update"]
    update["ConditionExpression"] = "attribute_not_exists(#c0) OR #c0 < :limit"
    update["ExpressionAttributeValues"][":limit"] = {"N": str(limit)}
    return write


def message_counter(store: ContactStore, contact_id: str, now: datetime, limit: int) -> dict[str, Any]:
    """The transaction write counting one message to the contact today; it fails the transaction at `limit`."""
    return _counter(store, contact_pk(contact_id), message_key(now), limit, now + timedelta(days=3))


def entry_counter(store: ContactStore, workflow: str, now: datetime, limit: int) -> dict[str, Any]:
    """The transaction write counting one entry this hour. One item per workflow and hour: it takes the workflow's
    whole entry rate (DynamoDB allows 1,000 writes/s per item; StartExecution refills at 300/s, so it is not the
    first limit)."""
    return _counter(store, status_pk(workflow), entry_key(now), limit, now + timedelta(days=2))


def reached(store: ContactStore, pk: str, sk: str, limit: int) -> bool:
    """Whether a counter is at its limit (read only after a transaction failed, to tell why)."""
    item = store.get_item(pk, sk)
    return item is not None and int(item.get(COUNT, 0)) >= limit


def message_budget_reached(store: ContactStore, contact_id: str, now: datetime, limit: int) -> bool:
    return reached(store, contact_pk(contact_id), message_key(now), limit)


def entry_budget_reached(store: ContactStore, workflow: str, now: datetime, limit: int) -> bool:
    return reached(store, status_pk(workflow), entry_key(now), limit)


def trip(
    store: ContactStore,
    workflow: str,
    reason: str,
    now: datetime,
    *,
    contact_id: str,
    alert: list[str],
    history_days: int = 30,
) -> bool:
    """Pause `workflow` because a budget was reached: its status item inactive with the reason (only when it is
    active: two trips at once pause it once), an alert to the team, and a history record on the contact whose send
    or entry hit it. True when this call paused it."""
    values = {
        "workflow": workflow,
        "active": False,
        "since": now.isoformat(),
        "since_ms": epoch_ms(now),
        "cancelled": 0,
        "reason": reason,
        "paused_by": PAUSED_BY_BUDGET,
    }
    pause = store.update_if(
        status_pk(workflow), STATUS_SK, values, "attribute_not_exists(#pk) OR active = :t", {":t": True}
    )
    stamp = now.isoformat()
    record = {
        C.PK: contact_pk(contact_id),
        C.SK: f"HIST#budget#{workflow}#{stable_hash(workflow, reason, length=12)}",
        "contact_id": contact_id,
        "workflow": workflow,
        "version": "",
        "execution": "",
        "step": "(budget)",
        "kind": "budget",
        "outcome": "paused",
        "why": f"{reason}: workflow {workflow} paused",
        "at": stamp,
        "seq": 0,
        "entered": stamp,
        C.TTL_ATTRIBUTE: epoch(now + timedelta(days=history_days)),
    }
    writes = [pause, store.put(record)]
    if alert:
        mid = stable_hash("budget", workflow, stamp, length=16)
        writes.append(
            store.put(
                {
                    C.PK: contact_pk(contact_id),
                    C.SK: f"MSG#{mid}",
                    "message_id": mid,
                    "channel": "alert",
                    "workflow": workflow,
                    "step": "(budget)",
                    "status": "queued",
                    "at": stamp,
                    "entered": stamp,
                    "to": alert,
                    "subject": f"Stepwise paused workflow {workflow}: {reason}",
                    "about": contact_id,
                    C.TTL_ATTRIBUTE: epoch(now + timedelta(days=history_days)),
                }
            )
        )
    return store.transact(writes)
