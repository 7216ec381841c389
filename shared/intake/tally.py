"""Tally: `Tally-Signature: <base64 HMAC-SHA256 of the raw body>`; fields keyed by their label."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.events import ContactEvent
from shared.intake.base import Delivery, MalformedDelivery, SignatureRejected
from shared.intake.common import J, b64, event_base, hmac_sha256, parse_json, required_header, root, same
from shared.intake.forms import form_event, looks_like

HEADER = "Tally-Signature"


class Tally:
    name = "tally"
    signed = True
    signature_header = HEADER

    def verify(self, delivery: Delivery, secret: str) -> None:
        given = required_header(delivery, HEADER)
        if not same(given, b64(hmac_sha256(secret, delivery.body))):
            raise SignatureRejected(f"{HEADER} does not match the body (wrong secret or altered body)", field=HEADER)

    def sign(self, body: bytes, secret: str, now: datetime) -> dict[str, str]:
        return {HEADER.lower(): b64(hmac_sha256(secret, body))}

    def delivery_id(self, delivery: Delivery) -> str:
        try:
            value = parse_json(delivery.body)
        except MalformedDelivery:
            return ""
        event_id = value.get("eventId") if isinstance(value, dict) else None
        return event_id.strip() if isinstance(event_id, str) else ""

    def normalise(self, delivery: Delivery) -> list[ContactEvent]:
        body = root(delivery)
        if body["eventType"].req_str() != "FORM_RESPONSE":
            return []
        d = body["data"].required()
        fields: dict[str, Any] = {}
        emails: list[J | str | None] = []
        phones: list[J | str | None] = []
        first = last = None
        for f in d["fields"].items():
            kind = f["type"].str() or ""
            label = f["label"].str() or f["key"].str() or "?"
            value = _value(f)
            fields[label] = value
            if kind == "INPUT_EMAIL":
                emails.append(f["value"])
            elif kind == "INPUT_PHONE_NUMBER":
                phones.append(f["value"])
            elif kind == "INPUT_TEXT" and looks_like(label, "first name"):
                first = f["value"]
            elif kind == "INPUT_TEXT" and looks_like(label, "last name", "surname"):
                last = f["value"]
        return form_event(
            event_base(self.name, self.delivery_id(delivery), delivery.body),
            provider=self.name,
            form_id=d["formId"].str(),
            form=d["formName"].str(),
            fields=fields,
            emails=emails,
            phones=phones,
            first_name=first,
            last_name=last,
            occurred_at=d["createdAt"].datetime() or body["createdAt"].datetime(),
        )


def _value(f: J) -> Any:
    v = f["value"]
    options = {o["id"].str(): o["text"].str() for o in f["options"].items()}
    if isinstance(v.v, list):
        # Choices arrive as option ids; the option texts are what a condition compares.
        return [options.get(x.str(), x.str()) if isinstance(x.v, str) else x.v for x in v.items()]
    if isinstance(v.v, dict | bool) or v.v is None:
        return v.v
    return v.decimal() if not isinstance(v.v, str) else options.get(v.v, v.v)
