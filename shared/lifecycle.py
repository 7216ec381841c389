"""A workflow's status: deployed active; deactivated (no new entries); activated again. One item per workflow in
the contact table, read by the enroller on every new entry; switched by the operator's `stepwise` commands
(stepwise/lifecycle.py), which also cancel runs under way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared import constants as C
from shared.store.contacts import ContactStore

STATUS_SK = "STATUS"


def status_pk(workflow: str) -> str:
    return f"WORKFLOW#{workflow}"


@dataclass(frozen=True)
class Status:
    """Whether a workflow takes new contacts, and since when. A workflow never switched is active, with no
    `since`: deploying it is activating it."""

    active: bool = True
    since: datetime | None = None
    cancelled: int = 0  # executions stopped by the last deactivation

    def refuses(self, occurred_at: datetime | None) -> str:
        """Why an entry (for an event that happened at `occurred_at`) is refused, or "" when it is not."""
        if not self.active:
            return f"workflow is not active (deactivated {self.since.isoformat() if self.since else ''})".strip()
        if self.since is not None and occurred_at is not None and occurred_at < self.since:
            return f"the event happened before the workflow was activated ({self.since.isoformat()})"
        return ""


def read_status(store: ContactStore, workflow: str) -> Status:
    item = store.get_item(status_pk(workflow), STATUS_SK)
    if item is None:
        return Status()
    return Status(
        active=bool(item["active"]),
        since=datetime.fromisoformat(item["since"]),
        cancelled=int(item.get("cancelled", 0)),
    )


def write_status(store: ContactStore, workflow: str, *, active: bool, since: datetime, cancelled: int = 0) -> Status:
    store.put_item(
        {
            C.PK: status_pk(workflow),
            C.SK: STATUS_SK,
            "workflow": workflow,
            "active": active,
            "since": since.isoformat(),
            "cancelled": cancelled,
        }
    )
    return Status(active=active, since=since, cancelled=cancelled)
