"""Frequency caps across workflows: at most N marketing messages per channel per contact per calendar day.

The count is one counter item per contact, channel and local day, incremented in the send step's own transaction
under the condition `count < cap`: two sends racing for the last slot cannot both commit."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared import constants as C
from shared.messaging.windows import contact_zone, next_local_midnight, zone

CAP_PREFIX = "CAP#"
COUNT = "count"
CAPPED_CHANNELS = ("email", "sms")


class FrequencyCap(BaseModel):
    """`frequency_cap: {email: 2, sms: 1}`: marketing sends per contact per calendar day in the contact's zone
    (`timezone` when the contact has none). A channel left out is not capped; transactional sends never count."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: int | None = Field(default=None, ge=1, le=100)
    sms: int | None = Field(default=None, ge=1, le=100)
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        zone(v)
        return v

    def limit(self, channel: str) -> int | None:
        return getattr(self, channel, None) if channel in CAPPED_CHANNELS else None


def cap_day(now: datetime, contact_timezone: str | None, cap: FrequencyCap) -> str:
    """The contact's local calendar day the send counts against (YYYY-MM-DD)."""
    return now.astimezone(contact_zone(contact_timezone, cap.timezone)).date().isoformat()


def cap_key(channel: str, day: str) -> str:
    return f"{CAP_PREFIX}{channel}#{day}"


def next_day(now: datetime, contact_timezone: str | None, cap: FrequencyCap) -> datetime:
    """When a send over today's cap may try again: the start of the contact's next day (UTC)."""
    return next_local_midnight(now, contact_zone(contact_timezone, cap.timezone))


def counter_write(store: Any, pk: str, channel: str, day: str, limit: int, now: datetime) -> dict[str, Any]:
    """The transaction write counting one send: ADD 1 when under `limit` (the write fails the transaction at the
    limit). The item expires two days after its day, so counters never pile up."""
    write: dict[str, Any] = store.add(pk, cap_key(channel, day), {COUNT: 1}, {C.TTL_ATTRIBUTE: _expiry(day)})
    update = write["Update"]
    update["ConditionExpression"] = "attribute_not_exists(#c0) OR #c0 < :cap"
    update["ExpressionAttributeValues"][":cap"] = {"N": str(limit)}
    return write


def at_limit(store: Any, pk: str, channel: str, day: str, limit: int) -> bool:
    """Whether the day's counter has reached `limit` (read only after a transaction failed, to tell why)."""
    item = store.get_item(pk, cap_key(channel, day))
    return item is not None and int(item.get(COUNT, 0)) >= limit


def _expiry(day: str) -> int:
    return int((datetime.fromisoformat(day + "T00:00:00+00:00") + timedelta(days=3)).timestamp())
