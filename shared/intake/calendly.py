"""Calendly: `Calendly-Webhook-Signature: t=..,v1=..`, hex HMAC-SHA256 of "<t>.<body>", 300 s tolerance."""

from __future__ import annotations

from shared.events import ContactEvent
from shared.intake.base import Delivery, MalformedDelivery
from shared.intake.common import (
    TimestampedV1,
    contact,
    event_base,
    make_event,
    parse_json,
    root,
)

HEADER = "Calendly-Webhook-Signature"
EVENTS = {"invitee.created": "appointment.scheduled", "invitee.canceled": "appointment.cancelled"}


class Calendly(TimestampedV1):
    name = "calendly"
    signature_header = HEADER  # Calendly's example allows 3 minutes; 5 here, like every timestamped scheme

    def delivery_id(self, delivery: Delivery) -> str:
        # No event id: the invitee's URI and the event name (an invitee is created once and cancelled once).
        try:
            value = parse_json(delivery.body)
        except MalformedDelivery:
            return ""
        if not isinstance(value, dict) or not isinstance(value.get("payload"), dict):
            return ""
        event, uri = value.get("event"), value["payload"].get("uri")
        return f"{event}:{uri}" if isinstance(event, str) and isinstance(uri, str) else ""

    def normalise(self, delivery: Delivery) -> list[ContactEvent]:
        body = root(delivery)
        type_ = EVENTS.get(body["event"].req_str())
        if type_ is None:
            return []
        p = body["payload"].required()
        scheduled = p["scheduled_event"]
        name = p["name"].str()
        first, last = p["first_name"], p["last_name"]
        who = contact(
            emails=[p["email"]],
            phones=[p["text_reminder_number"]],
            first_name=first if first else None,
            last_name=last if last else None,
            timezone=p["timezone"],
        )
        if name and not who.first_name:  # Calendly asks for one "name" unless the event type splits it
            parts = name.split(maxsplit=1)
            who = who.model_copy(update={"first_name": parts[0], "last_name": parts[1] if len(parts) > 1 else None})
        data = {
            "appointment_id": p["uri"].str(),
            "event_type": scheduled["name"].str() or scheduled["event_type"].str(),
        }
        if type_ == "appointment.scheduled":
            starts, ends = scheduled["start_time"].datetime(), scheduled["end_time"].datetime()
            data["starts_at"] = starts.isoformat() if starts else None
            data["ends_at"] = ends.isoformat() if ends else None
        else:
            data["reason"] = p["cancellation"]["reason"].str()
        at = body["created_at"].datetime() or p["updated_at"].datetime()
        base = event_base(self.name, self.delivery_id(delivery), delivery.body)
        return [make_event(base, type_, who, data, source=self.name, occurred_at=at, test=False)]
