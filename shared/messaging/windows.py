"""Send windows: the hours of the contact's own day in which a message may go out, and when the next one opens."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_BETWEEN = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")
WINDOW_FIELDS = ("between", "timezone")


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError naming it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone name (IANA, e.g. Europe/Rome, America/New_York)") from None


def contact_zone(contact_timezone: str | None, fallback: str) -> ZoneInfo:
    """The contact's own zone when it has a valid one, else `fallback` (a contact's zone comes from outside data:
    a bad one must not stop a send)."""
    if contact_timezone:
        try:
            return zone(contact_timezone)
        except ValueError:
            pass
    return zone(fallback)


def check_between(v: str) -> str:
    """`v` as a window of local hours ("09:00-20:00", spaces dropped); ValueError saying why not."""
    m = _BETWEEN.match(v.replace(" ", ""))
    if not m:
        raise ValueError(f'{v!r} is not a window of local hours like "09:00-20:00"')
    start, end = (int(m.group(1)), int(m.group(2))), (int(m.group(3)), int(m.group(4)))
    if start == end or end > (24, 0):
        raise ValueError(f"{v!r}: the window must start and end at different times, at most 24:00")
    return v.replace(" ", "")


def check_zone(v: str) -> str:
    zone(v)
    return v


class WindowHours:
    """What a send window answers, read from its `between` and `timezone`: shared by the run-time form below and
    the authoring model (shared/messaging/authoring.py), so the two cannot drift."""

    __slots__ = ()
    if TYPE_CHECKING:
        between: str
        timezone: str

    @property
    def start(self) -> time:
        h, m = self.between.split("-")[0].split(":")
        return time(int(h), int(m))

    @property
    def end(self) -> time | None:
        """None for 24:00 (the end of the day)."""
        h, m = self.between.split("-")[1].split(":")
        return None if int(h) == 24 else time(int(h), int(m))

    def contains(self, local: time) -> bool:
        start, end = self.start, self.end
        if end is None:
            return local >= start
        if start < end:
            return start <= local < end
        return local >= start or local < end  # wraps midnight, e.g. 22:00-06:00

    def next_open(self, now: datetime, contact_timezone: str | None = None) -> datetime | None:
        """None when `now` is inside the window for the contact; else the UTC instant it next opens. Wall-clock
        arithmetic in the contact's zone, so 09:00 is 09:00 local on both sides of a DST change."""
        tz = contact_zone(contact_timezone, self.timezone)
        local = now.astimezone(tz)
        if self.contains(local.time().replace(tzinfo=None)):
            return None
        day = local.date() if local.time().replace(tzinfo=None) < self.start else local.date() + timedelta(days=1)
        return open_at(day, self.start, tz)

    def describe(self) -> str:
        return f"{self.between} contact-local (fallback {self.timezone})"


class SendWindow(WindowHours):
    """`between: "09:00-20:00"` local time of the contact (contact.timezone, else `timezone`). The run-time form
    (a plain frozen slotted class: the step runner's import loads no pydantic), checked as the authoring model
    checks it; ValueError naming the field."""

    __slots__ = WINDOW_FIELDS

    def __init__(self, *, between: str, timezone: str = "UTC") -> None:
        for name, value in (("between", between), ("timezone", timezone)):
            if not isinstance(value, str):
                raise ValueError(f"send_window.{name}: {value!r} is not text")
        try:
            between = check_between(between)
        except ValueError as err:
            raise ValueError(f"send_window.between: {err}") from None
        try:
            check_zone(timezone)
        except ValueError as err:
            raise ValueError(f"send_window.timezone: {err}") from None
        object.__setattr__(self, "between", between)
        object.__setattr__(self, "timezone", timezone)

    @classmethod
    def model_validate(cls, v: object) -> SendWindow:
        """A window from what a workflow or the deployment writes: "HH:MM-HH:MM", {between, timezone} or a
        window (the authoring model's too)."""
        if isinstance(v, SendWindow):
            return v
        if isinstance(v, WindowHours):
            return cls(between=v.between, timezone=v.timezone)
        if isinstance(v, str):
            return cls(between=v)
        if not isinstance(v, dict):
            raise ValueError(f"send_window: {v!r} is not a window of local hours")
        extra = sorted(str(k) for k in v if k not in WINDOW_FIELDS)
        if extra:
            raise ValueError(f"send_window.{extra[0]}: not a field of a send window (between, timezone)")
        if "between" not in v:
            raise ValueError("send_window.between: missing")
        return cls(**v)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a send window is frozen: cannot set {name}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WindowHours) and (self.between, self.timezone) == (other.between, other.timezone)

    def __hash__(self) -> int:
        return hash((self.between, self.timezone))

    def __repr__(self) -> str:
        return f"SendWindow(between={self.between!r}, timezone={self.timezone!r})"

    def model_dump(self, **_: object) -> dict[str, str]:
        return {"between": self.between, "timezone": self.timezone}


def open_at(day: date, at: time, tz: ZoneInfo) -> datetime:
    """`at` on local `day` in `tz`, as UTC. A wall time a spring-forward gap skips (02:30 on the night clocks go
    forward) is the instant after the gap, not an hour early."""
    wall = datetime.combine(day, at).replace(tzinfo=tz)
    utc = wall.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) != wall.replace(tzinfo=None):
        utc = wall.replace(fold=1).astimezone(UTC)  # inside the gap: fold=1 reads it with the offset after
    return utc


def next_local_midnight(now: datetime, tz: ZoneInfo) -> datetime:
    """The start of the contact's next calendar day, as UTC."""
    return open_at(now.astimezone(tz).date() + timedelta(days=1), time(0, 0), tz)


def iso_z(dt: datetime) -> str:
    """A UTC instant as Step Functions' TimestampPath wants it: 2026-10-26T08:00:00Z (whole seconds, rounded up,
    so a Wait never ends before the window opens)."""
    utc = dt.astimezone(UTC)
    if utc.microsecond:
        utc = utc.replace(microsecond=0) + timedelta(seconds=1)
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
