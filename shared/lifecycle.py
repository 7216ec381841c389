"""A workflow's status: active from its first deployment (recorded then: `ensure_activated`); deactivated (no new
entries); activated again. One item per workflow in the contact table, checked inside every enrolment's claim
(`entry_check`); switched by the operator's `stepwise` commands (stepwise/lifecycle.py), which also cancel runs
under way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared import constants as C
from shared.store.contacts import ContactStore, serialise

STATUS_SK = "STATUS"


def status_pk(workflow: str) -> str:
    return f"WORKFLOW#{workflow}"


@dataclass(frozen=True)
class Status:
    """Whether a workflow takes new contacts, and since when. A workflow deployed and never switched is active
    since its first deployment (`ensure_activated` records it); with no status item at all (a store nobody has
    activated the workflow in) it is active with no `since`."""

    active: bool = True
    since: datetime | None = None
    cancelled: int = 0  # executions stopped by the last deactivation
    reason: str = ""  # why it was deactivated, when not by an operator (a runaway budget: shared/budgets.py)

    def refuses(self, occurred_at: datetime | None) -> str:
        """Why an entry (for an event that happened at `occurred_at`) is refused, or "" when it is not."""
        if not self.active:
            why = f": {self.reason}" if self.reason else ""
            return f"workflow is not active (deactivated {self.since.isoformat() if self.since else ''}{why})"
        if self.since is not None and occurred_at is not None and occurred_at < self.since:
            return f"the event happened before the workflow was activated ({self.since.isoformat()})"
        return ""


def read_status(store: ContactStore, workflow: str) -> Status:
    return status_from(store.get_item(status_pk(workflow), STATUS_SK))


def status_from(item: dict[str, Any] | None) -> Status:
    if item is None:
        return Status()
    return Status(
        active=bool(item["active"]),
        since=datetime.fromisoformat(item["since"]),
        cancelled=int(item.get("cancelled", 0)),
        reason=str(item.get("reason", "")),
    )


def _item(workflow: str, active: bool, since: datetime, cancelled: int) -> dict[str, Any]:
    return {
        C.PK: status_pk(workflow),
        C.SK: STATUS_SK,
        "workflow": workflow,
        "active": active,
        "since": since.isoformat(),
        "since_ms": epoch_ms(since),  # what the claim's condition compares: ISO strings of other offsets do not sort
        "cancelled": cancelled,
    }


def write_status(store: ContactStore, workflow: str, *, active: bool, since: datetime, cancelled: int = 0) -> Status:
    store.put_item(_item(workflow, active, since, cancelled))
    return Status(active=active, since=since, cancelled=cancelled)


def ensure_activated(store: ContactStore, workflow: str, at: datetime) -> Status:
    """Record that `workflow` is active since `at` (its first deployment) unless a status is recorded already:
    a conditional put, so redeploying, or two routers starting together, never moves the activation time, and an
    operator's deactivation is never undone. Returns the status in force."""
    if store.put_item(_item(workflow, True, at, 0), only_new=True):
        return Status(active=True, since=at)
    return read_status(store, workflow)


def epoch_ms(at: datetime) -> int:
    return int(at.astimezone(UTC).timestamp() * 1000)


def entry_check(workflow: str, occurred_at: datetime | None) -> dict[str, Any]:
    """A transaction ConditionCheck that the workflow takes an entry for an event that happened at `occurred_at`
    (None: now): its status is recorded, active, and activated no later than the event. It fails for a workflow
    never activated in this store too; the enroller then records the deployment's activation and tries again."""
    condition = "attribute_exists(#pk) AND active = :t"
    values: dict[str, Any] = {":t": True}
    if occurred_at is not None:
        condition += " AND since_ms <= :at"
        values[":at"] = epoch_ms(occurred_at)
    return {
        "ConditionCheck": {
            "Key": {C.PK: {"S": status_pk(workflow)}, C.SK: {"S": STATUS_SK}},
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#pk": C.PK},
            "ExpressionAttributeValues": serialise(values),
        }
    }
