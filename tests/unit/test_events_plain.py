"""The contact event's run-time form (plain slotted classes, no pydantic): the checks and words of the pydantic
models it replaced, for POST /events bodies and the router's queue messages alike; the queue message refused
naming the field."""

from __future__ import annotations

import copy
import json
import pickle
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from shared.events import ContactEvent, ContactRef, EventError
from shared.runtime.inbound import AcceptedDelivery, dumps, event_json

A = {"email": "a@example.com"}
BASE: dict[str, Any] = {"id": "x", "type": "a.b", "contact": A}
E164 = "is not a phone number in international form (E.164, e.g. +393471234567)"


@pytest.mark.parametrize(
    ("value", "loc", "kind", "msg"),
    [
        ({}, ("id",), "missing", "Field required"),
        ({"type": "A"}, ("id",), "missing", "Field required"),
        ({**BASE, "id": 1}, ("id",), "string_type", "Input should be a valid string"),
        ({**BASE, "id": "", "type": "A"}, ("id",), "string_too_short", "String should have at least 1 character"),
        ({**BASE, "type": "Order.Paid"}, ("type",), "string_pattern_mismatch",
         "String should match pattern '^[a-z_]+\\.[a-z_]+$'"),
        ({**BASE, "contact": "x"}, ("contact",), "model_type",
         "Input should be a valid dictionary or instance of ContactRef"),
        ({**BASE, "contact": None}, ("contact",), "model_type",
         "Input should be a valid dictionary or instance of ContactRef"),
        ({**BASE, "contact": {}}, ("contact",), "value_error",
         "Value error, contact needs at least one of email, phone, external_id, contact_id"),
        ({**BASE, "contact": {"email": "Nope "}}, ("contact", "email"), "value_error",
         "Value error, 'nope' is not an email address"),
        ({**BASE, "contact": {"phone": "123"}}, ("contact", "phone"), "value_error", f"Value error, '123' {E164}"),
        ({**BASE, "contact": {"email": 5}}, ("contact", "email"), "string_type", "Input should be a valid string"),
        ({**BASE, "contact": {"external_id": 5.5}}, ("contact", "external_id"), "string_type",
         "Input should be a valid string"),
        ({**BASE, "contact": {"zz": 1}}, ("contact", "zz"), "extra_forbidden", "Extra inputs are not permitted"),
        ({**BASE, "contact": {**A, "fields": None}}, ("contact", "fields"), "dict_type",
         "Input should be a valid dictionary"),
        ({**BASE, "data": []}, ("data",), "dict_type", "Input should be a valid dictionary"),
        ({**BASE, "data": None}, ("data",), "dict_type", "Input should be a valid dictionary"),
        ({**BASE, "data": {1: 2}}, ("data", 1, "[key]"), "string_type", "Input should be a valid string"),
        ({**BASE, "occurred_at": "2026-03-01T10:00:00"}, ("occurred_at",), "value_error",
         "Value error, needs a time zone, e.g. 2026-12-01T09:00:00Z or 2026-12-01T10:00:00+01:00"),
        ({**BASE, "occurred_at": True}, ("occurred_at",), "datetime_type", "Input should be a valid datetime"),
        ({**BASE, "test": "maybe"}, ("test",), "bool_parsing",
         "Input should be a valid boolean, unable to interpret input"),
        ({**BASE, "test": None}, ("test",), "bool_type", "Input should be a valid boolean"),
        ({**BASE, "source": 3}, ("source",), "string_type", "Input should be a valid string"),
        ({**BASE, "surprise": 1}, ("surprise",), "extra_forbidden", "Extra inputs are not permitted"),
        ({**BASE, "id": 1, "surprise": 1}, ("id",), "string_type", "Input should be a valid string"),  # fields first
        ("str", (), "model_type", "Input should be a valid dictionary or instance of ContactEvent"),
    ],
)  # fmt: skip
def test_a_bad_event_is_refused_in_the_pydantic_models_words(value: Any, loc: tuple, kind: str, msg: str) -> None:
    with pytest.raises(EventError) as err:
        ContactEvent.model_validate(value)
    assert err.value.errors() == [{"loc": loc, "type": kind, "msg": msg}]
    assert isinstance(err.value, ValueError)


def test_values_are_coerced_as_pydantic_lax_mode_did() -> None:
    e = ContactEvent.model_validate(
        {**BASE, "contact": {"external_id": 2**70, "phone": "0039 347 123 4567"}, "test": "yes",
         "occurred_at": "2026-03-01 10:00+01:00"}
    )  # fmt: skip
    assert e.contact.external_id == str(2**70) and e.contact.phone == "+393471234567" and e.test is True
    assert e.occurred_at == datetime(2026, 3, 1, 9, tzinfo=UTC)
    seconds = ContactEvent.model_validate({**BASE, "occurred_at": 1700000000}).occurred_at
    assert seconds == ContactEvent.model_validate({**BASE, "occurred_at": "1700000000"}).occurred_at
    assert seconds == ContactEvent.model_validate({**BASE, "occurred_at": 1700000000000}).occurred_at  # ms
    assert seconds == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert ContactEvent.model_validate({**BASE, "test": 0, "source": None}).test is False
    # The constructor checks as model_validate does.
    with pytest.raises(EventError, match=r"contact\.email"):
        ContactEvent(id="x", type="a.b", contact={"email": "nope"})


def test_dumps_copies_and_equality_are_the_models() -> None:
    at = datetime(2026, 3, 1, 10, 0, 0, 500000, tzinfo=UTC)
    e = ContactEvent(id="x", type="a.b", contact=ContactRef(email="A@b.c"), data={"v": Decimal("1.50"), "n": None},
                     occurred_at=at)  # fmt: skip
    assert e.model_dump(mode="json") == {
        "id": "x", "type": "a.b",
        "contact": {"email": "a@b.c", "phone": None, "external_id": None, "contact_id": None, "first_name": None,
                    "last_name": None, "timezone": None, "fields": {}},
        "data": {"v": "1.50", "n": None}, "occurred_at": "2026-03-01T10:00:00.500000Z", "source": None, "test": False,
    }  # fmt: skip
    assert e.model_dump(exclude_none=True) == {
        "id": "x", "type": "a.b", "contact": {"email": "a@b.c", "fields": {}},
        "data": {"v": Decimal("1.50"), "n": None}, "occurred_at": at, "test": False,
    }  # fmt: skip
    other_zone = e.model_copy(update={"occurred_at": at.astimezone(timezone(timedelta(hours=1)))})
    assert other_zone.model_dump(mode="json")["occurred_at"] == "2026-03-01T11:00:00.500000+01:00"
    assert other_zone == e and e.occurred_at is at  # the same instant; the original untouched
    assert e.model_copy(update={"id": "y"}) != e
    assert ContactEvent.model_validate(json.loads(dumps(event_json(e)))) == e
    assert copy.deepcopy(e) == e == pickle.loads(pickle.dumps(e))
    with pytest.raises(AttributeError):
        e.id = "y"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        e.model_copy(update={"nosuch": 1})


def _message(**change: Any) -> str:
    event = event_json(ContactEvent.model_validate({**BASE, "occurred_at": "2026-03-01T10:00:00Z"}))
    message = {"dedupe_key": "shopify:1", "archive_key": "deliveries/k.json", "provider": "shopify",
               "verified": True, "test": False, "events": [event]}  # fmt: skip
    return dumps({**message, **change})


def test_a_queue_message_is_read_back_as_the_intake_wrote_it() -> None:
    m = AcceptedDelivery.parse(_message())
    assert (m.dedupe_key, m.archive_key, m.provider, m.verified, m.test) == (
        "shopify:1", "deliveries/k.json", "shopify", True, False
    )  # fmt: skip
    assert m.events == [ContactEvent.model_validate({**BASE, "occurred_at": "2026-03-01T10:00:00Z"})]
    assert json.loads(dumps(m.message([event_json(e) for e in m.events or []]))) == json.loads(_message())
    assert AcceptedDelivery.parse(_message(events=None)).events is None  # too large for SQS: read from the archive


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"events": [{**BASE, "contact": {"email": "nope"}}]}, "events.0.contact.email", "not an email address"),
        ({"events": [BASE, {**BASE, "type": "Bad"}]}, "events.1.type", "String should match pattern"),
        ({"events": "x"}, "events", "Input should be a valid list"),
        ({"verified": "perhaps"}, "verified", "Input should be a valid boolean"),
        ({"provider": None}, "provider", "Input should be a valid string"),
        ({"extra": 1}, "extra", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_queue_message_is_refused_naming_the_field(change: dict[str, Any], field: str, says: str) -> None:
    with pytest.raises(EventError) as err:
        AcceptedDelivery.parse(_message(**change))
    assert ".".join(str(p) for p in err.value.loc) == field
    assert says in err.value.msg and f"\n{field}\n" in str(err.value)
    assert str(err.value).startswith("1 validation error for AcceptedDelivery")


def test_a_queue_message_missing_a_field_names_it() -> None:
    body = json.loads(_message())
    del body["archive_key"]
    with pytest.raises(EventError) as err:
        AcceptedDelivery.parse(json.dumps(body))
    assert err.value.errors()[0]["loc"] == ("archive_key",) and err.value.msg == "Field required"
