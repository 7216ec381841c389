"""What conditions look at for one contact: profile, recent activity, the triggering event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.store.contacts import Contact, ContactStore
from shared.workflow.conditions import Facts


def facts_for(store: ContactStore, contact: Contact, trigger: dict[str, Any], now: datetime) -> Facts:
    activity = []
    for a in store.activity(contact.id):
        activity.append({"type": a["type"], "data": a.get("data", {}), "at": datetime.fromisoformat(a["at"])})
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
