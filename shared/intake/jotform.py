"""Jotform: an unsigned multipart/form-data POST (accepted only on the secret path token); the answers are the JSON
of its rawRequest part, keyed q<N>_<name>."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from shared.events import ContactEvent
from shared.intake.base import Delivery, MalformedDelivery
from shared.intake.common import J, event_base
from shared.intake.forms import form_event, looks_like

_QUESTION = re.compile(r"^q\d+_(.+)$")
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_NAME = re.compile(rb'name="([^"]*)"')


class Jotform:
    name = "jotform"
    signed = False

    def verify(self, delivery: Delivery, secret: str) -> None:
        """Jotform cannot sign: the pipeline checks the path token instead."""

    def delivery_id(self, delivery: Delivery) -> str:
        try:
            return (form_parts(delivery).get("submissionID") or "").strip()
        except MalformedDelivery:
            return ""

    def normalise(self, delivery: Delivery) -> list[ContactEvent]:
        parts = form_parts(delivery)
        raw = parts.get("rawRequest")
        if not raw:
            raise MalformedDelivery("rawRequest is missing", field="rawRequest")
        try:
            answers = json.loads(raw, parse_float=Decimal)
        except (ValueError, RecursionError):
            raise MalformedDelivery("rawRequest is not JSON", field="rawRequest") from None
        if not isinstance(answers, dict):
            raise MalformedDelivery("rawRequest must be a JSON object", field="rawRequest")
        fields: dict[str, Any] = {}
        emails: list[J | str | None] = []
        phones: list[J | str | None] = []
        first = last = None
        for key, value in answers.items():
            m = _QUESTION.match(key)
            if not m:
                continue  # the form's own bookkeeping (slug, buildDate, temp_upload...)
            label = m.group(1)
            fields[label] = value
            j = J(value, f"rawRequest.{key}")
            if looks_like(label, "email"):
                emails.append(j if isinstance(value, str) else None)
            elif looks_like(label, "phone", "mobile"):
                phones.append(j["full"] if isinstance(value, dict) else j if isinstance(value, str) else None)
            elif isinstance(value, dict) and "first" in value:  # a full-name field: {"first", "last"}
                first, last = j["first"], j["last"]
        return form_event(
            event_base(self.name, self.delivery_id(delivery), delivery.body),
            provider=self.name,
            form_id=parts.get("formID") or None,
            form=parts.get("formTitle") or None,
            fields=fields,
            emails=emails,
            phones=phones,
            first_name=first,
            last_name=last,
            occurred_at=None,  # Jotform sends no submission time: the router dates it on arrival
        )


def form_parts(delivery: Delivery) -> dict[str, str]:
    """The text fields of a multipart/form-data or urlencoded body (files are not expected)."""
    ctype = delivery.header("content-type") or ""
    try:
        text_body = delivery.body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedDelivery("body is not UTF-8", field="body") from None
    if "urlencoded" in ctype.lower():
        return {k: v[0] for k, v in parse_qs(text_body, keep_blank_values=True).items()}
    m = _BOUNDARY.search(ctype)
    if m:
        boundary = m.group(1).strip()
    else:  # no Content-Type (a saved fixture): the first line is the delimiter
        first = text_body.lstrip("\r\n").split("\n", 1)[0].rstrip("\r")
        if not first.startswith("--") or len(first) < 3:
            raise MalformedDelivery("body is not multipart/form-data", field="content-type")
        boundary = first[2:]
    out: dict[str, str] = {}
    for chunk in text_body.split("--" + boundary)[1:]:
        if chunk.startswith("--"):
            break
        blank = "\r\n\r\n" if "\r\n\r\n" in chunk else "\n\n"
        head, sep, value = chunk.lstrip("\r\n").partition(blank)
        if not sep:
            continue
        name = _NAME.search(head.encode())
        if name:
            out[name.group(1).decode()] = value.rstrip("\r\n")
    if not out:
        raise MalformedDelivery("body has no form fields", field="body")
    return out
