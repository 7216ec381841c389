"""Frequency caps across workflows: at most N marketing messages per channel per contact per calendar day.

The count is one counter item per contact, channel and local day, incremented in the send step's own transaction
under the condition `count < cap`: two sends racing for the last slot cannot both commit."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared import constants as C
from shared.messaging.windows import check_zone, contact_zone, next_local_midnight

CAP_PREFIX = "CAP#"
COUNT = "count"
CAPPED_CHANNELS = ("email", "sms")
CAP_FIELDS = (*CAPPED_CHANNELS, "timezone")
FREQUENCY_CAP_LIMITS = (1, 100)  # a channel's cap, inclusive


class CapRules:
    """What a frequency cap answers: shared by the run-time form below and the authoring model
    (shared/messaging/authoring.py)."""

    __slots__ = ()
    if TYPE_CHECKING:
        timezone: str

    def limit(self, channel: str) -> int | None:
        return getattr(self, channel, None) if channel in CAPPED_CHANNELS else None


class FrequencyCap(CapRules):
    """`frequency_cap: {email: 2, sms: 1}`: marketing sends per contact per calendar day in the contact's zone
    (`timezone` when the contact has none). A channel left out is not capped; transactional sends never count.
    The run-time form (plain, frozen, slotted: no pydantic on the step runner's import), checked as the authoring
    model checks it; ValueError naming the field."""

    __slots__ = CAP_FIELDS
    email: int | None
    sms: int | None
    timezone: str

    def __init__(self, *, email: int | None = None, sms: int | None = None, timezone: str = "UTC") -> None:
        low, high = FREQUENCY_CAP_LIMITS
        for channel, n in (("email", email), ("sms", sms)):
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not low <= n <= high):
                raise ValueError(f"frequency_cap.{channel}: {n!r} is not a whole number from {low} to {high}")
        if not isinstance(timezone, str):
            raise ValueError(f"frequency_cap.timezone: {timezone!r} is not text")
        try:
            check_zone(timezone)
        except ValueError as err:
            raise ValueError(f"frequency_cap.timezone: {err}") from None
        object.__setattr__(self, "email", email)
        object.__setattr__(self, "sms", sms)
        object.__setattr__(self, "timezone", timezone)

    @classmethod
    def model_validate(cls, v: object) -> FrequencyCap:
        """A cap from the deployment's settings as the compiler dumped them ({email, sms, timezone}), or a cap."""
        if isinstance(v, FrequencyCap):
            return v
        if isinstance(v, CapRules):
            return cls(email=getattr(v, "email", None), sms=getattr(v, "sms", None), timezone=v.timezone)
        if not isinstance(v, dict):
            raise ValueError(f"frequency_cap: {v!r} is not a mapping of channels to daily caps")
        extra = sorted(str(k) for k in v if k not in CAP_FIELDS)
        if extra:
            raise ValueError(f"frequency_cap.{extra[0]}: not a field of a frequency cap (email, sms, timezone)")
        return cls(**v)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a frequency cap is frozen: cannot set {name}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CapRules) and all(getattr(self, f) == getattr(other, f, None) for f in CAP_FIELDS)

    def __hash__(self) -> int:
        return hash((self.email, self.sms, self.timezone))

    def __repr__(self) -> str:
        return f"FrequencyCap(email={self.email!r}, sms={self.sms!r}, timezone={self.timezone!r})"


def cap_day(now: datetime, contact_timezone: str | None, cap: CapRules) -> str:
    """The contact's local calendar day the send counts against (YYYY-MM-DD)."""
    return now.astimezone(contact_zone(contact_timezone, cap.timezone)).date().isoformat()


def cap_key(channel: str, day: str) -> str:
    return f"{CAP_PREFIX}{channel}#{day}"


def next_day(now: datetime, contact_timezone: str | None, cap: CapRules) -> datetime:
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
