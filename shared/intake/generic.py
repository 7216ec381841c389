"""The body of `POST /events`: our own API for what no shop sends (page visited, conversion, webinar, course,
community, loyalty, coupon used, appointment, custom events). One ContactEvent object, or {"events": [...]}."""

from __future__ import annotations

from typing import Any

from shared.events import ContactEvent, EventError
from shared.intake.base import MAX_BODY_BYTES, BodyTooLarge, MalformedDelivery
from shared.intake.common import parse_json

MAX_EVENTS = 100


def parse_events(body: bytes) -> list[ContactEvent]:
    """Every event of the body, validated; MalformedDelivery naming the first bad field (`events[2].contact.email`).
    A time without a time zone is refused: whose midnight would it be?"""
    if len(body) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"body is {len(body)} bytes, over the {MAX_BODY_BYTES} limit", field="body")
    value = parse_json(body)
    if isinstance(value, dict) and set(value) == {"events"}:
        items = value["events"]
        if not isinstance(items, list):
            raise MalformedDelivery("events must be a list", field="events")
        if not items:
            raise MalformedDelivery("events is empty", field="events")
        if len(items) > MAX_EVENTS:
            raise MalformedDelivery(f"events has {len(items)} events, at most {MAX_EVENTS}", field="events")
        return [_one(item, f"events[{i}]") for i, item in enumerate(items)]
    return [_one(value, "")]


def _one(item: Any, where: str) -> ContactEvent:
    prefix = f"{where}." if where else ""
    if not isinstance(item, dict):
        raise MalformedDelivery(f"{where or 'body'} must be an event object", field=where or "body")
    try:
        event = ContactEvent.model_validate(item)
    except EventError as e:
        err = e.errors()[0]
        field = prefix + ".".join(str(p) for p in err["loc"])
        # A contact's values are personal data: the message names the field, never echoes the value (it is logged).
        msg = "not a valid value" if err["loc"][:1] == ("contact",) and err["type"] == "value_error" else err["msg"]
        raise MalformedDelivery(f"{field or 'body'}: {msg}", field=field) from None
    except RecursionError:
        raise MalformedDelivery(f"{where or 'body'} is nested too deeply", field=where or "body") from None
    if event.occurred_at is not None and event.occurred_at.tzinfo is None:
        field = prefix + "occurred_at"
        raise MalformedDelivery(f"{field} has no time zone (say Z or +01:00)", field=field)
    return event
