"""What the router does with one record of each way in (an accepted delivery, an outbox item, a run's end, feedback),
shared by the router Lambda and `stepwise replay`; and the queue message the intake writes (JSON, exact Decimals)."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from shared import constants as C
from shared.events import ContactEvent, EventError, bool_value, text_value
from shared.store.codec import deserialise

if TYPE_CHECKING:  # the intake writes messages without loading the routing engine (its cold start)
    from shared.routing import Routed, Router
    from shared.store.archive import Archive


def _plain(value: Any) -> Any:
    # Money stays a JSON number (read back as Decimal with parse_float), never a string a condition cannot compare.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_plain, sort_keys=True)


def loads(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal)


def event_json(event: ContactEvent) -> dict[str, Any]:
    """The event as JSON-ready values, Decimals kept as numbers (model_dump(mode="json") makes them strings)."""
    return loads(dumps(event.model_dump(mode="python", exclude_none=True)))  # type: ignore[no-any-return]


_TITLE = "AcceptedDelivery"


class AcceptedDelivery:
    """One SQS message: everything the router needs, and where the raw delivery is kept. A plain class (the router
    reads one per record; no pydantic on its import): `parse` checks a message as the pydantic model did, EventError
    naming the first bad field (`events.0.contact.email`), in pydantic's words."""

    __slots__ = ("archive_key", "dedupe_key", "events", "provider", "test", "verified")
    _TEXT = ("dedupe_key", "archive_key", "provider")
    _FLAGS = ("verified", "test")

    def __init__(
        self,
        *,
        dedupe_key: str,
        archive_key: str,
        provider: str,
        verified: bool,
        test: bool,
        events: list[ContactEvent] | None,  # None: too large for SQS, read them from the archived delivery
    ) -> None:
        self.dedupe_key, self.archive_key, self.provider = dedupe_key, archive_key, provider
        self.verified, self.test, self.events = verified, test, events

    @classmethod
    def parse(cls, body: str) -> AcceptedDelivery:
        value = loads(body)
        if not isinstance(value, dict):
            raise EventError(
                (), "Input should be a valid dictionary or instance of AcceptedDelivery", "model_type", _TITLE
            )
        for name in (*cls._TEXT, *cls._FLAGS, "events"):
            if name not in value:
                raise EventError((name,), "Field required", "missing", _TITLE)
        try:
            texts = {name: text_value((name,), value[name], optional=False) for name in cls._TEXT}
            flags = {name: bool_value((name,), value[name]) for name in cls._FLAGS}
        except EventError as err:
            raise err.within(title=_TITLE) from None
        events = value["events"]
        if events is not None:
            if not isinstance(events, list):
                raise EventError(("events",), "Input should be a valid list", "list_type", _TITLE)
            events = [_event(e, ("events", i)) for i, e in enumerate(events)]
        for key in value:
            if key not in cls.__slots__:
                raise EventError((key,), "Extra inputs are not permitted", "extra_forbidden", _TITLE)
        return cls(**texts, **flags, events=events)  # type: ignore[arg-type]

    def message(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """The SQS message's JSON, with the events as given (event_json's)."""
        return {
            "dedupe_key": self.dedupe_key,
            "archive_key": self.archive_key,
            "provider": self.provider,
            "verified": self.verified,
            "test": self.test,
            "events": events,
        }


def _event(value: Any, where: tuple[str | int, ...]) -> ContactEvent:
    try:
        return ContactEvent.model_validate(value)
    except EventError as err:
        raise err.within(*where, title=_TITLE) from None


class NoFeedbackMapping(Exception):
    """shared/messaging/feedback.py is not there: SES and SMS events cannot be read yet (kept as dead letters)."""


def route_delivery(router: Router, archive: Archive, body: str) -> list[Routed]:
    """One accepted delivery off the intake queue: each of its events, in the order the provider listed them."""
    message = AcceptedDelivery.parse(body)
    events = message.events
    if events is None:  # too large for SQS: the intake archived them with the raw delivery
        doc = archive.get_json(message.archive_key)
        if doc is None:
            raise LookupError(f"archived delivery {message.archive_key} is gone (expired after 30 days?)")
        events = [_event(e, ("events", i)) for i, e in enumerate(loads(dumps(doc.get("events") or [])))]
    out: list[Routed] = []
    for event in events:
        out += router.handle(event, archive_key=message.archive_key)  # the contact's ACT# item indexes the object
    return out


def outbox_item(new_image: dict[str, Any]) -> dict[str, Any] | None:
    """The step runner's outbox item in a stream record's NewImage, or None for any other item (MSG# items are
    the sender's, profiles and runs nobody's here)."""
    item = deserialise(new_image)
    if str(item.get(C.PK, "")).startswith("EVENT#") and item.get("status") == "pending":
        return item
    return None


def route_outbox(router: Router, item: dict[str, Any]) -> list[Routed]:
    """An event a step caused (tag.added...): already applied by the step, routed for other workflows. The item
    is deleted once routed, as the local simulation does; a repeat finds the same deterministic ids."""
    from shared.routing import outbox_to_event

    out = router.handle(outbox_to_event(item), internal=True)
    router.store.delete_item(item[C.PK], item[C.SK])
    return out


def route_status(router: Router, event: dict[str, Any]) -> list[Routed]:
    """EventBridge's "Step Functions Execution Status Change": the detail carries the input as a JSON string
    (absent when over 256 KB: then DescribeExecution has it)."""
    detail = event.get("detail") or {}
    arn, status = detail.get("executionArn"), detail.get("status")
    if not arn or not status:
        raise ValueError("execution status change without detail.executionArn / detail.status")
    raw = detail.get("input")
    if raw is None:
        raw = router.sfn.describe_execution(executionArn=arn).get("input")
    run_input = json.loads(raw) if isinstance(raw, str) and raw else (raw if isinstance(raw, dict) else {})
    return router.execution_ended(arn, status, run_input)


def feedback_events(event: dict[str, Any]) -> list[ContactEvent]:
    """SES events and SMS receipts as contact events, through the senders' mapping (shared/messaging/feedback)."""
    try:
        from shared.messaging import feedback  # type: ignore[attr-defined]
    except ImportError as err:
        if err.name not in ("shared.messaging.feedback", None):
            raise
        raise NoFeedbackMapping("no feedback mapping (shared/messaging/feedback.py to_events)") from None
    return list(feedback.to_events(event))


def route_feedback(router: Router, event: dict[str, Any], messages: Any = None, guard: Any = None) -> list[Routed]:
    """With `messages` (a MessageStore), what the feedback Lambda does: feedback.handle first (suppression, the
    reputation guard's counts, a Send event's confirmation), then each event routed; without, the mapping only."""
    if messages is not None:
        from shared import clock
        from shared.messaging import feedback

        events = feedback.handle(event, messages, clock.now(), guard)
    else:
        events = feedback_events(event)
    out: list[Routed] = []
    for e in events:
        out += router.handle(e)
    return out
