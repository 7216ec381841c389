"""The message the intake puts on the router's queue for one accepted delivery, and its JSON (exact Decimals)."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared.events import ContactEvent


def _plain(value: Any) -> Any:
    # Money stays a JSON number (read back as Decimal with parse_float), never a string a condition cannot compare.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_plain, sort_keys=True)


def loads(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal)


def event_json(event: ContactEvent) -> dict[str, Any]:
    """The event as JSON-ready values, Decimals kept as numbers (model_dump(mode="json") makes them strings)."""
    return loads(dumps(event.model_dump(mode="python", exclude_none=True)))  # type: ignore[no-any-return]


class AcceptedDelivery(BaseModel):
    """One SQS message: everything the router needs, and where the raw delivery is kept."""

    model_config = ConfigDict(extra="forbid")

    dedupe_key: str
    archive_key: str
    provider: str
    verified: bool
    test: bool
    events: list[ContactEvent] | None  # None: too large for SQS, read them from the archived delivery

    @classmethod
    def parse(cls, body: str) -> AcceptedDelivery:
        return cls.model_validate(loads(body))
