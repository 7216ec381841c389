"""Stripe: `Stripe-Signature: t=..,v1=..`, hex HMAC-SHA256 of "<t>.<body>", 300 s tolerance; the body says the type."""

from __future__ import annotations

import re
from typing import Any

from shared.events import ContactEvent, ContactRef
from shared.intake.base import Delivery, MalformedDelivery
from shared.intake.common import (
    J,
    TimestampedV1,
    body_hash,
    contact,
    currency,
    event_base,
    make_event,
    minor_units,
    parse_json,
    ref_id,
    root,
)

HEADER = "Stripe-Signature"
_PLACEHOLDER = re.compile(r"^evt_0+$")

TYPES = {
    "checkout.session.completed": "order.paid",
    "charge.refunded": "order.refunded",
    "invoice.payment_failed": "subscription.payment_failed",
    "customer.subscription.deleted": "subscription.cancelled",
}


class Stripe(TimestampedV1):
    name = "stripe"
    signature_header = HEADER

    def delivery_id(self, delivery: Delivery) -> str:
        try:
            value = parse_json(delivery.body)
        except MalformedDelivery:
            return ""
        event_id = value.get("id") if isinstance(value, dict) else None
        return event_id.strip() if isinstance(event_id, str) else ""

    def normalise(self, delivery: Delivery) -> list[ContactEvent]:
        body = root(delivery)
        kind = body["type"].req_str()
        type_ = TYPES.get(kind)
        if type_ is None:
            return []
        obj = body["data"].required()["object"].required()
        if kind == "checkout.session.completed":
            # An asynchronous payment (bank debit) completes the session unpaid; its payment comes later.
            if obj["payment_status"].str() == "unpaid":
                return []
            data = _session(obj)
        elif kind == "charge.refunded":
            code = currency(obj["currency"])
            data = {
                "order_id": obj["id"].str(),
                "total": minor_units(obj["amount"], code),
                "amount_refunded": minor_units(obj["amount_refunded"], code),
                "currency": code,
            }
        elif kind == "invoice.payment_failed":
            code = currency(obj["currency"])
            data = {
                "subscription_id": ref_id(obj["subscription"]),
                "invoice_id": obj["id"].str(),
                "amount": minor_units(obj["amount_due"], code),
                "currency": code,
                "attempt": obj["attempt_count"].int(),
            }
        else:
            data = {"subscription_id": obj["id"].str(), "reason": obj["cancellation_details"]["reason"].str()}
        test = body["livemode"].bool() is False
        event_id = self.delivery_id(delivery)
        if test and _PLACEHOLDER.match(event_id):
            # The dashboard's "send test webhook" events all say evt_00000000000000: tell them apart by body.
            event_id = f"{event_id}:{body_hash(delivery.body)}"
        base = event_base(self.name, event_id, delivery.body)
        at = body["created"].datetime()
        return [make_event(base, type_, _who(obj), data, source=self.name, occurred_at=at, test=test)]


def _session(obj: J) -> dict[str, Any]:
    code = currency(obj["currency"])
    return {
        "order_id": obj["id"].str(),
        "total": minor_units(obj["amount_total"], code),
        "currency": code,
    }


def _who(obj: J) -> ContactRef:
    details = obj["customer_details"]
    billing = obj["billing_details"]
    cid = ref_id(obj["customer"])
    return contact(
        emails=[details["email"], obj["customer_email"], billing["email"], obj["receipt_email"], obj["email"]],
        phones=[details["phone"], billing["phone"]],
        external_id=f"stripe:{cid}" if cid else None,
    )
