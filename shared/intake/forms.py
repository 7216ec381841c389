"""What the form providers (Typeform, Tally, Webflow, Jotform) share: answers by label into one form.submitted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.events import ContactEvent
from shared.intake.common import J, contact, make_event

MAX_FIELDS = 200  # a form's answers kept on the event (DynamoDB items stop at 400 KB)


def looks_like(label: str, *words: str) -> bool:
    low = label.lower().replace("-", "").replace("_", " ")
    return any(w in low for w in words)


def form_event(
    base: str,
    *,
    provider: str,
    form_id: str | None,
    form: str | None,
    fields: dict[str, Any],
    emails: list[J | str | None],
    phones: list[J | str | None],
    first_name: J | None = None,
    last_name: J | None = None,
    occurred_at: datetime | None,
    page: str | None = None,
    test: bool = False,
) -> list[ContactEvent]:
    who = contact(emails=emails, phones=phones, first_name=first_name, last_name=last_name)
    kept = dict(list(fields.items())[:MAX_FIELDS])
    data = {"form": form or form_id, "form_id": form_id, "form_type": provider, "page": page, "fields": kept}
    return [make_event(base, "form.submitted", who, data, source=provider, occurred_at=occurred_at, test=test)]
