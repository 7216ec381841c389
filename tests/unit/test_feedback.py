"""SES events (EventBridge) and SMS delivery receipts become contact events attributed to our message."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.events import CATALOGUE
from shared.messaging.feedback import FeedbackError, to_events

TAGS = {"message_id": ["m-1"], "contact_id": ["c-1"], "ses:configuration-set": ["marketing"]}


def ses(kind: str, detail_type: str, body: dict[str, Any] | None = None, tags: dict | None = None) -> dict[str, Any]:
    """The shape SES publishes to EventBridge (source aws.ses), its detail as in SES's event publishing examples."""
    detail: dict[str, Any] = {
        "eventType": kind,
        "mail": {
            "timestamp": "2026-11-30T09:00:00.000Z",
            "source": "Shop <hello@example.com>",
            "messageId": "0100018c-ses-id",
            "destination": ["ana@example.com"],
            "tags": TAGS if tags is None else tags,
        },
    }
    if body is not None:
        detail[kind[0].lower() + kind[1:]] = body
    return {"version": "0", "source": "aws.ses", "detail-type": detail_type, "detail": detail}


@pytest.mark.parametrize(
    ("kind", "detail_type", "body", "etype", "extra"),
    [
        ("Delivery", "Email Delivered", {"timestamp": "2026-11-30T09:00:02.000Z"}, "email.delivered", {}),
        (
            "Bounce",
            "Email Bounced",
            {"bounceType": "Permanent", "bounceSubType": "General", "timestamp": "2026-11-30T09:00:03.000Z"},
            "email.bounced",
            {"bounce_type": "Permanent", "reason": "General"},
        ),
        (
            "Complaint",
            "Email Complaint Received",
            {"complaintFeedbackType": "abuse", "timestamp": "2026-11-30T10:00:00.000Z"},
            "email.complained",
            {"reason": "abuse"},
        ),
        ("Open", "Email Opened", {"timestamp": "2026-11-30T11:00:00.000Z"}, "email.opened", {}),
        (
            "Click",
            "Email Clicked",
            {"link": "https://shop.example/cart", "timestamp": "2026-11-30T11:01:00.000Z"},
            "email.clicked",
            {"link": "https://shop.example/cart"},
        ),
        ("Reject", "Email Rejected", {"reason": "Bad content"}, "email.rejected", {"reason": "Bad content"}),
        (
            "DeliveryDelay",
            "Email Delivery Delayed",
            {"timestamp": "2026-11-30T09:30:00Z"},
            "email.delivery_delayed",
            {},
        ),
        ("Send", "Email Sent", {}, "email.sent", {}),
    ],
)
def test_ses_events_map_to_our_types_with_our_message_id(
    kind: str, detail_type: str, body: dict[str, Any], etype: str, extra: dict[str, Any]
) -> None:
    (ev,) = to_events(ses(kind, detail_type, body))
    assert ev.type == etype and ev.contact.contact_id == "c-1" and ev.source == "ses"
    assert ev.data == {"message_id": "m-1", "provider_id": "0100018c-ses-id", **extra}
    assert set(ev.data) <= CATALOGUE[etype]  # the fields conditions may read are catalogued
    assert "ana@example.com" not in json.dumps(ev.model_dump(mode="json"))  # no address travels on


def test_two_clicks_are_two_events_and_a_redelivery_is_the_same_one() -> None:
    a = to_events(ses("Click", "Email Clicked", {"link": "https://x/1", "timestamp": "2026-11-30T11:00:00Z"}))[0]
    b = to_events(ses("Click", "Email Clicked", {"link": "https://x/2", "timestamp": "2026-11-30T11:00:05Z"}))[0]
    again = to_events(ses("Click", "Email Clicked", {"link": "https://x/1", "timestamp": "2026-11-30T11:00:00Z"}))[0]
    assert a.id != b.id and a.id == again.id


def test_mail_not_sent_by_stepwise_gives_nothing() -> None:
    assert to_events(ses("Open", "Email Opened", {"timestamp": "2026-11-30T11:00:00Z"}, tags={})) == []


def sms(kind: str, status: str, context: dict[str, str] | None = None) -> dict[str, Any]:
    """End User Messaging SMS's event record (its documented example), as the event destination sends it."""
    return {
        "eventType": kind,
        "eventVersion": "1.0",
        "eventTimestamp": 1796029500000,
        "isFinal": True,
        "originationPhoneNumber": "+12065550152",
        "destinationPhoneNumber": "+393471234567",
        "messageId": "862a8790-60c0-4430-9b2b-658bdexample",
        "messageType": "PROMOTIONAL",
        "messageStatus": status,
        "messageStatusDescription": "Message has been accepted by phone carrier",
        "context": {"message_id": "m-2", "contact_id": "c-2"} if context is None else context,
        "totalMessageParts": 1,
    }


@pytest.mark.parametrize("wrap", ["bare", "sns", "eventbridge"])
def test_sms_receipts_delivered_and_not_delivered(wrap: str) -> None:
    def wrapped(e: dict[str, Any]) -> dict[str, Any]:
        if wrap == "sns":
            return {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(e)}}]}
        if wrap == "eventbridge":
            return {"source": "aws.sms-voice", "detail-type": "SMS", "detail": e}
        return e

    (ok,) = to_events(wrapped(sms("TEXT_DELIVERED", "DELIVERED")))
    assert ok.type == "sms.delivered" and ok.data["message_id"] == "m-2" and ok.contact.contact_id == "c-2"
    (bad,) = to_events(wrapped(sms("TEXT_CARRIER_UNREACHABLE", "CARRIER_UNREACHABLE")))
    assert bad.type == "sms.not_delivered" and bad.data["reason"] == "carrier_unreachable"
    # Not final, but the provider has it: the first receipt attaches the provider's id and gives sms.sent (absorb).
    (pending,) = to_events(wrapped(sms("TEXT_PENDING", "PENDING")))
    assert pending.type == "sms.sent" and pending.data["provider_id"] == ok.data["provider_id"]
    assert to_events(wrapped(sms("TEXT_DELIVERED", "DELIVERED", context={}))) == []  # not ours


def test_a_detail_that_is_not_an_object_is_refused_naming_the_field() -> None:
    with pytest.raises(FeedbackError, match="detail"):
        to_events({"source": "aws.ses", "detail": "oops"})
