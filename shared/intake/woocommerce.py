"""WooCommerce: base64 HMAC-SHA256 of the raw body with the HTML-entity-decoded secret; the order's status says what
happened (there is no paid, cancelled or refunded topic: every change is order.updated)."""

from __future__ import annotations

import html
import re
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
    hmac_sha256,
    make_event,
    parse_json,
    product,
    required_header,
    root,
    same,
)

HEADER = "X-WC-Webhook-Signature"
TOPIC_HEADER = "X-WC-Webhook-Topic"
_PING = re.compile(rb"^webhook_id=\d{1,20}$")

# Order status -> event type. pending (awaiting payment) and on-hold (awaiting a bank transfer) are checkouts under
# way: checkout.started keyed by the order key, so an unpaid order can be followed up as an abandoned checkout and
# the later processing/completed status (order.paid with the same checkout_id) ends that.
STATUSES = {
    "processing": "order.paid",
    "completed": "order.paid",
    "cancelled": "order.cancelled",
    "refunded": "order.refunded",
    "pending": "checkout.started",
    "on-hold": "checkout.started",
}


def _key(secret: str) -> str:
    return html.unescape(secret)  # PHP wp_specialchars_decode(secret, ENT_QUOTES): a&amp;b signs with a&b


class WooCommerce:
    name = "woocommerce"
    signed = True
    signature_header = HEADER

    def verify(self, delivery: Delivery, secret: str) -> None:
        if _is_ping(delivery):
            return  # the unsigned ping WooCommerce sends when a webhook is saved: answered 200, does nothing
        given = required_header(delivery, HEADER)
        if not same(given, b64(hmac_sha256(_key(secret), delivery.body))):
            raise SignatureRejected(f"{HEADER} does not match the body (wrong secret or altered body)", field=HEADER)

    def sign(self, body: bytes, secret: str, now: datetime) -> dict[str, str]:
        return {HEADER.lower(): b64(hmac_sha256(_key(secret), body))}

    def delivery_id(self, delivery: Delivery) -> str:
        # X-WC-Webhook-Delivery-ID is new on every attempt: the stable id is the resource, the topic and the time
        # the resource last changed.
        topic = (delivery.header(TOPIC_HEADER) or "").strip()
        try:
            value = parse_json(delivery.body)
        except MalformedDelivery:
            return ""
        if not topic or not isinstance(value, dict):
            return ""
        rid, modified = value.get("id"), value.get("date_modified_gmt") or value.get("date_modified")
        if isinstance(rid, bool) or not isinstance(rid, int | str) or not isinstance(modified, str):
            return ""
        return f"{topic}:{rid}:{modified}"

    def normalise(self, delivery: Delivery) -> list[ContactEvent]:
        if _is_ping(delivery):
            return []
        topic = (delivery.header(TOPIC_HEADER) or "").strip()
        if not topic:
            raise MalformedDelivery(f"{TOPIC_HEADER} header is missing", field=TOPIC_HEADER)
        if topic not in ("order.created", "order.updated"):
            return []
        body = root(delivery)
        type_ = STATUSES.get(body["status"].str() or "")
        if type_ is None:
            return []
        billing = body["billing"]
        cid = body["customer_id"].str()
        who = contact(
            emails=[billing["email"]],
            phones=[billing["phone"], body["shipping"]["phone"]],
            external_id=f"woocommerce:{cid}" if cid and cid != "0" else None,  # 0: a guest order
            first_name=billing["first_name"],
            last_name=billing["last_name"],
        )
        code = currency(body["currency"])
        order_id = body["id"].required().str()
        data: dict[str, Any]
        if type_ == "checkout.started":
            data = {
                "checkout_id": body["order_key"].str() or order_id,
                "cart_value": body["total"].decimal(),
                "currency": code,
                "products": _products(body),
                "url": body["payment_url"].str(),
            }
        else:
            data = {"order_id": order_id, "total": body["total"].decimal(), "currency": code}
            data["source"] = body["created_via"].str()
            if type_ == "order.paid":
                data["products"] = _products(body)
                data["coupon"] = next((c["code"].str() for c in body["coupon_lines"].items()), None)
                data["checkout_id"] = body["order_key"].str()
            elif type_ == "order.refunded":
                refunds = [abs(r["total"].decimal() or Decimal(0)) for r in body["refunds"].items()]
                data["amount_refunded"] = sum(refunds, Decimal(0)) if refunds else data["total"]  # all of it
        at = _gmt(body, "date_modified_gmt") or _gmt(body, "date_created_gmt")
        # processing then completed are both "paid": one id per order and type, so the second changes nothing.
        base = f"{self.name}:order:{order_id}:{type_}"
        return [make_event(base, type_, who, data, source=self.name, occurred_at=at, test=False)]


def _is_ping(delivery: Delivery) -> bool:
    return delivery.header(TOPIC_HEADER) is None and bool(_PING.match(delivery.body.strip()))


def _gmt(body: J, key: str) -> datetime | None:
    return body[key].datetime(naive_is_utc=True)  # the *_gmt twins are UTC without an offset


def _products(body: J) -> list[dict[str, Any]]:
    out = []
    for li in body["line_items"].items():
        item = product(
            product_id=li["product_id"],
            variant_id=li["variation_id"],
            name=li["name"],
            quantity=li["quantity"],
            price=li["price"].decimal(),
        )
        if "name" in item:
            item["name"] = html.unescape(item["name"])  # stored HTML-escaped: "Ship Your Idea &ndash; Color..."
        out.append(item)
    return out
