"""`stepwise replay`: the dead-letter store's records listed with their error, and run again from what was kept."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.events import ContactEvent
from shared.routing import Router
from shared.runtime import inbound, schedules
from shared.store.archive import Archive, DeadLetter

# Dead-letter sources: queue (an accepted delivery), stream (an outbox item), status (a run's end), schedule,
# feedback (an SES / SMS event), unresolved (a delivery about no contact we could identify).
SOURCES = ("queue", "stream", "status", "schedule", "feedback", "unresolved")


@dataclass(frozen=True)
class Replayed:
    key: str
    source: str
    ok: bool
    error: str = ""


def list_dead_letters(archive: Archive) -> list[DeadLetter]:
    """Every dead letter, oldest first, with its source, error and time."""
    return sorted(archive.dead_letters(), key=lambda d: (d.at, d.key))


def replay(
    archive: Archive,
    router: Router,
    *,
    only: Callable[[DeadLetter], bool] | None = None,
) -> list[Replayed]:
    """Run each dead letter again from its stored record; a success deletes it, a failure keeps it with the new
    error. The router is idempotent (deterministic execution names, event ids), so a record that a retry already
    processed runs again harmlessly."""
    out = []
    for letter in list_dead_letters(archive):
        if only is not None and not only(letter):
            continue
        try:
            run_letter(letter, router, archive)
        except Exception as err:  # a replay reports every failure and moves on to the next letter
            error = f"{type(err).__name__}: {err}"
            archive.retried(letter, error)
            out.append(Replayed(letter.key, letter.source, False, error))
            continue
        archive.delete(letter.key)
        out.append(Replayed(letter.key, letter.source, True))
    return out


def run_letter(letter: DeadLetter, router: Router, archive: Archive) -> Any:
    record = letter.record
    if letter.source == "queue":
        return inbound.route_delivery(router, archive, record["body"])
    if letter.source == "stream":
        item = inbound.outbox_item(record["dynamodb"].get("NewImage") or {})
        if item is None or router.store.get_item(item["pk"], item["sk"]) is None:
            return []  # routed since (a routed outbox item is deleted): nothing left to do
        return inbound.route_outbox(router, item)
    if letter.source == "status":
        return inbound.route_status(router, record["event"])
    if letter.source == "schedule":
        # The schedules bound by the caller's start-up (the router's, or the local stack's).
        context = schedules.ScheduleContext(router=router, schedules=schedules.required())
        return schedules.dispatch(record["payload"], context)
    if letter.source == "feedback":
        # Suppression and confirmation again (both idempotent); the reputation guard's counts are not repeated.
        from shared.store.messages import MessageStore

        return inbound.route_feedback(router, record["event"], MessageStore(router.store.table, router.store.client))
    if letter.source == "unresolved":
        return _replay_unresolved(router, archive, record)
    raise ValueError(f"dead letter {letter.key}: unknown source {letter.source!r}")


def _replay_unresolved(router: Router, archive: Archive, record: dict[str, Any]) -> Any:
    """A delivery verified at intake but about nobody: normalised again (the provider's mapping may have been
    fixed since) and routed. The proof is not archived, so it is accepted as already verified."""
    import base64
    from datetime import datetime

    from shared.intake.base import Delivery
    from shared.intake.pipeline import accept

    doc = archive.get_json(record["archive_key"])
    if doc is None:
        raise LookupError(f"archived delivery {record['archive_key']} is gone (expired after 30 days?)")
    body = doc["body"].encode() if doc.get("body_encoding") == "utf-8" else base64.b64decode(doc["body"])
    delivery = Delivery(
        provider=doc["provider"],
        headers=doc.get("headers", {}),
        body=body,
        received_at=datetime.fromisoformat(doc["received_at"]),
        query=doc.get("query", {}),
    )
    accepted = accept(delivery.provider, delivery, lambda _provider: None, allow_unverified=True)
    events: list[ContactEvent] = accepted.events
    return [r for e in events for r in router.handle(e)]
