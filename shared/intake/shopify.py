"""Shopify: base64 HMAC-SHA256 of the raw body (X-Shopify-Hmac-Sha256); the topic header names the event."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from shared.events import ContactEvent
from shared.intake.base import Delivery, MalformedDelivery, SignatureRejected
from shared.intake.common import (
    J,
    b64,
    contact,
    currency,
    event_base,
    hmac_sha256,
    make_event,
    product,
    required_header,
    root,
    same,
)

HEADER = "X-Shopify-Hmac-Sha256"
TOPIC_HEADER = "X-Shopify-Topic"

# Orders' topics send near-identical bodies (orders/create, orders/paid, orders/cancelled share one HMAC in
# Hookdeck's captures), so the topic header decides the type.
TOPICS = {
    "orders/paid": "order.paid",
    "orders/cancelled": "order.cancelled",
    "refunds/create": "order.refunded",
    "checkouts/create": "checkout.started",
    "checkouts/update": "checkout.updated",
    "customers/create": "contact.created",
}


class Shopify:
    name = "shopify"
    signed = True
    signature_header = HEADER

    def verify(self, delivery: Delivery, secret: str) -> None:
        given = required_header(delivery, HEADER)
        if not same(given, b64(hmac_sha256(secret, delivery.body))):
            raise SignatureRejected(f"{HEADER} does not match the body (wrong secret or altered body)", field=HEADER)

    def sign(self, body: bytes, secret: str, now: datetime) -> dict[str, str]:
        return {HEADER.lower(): b64(hmac_sha256(secret, body))}

    def delivery_id(self, delivery: Delivery) -> str:
        # Shopify: de-duplicate on X-Shopify-Event-Id; older deliveries carry only the per-delivery webhook id.
        return (delivery.header("X-Shopify-Event-Id") or delivery.header("X-Shopify-Webhook-Id") or "").strip()

    def normalise(self, delivery: Delivery) -> list[ContactEvent]:
        topic = (delivery.header(TOPIC_HEADER) or "").strip()
        if not topic:
            raise MalformedDelivery(f"{TOPIC_HEADER} header is missing", field=TOPIC_HEADER)
        type_ = TOPICS.get(topic)
        if type_ is None:
            return []
        body = root(delivery)
        test = (delivery.header("X-Shopify-Test") or "").lower() == "true" or body["test"].v is True
        if topic == "refunds/create":
            data, at = _refund(body)
        elif topic.startswith("checkouts/"):
            data, at = _checkout(body)
        elif topic == "customers/create":
            data, at = {}, body["created_at"].datetime()
        else:
            data, at = _order(body, topic)
        triggered = delivery.header("X-Shopify-Triggered-At")
        if at is None and triggered:
            at = J(triggered, "X-Shopify-Triggered-At").datetime()
        base = event_base(self.name, self.delivery_id(delivery), delivery.body)
        return [make_event(base, type_, _who(body, topic), data, source=self.name, occurred_at=at, test=test)]


def _who(body: J, topic: str) -> Any:
    customer = body if topic == "customers/create" else body["customer"]
    billing = body["billing_address"]
    cid = customer["id"].str()
    return contact(
        emails=[customer["email"], body["email"], body["contact_email"]],
        phones=[customer["phone"], body["phone"], billing["phone"], body["shipping_address"]["phone"]],
        external_id=f"shopify:{cid}" if cid else None,
        first_name=customer["first_name"] if customer["first_name"] else billing["first_name"],
        last_name=customer["last_name"] if customer["last_name"] else billing["last_name"],
    )


def _products(body: J) -> list[dict[str, Any]]:
    return [
        product(
            product_id=li["product_id"],
            variant_id=li["variant_id"],
            name=li["name"] if li["name"] else li["title"],
            quantity=li["quantity"],
            price=li["price"].decimal(),
        )
        for li in body["line_items"].items()
    ]


def _order(body: J, topic: str) -> tuple[dict[str, Any], datetime | None]:
    codes = [c["code"].str() for c in body["discount_codes"].items()]
    data: dict[str, Any] = {
        "order_id": body["id"].required().str(),
        "total": body["total_price"].decimal(),
        "currency": currency(body["currency"]),
        "source": body["source_name"].str(),
    }
    if topic == "orders/cancelled":
        data["reason"] = body["cancel_reason"].str()
        at = body["cancelled_at"].datetime() or body["updated_at"].datetime()
    else:
        data["products"] = _products(body)
        data["coupon"] = next((c for c in codes if c), None)
        data["checkout_id"] = body["checkout_token"].str()  # an order for a checkout ends its abandonment
        at = body["processed_at"].datetime() or body["updated_at"].datetime()
    return data, at


def _refund(body: J) -> tuple[dict[str, Any], datetime | None]:
    refunded = Decimal(0)
    code: str | None = None
    for tx in body["transactions"].items():
        if tx["kind"].str() in (None, "refund") and tx["status"].str() in (None, "success"):
            refunded += tx["amount"].decimal() or 0
            code = code or currency(tx["currency"])
    if not refunded:  # no transactions (a refund without money moved): the refunded lines' subtotals
        for line in body["refund_line_items"].items():
            money = line["subtotal_set"]["shop_money"]
            refunded += money["amount"].decimal() or line["subtotal"].decimal() or 0
            code = code or currency(money["currency_code"])
    data = {"order_id": body["order_id"].required().str(), "amount_refunded": refunded, "currency": code}
    return data, body["processed_at"].datetime() or body["created_at"].datetime()


def _checkout(body: J) -> tuple[dict[str, Any], datetime | None]:
    data = {
        "checkout_id": body["token"].required().str(),
        "cart_value": body["total_price"].decimal(),
        "currency": currency(body["currency"]),
        "products": _products(body),
        "url": body["abandoned_checkout_url"].str(),
    }
    return data, body["updated_at"].datetime() or body["created_at"].datetime()
