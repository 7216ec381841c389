"""What conditions look at for one contact: profile, recent activity, the triggering event."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from shared.runtime.index import activity_windows
from shared.store.contacts import ACTIVITY_DAYS, Contact, ContactStore
from shared.workflow.runtime import Condition, Facts


def facts_for(
    store: ContactStore,
    contact: Contact,
    trigger: dict[str, Any],
    now: datetime,
    *,
    window: timedelta | None = timedelta(days=ACTIVITY_DAYS),
) -> Facts:
    """The facts of a contact read from the store: its activity of the last `window` only (by default as far as
    activity is kept; None reads none, for conditions that read no activity)."""
    items = store.activity(contact.id, since=now - window) if window is not None else []
    return facts_from(contact, items, trigger, now)


def facts_from(contact: Contact, items: list[dict[str, Any]], trigger: dict[str, Any], now: datetime) -> Facts:
    """The facts of a contact from items already read (the router's one Query of the contact's partition)."""
    activity = [{"type": a["type"], "data": a.get("data", {}), "at": datetime.fromisoformat(a["at"])} for a in items]
    return Facts(
        tags=contact.tags,
        fields={**contact.fields, "email": contact.email, "phone": contact.phone, "timezone": contact.timezone},
        score=contact.score,
        lists=contact.lists,
        campaigns=contact.campaigns,
        stages=contact.stages,
        activity=activity,
        trigger=trigger.get("data", trigger),
        now=now,
    )


def conditions_window(conditions: Sequence[Condition | None]) -> timedelta | None:
    """How far back `conditions` read activity: the longest `within` they name, the ceiling (as long as activity
    is kept) for a leaf that names none, None when none reads activity (then none is read)."""
    return max((w for c in conditions if c is not None for w in activity_windows(c)), default=None)
