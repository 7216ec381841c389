"""Webflow: x-webflow-signature, hex HMAC-SHA256 of "<x-webflow-timestamp ms>:<body>", 5 minutes' tolerance. Site
webhooks made in the dashboard are unsigned: those are accepted on the secret path token instead."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from shared.events import ContactEvent
from shared.intake.base import Delivery, MalformedDelivery, SignatureRejected
from shared.intake.common import (
    TOLERANCE_SECONDS,
    J,
    check_fresh,
    event_base,
    parse_json,
    required_header,
    root,
    same,
)
from shared.intake.forms import form_event, looks_like

HEADER = "x-webflow-signature"
TIMESTAMP = "x-webflow-timestamp"


def _hex(secret: str, ms: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), ms.encode() + b":" + body, hashlib.sha256).hexdigest()


class Webflow:
    name = "webflow"
    signed = True
    signature_header = HEADER
    path_token_fallback = True  # no signature header but a path token: an unsigned site webhook

    def verify(self, delivery: Delivery, secret: str) -> None:
        given = required_header(delivery, HEADER)
        ms = required_header(delivery, TIMESTAMP)
        if not (ms.isascii() and ms.isdigit() and len(ms) <= 15):
            raise SignatureRejected(f"{TIMESTAMP} is not a time in milliseconds", field=TIMESTAMP)
        if not same(given, _hex(secret, ms, delivery.body)):
            raise SignatureRejected(f"{HEADER} does not match the body (wrong secret or altered body)", field=HEADER)
        check_fresh(int(ms) / 1000, delivery, TIMESTAMP, TOLERANCE_SECONDS)

    def sign(self, body: bytes, secret: str, now: datetime) -> dict[str, str]:
        ms = str(int(now.timestamp() * 1000))
        return {HEADER: _hex(secret, ms, body), TIMESTAMP: ms}

    def delivery_id(self, delivery: Delivery) -> str:
        try:
            value = parse_json(delivery.body)
        except MalformedDelivery:
            return ""
        payload = value.get("payload") if isinstance(value, dict) else None
        sid = payload.get("id") if isinstance(payload, dict) else None
        return sid.strip() if isinstance(sid, str) else ""

    def normalise(self, delivery: Delivery) -> list[ContactEvent]:
        body = root(delivery)
        if body["triggerType"].req_str() != "form_submission":
            return []
        p = body["payload"].required()
        data = p["data"]
        data.obj()
        fields: dict[str, Any] = {}
        emails: list[J | str | None] = []
        phones: list[J | str | None] = []
        first = last = None
        for label in list(data.v or {})[:500]:
            value = data[label]
            fields[label] = value.v
            if looks_like(label, "email", "e mail"):
                emails.append(value)
            elif looks_like(label, "phone", "mobile", "tel"):
                phones.append(_phone(value))
            elif looks_like(label, "first name"):
                first = value
            elif looks_like(label, "last name", "surname"):
                last = value
        return form_event(
            event_base(self.name, self.delivery_id(delivery), delivery.body),
            provider=self.name,
            form_id=p["formId"].str(),
            form=p["name"].str(),
            fields=fields,
            emails=emails,
            phones=phones,
            first_name=first,
            last_name=last,
            occurred_at=p["submittedAt"].datetime(),
        )


def _phone(value: J) -> str | None:
    # Webflow sends a number field as a JSON number (15550000000): it cannot carry the "+", but its digits are
    # the international number when they are long enough to hold a country code.
    if isinstance(value.v, int) and not isinstance(value.v, bool):
        return f"+{value.v}" if value.v > 0 else None
    return value.text()
