"""POST /events bodies: one event or a batch of at most 100, errors naming the field."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from shared.intake.base import MalformedDelivery
from shared.intake.generic import parse_events

EVENT = {
    "id": "web-1",
    "type": "page.visited",
    "contact": {"email": "Ann@Example.com"},
    "data": {"url": "https://shop.example/pricing"},
    "occurred_at": "2026-03-01T10:00:00Z",
}


def body(value) -> bytes:
    return json.dumps(value).encode()


def test_one_event_or_a_batch() -> None:
    (e,) = parse_events(body(EVENT))
    assert e.contact.email == "ann@example.com" and e.occurred_at.tzinfo is not None
    assert len(parse_events(body({"events": [EVENT, {**EVENT, "id": "web-2"}]}))) == 2


def test_errors_name_the_field_inside_the_batch() -> None:
    bad = {**EVENT, "contact": {"email": "not-an-address"}}
    with pytest.raises(MalformedDelivery) as e:
        parse_events(body({"events": [EVENT, EVENT, bad]}))
    assert e.value.field == "events[2].contact.email"
    assert "not-an-address" not in str(e.value)  # personal data is never echoed into messages (they are logged)
    with pytest.raises(MalformedDelivery) as e:
        parse_events(body({**EVENT, "surprise": 1}))
    assert e.value.field == "surprise"


def test_a_time_without_zone_is_refused() -> None:
    with pytest.raises(MalformedDelivery, match="time zone") as e:
        parse_events(body({"events": [{**EVENT, "occurred_at": "2026-03-01T10:00:00"}]}))
    assert e.value.field == "events[0].occurred_at"


def test_at_most_100_events_and_money_stays_decimal() -> None:
    with pytest.raises(MalformedDelivery, match="at most 100"):
        parse_events(body({"events": [EVENT] * 101}))
    (e,) = parse_events(b'{"id": "c1", "type": "conversion.completed", "contact": {"contact_id": "c"}, '
                        b'"data": {"value": 19.99}}')  # fmt: skip
    assert e.data["value"] == Decimal("19.99")
