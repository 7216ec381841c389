"""Typeform: `Typeform-Signature: sha256=<base64 HMAC-SHA256 of the raw body>`; answers keyed by question title."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.events import ContactEvent
from shared.intake.base import Delivery, MalformedDelivery, SignatureRejected
from shared.intake.common import J, b64, event_base, hmac_sha256, parse_json, required_header, root, same
from shared.intake.forms import form_event, looks_like

HEADER = "Typeform-Signature"


class Typeform:
    name = "typeform"
    signed = True
    signature_header = HEADER

    def verify(self, delivery: Delivery, secret: str) -> None:
        given = required_header(delivery, HEADER)
        if not same(given, "sha256=" + b64(hmac_sha256(secret, delivery.body))):
            raise SignatureRejected(f"{HEADER} does not match the body (wrong secret or altered body)", field=HEADER)

    def sign(self, body: bytes, secret: str, now: datetime) -> dict[str, str]:
        return {HEADER.lower(): "sha256=" + b64(hmac_sha256(secret, body))}

    def delivery_id(self, delivery: Delivery) -> str:
        try:
            value = parse_json(delivery.body)
        except MalformedDelivery:
            return ""
        event_id = value.get("event_id") if isinstance(value, dict) else None
        return event_id.strip() if isinstance(event_id, str) else ""

    def normalise(self, delivery: Delivery) -> list[ContactEvent]:
        body = root(delivery)
        if body["event_type"].req_str() != "form_response":
            return []  # form_response_partial: not a submission
        r = body["form_response"].required()
        definition = r["definition"]
        titles: dict[str, str] = {}
        for f in definition["fields"].items():
            fid, title = f["id"].str(), f["title"].str() or f["ref"].str()
            if fid and title:
                titles[fid] = title
        fields: dict[str, Any] = {}
        emails: list[J | str | None] = []
        phones: list[J | str | None] = []
        first: J | None = None
        for a in r["answers"].items():
            kind = a["type"].str()
            fid = a["field"]["id"].str() or a["field"]["ref"].str() or "?"
            label = titles.get(fid, fid)
            value = _answer(a, kind)
            fields[label] = value
            if kind == "email":
                emails.append(a["email"])
            elif kind == "phone_number":
                phones.append(a["phone_number"])
            elif kind == "text" and first is None and looks_like(label, "first name"):
                first = a["text"]
        hidden = r["hidden"]
        if isinstance(hidden.v, dict):
            emails.append(hidden["email"])
            fields.update({f"hidden.{k}": v for k, v in hidden.v.items() if isinstance(v, str)})
        form_id = r["form_id"].str() or definition["id"].str()
        return form_event(
            event_base(self.name, self.delivery_id(delivery), delivery.body),
            provider=self.name,
            form_id=form_id,
            form=definition["title"].str(),
            fields=fields,
            emails=emails,
            phones=phones,
            first_name=first,
            occurred_at=r["submitted_at"].datetime(),
        )


def _answer(a: J, kind: str | None) -> Any:
    if kind == "choice":
        return a["choice"]["label"].str() or a["choice"]["other"].str()
    if kind == "choices":
        labels = [x.str() for x in a["choices"]["labels"].items()]
        other = a["choices"]["other"].str()
        return [x for x in [*labels, other] if x]
    if kind == "payment":
        return a["payment"]["amount"].str()
    if kind in ("boolean",):
        return a["boolean"].bool()
    if kind == "number":
        return a["number"].decimal()
    if kind:
        value = a[kind].v
        return value if isinstance(value, str | int) and not isinstance(value, bool) else None
    return None
