"""The normalised contact event every source is turned into, and the catalogue of known event types, phone
normalisation and stable hashes (from shared.events_base, re-exported).

Plain slotted classes, not pydantic models: the router reads every event off the queue into them, and pydantic
(~100 ms with its first models) stayed off the Lambdas' import (cold start, issue 11 item 9). Their validation is
pydantic's as the models had it, in the same words, since POST /events and the queue hand them untrusted JSON:
`ContactEvent.model_validate(value)` (and the constructor, with keywords) checks each field's kind, refuses keys
it does not know, coerces as pydantic's lax mode did (an ISO or Unix time, "yes" for true, an integer external id
as text) and raises EventError, whose `errors()` lists {loc, msg, type} like a pydantic ValidationError's, the
first naming the field (`contact.email`). `model_copy`, `model_dump` and `==` behave as the models' did."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

# Re-exported: the catalogue, phone normalisation and stable hashes live in events_base.
from shared.events_base import CATALOGUE as CATALOGUE
from shared.events_base import normalise_phone as normalise_phone
from shared.events_base import stable_hash as stable_hash

TYPE_PATTERN = r"^[a-z_]+\.[a-z_]+$"
_TYPE = re.compile(TYPE_PATTERN)
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_MS_FROM = 2e10  # pydantic's rule: a Unix time above this is in milliseconds
_MISSING: Any = object()  # a required field model_validate was not given


class EventError(ValueError):
    """An event or contact that is not valid. `errors()` as pydantic's ValidationError gives them: the first names
    the field (`loc`, a path such as ("contact", "email")), what is wrong (`msg`) and the kind (`type`)."""

    def __init__(self, loc: tuple[str | int, ...], msg: str, kind: str = "value_error", title: str = "") -> None:
        self.loc, self.msg, self.kind, self.title = loc, msg, kind, title or "ContactEvent"
        # Worded as pydantic's ValidationError was (without the input: it may be personal data).
        where = ".".join(str(p) for p in loc)
        super().__init__(
            f"1 validation error for {self.title}\n{where + chr(10) if where else ''}  {msg} [type={kind}]"
        )

    def errors(self) -> list[dict[str, Any]]:
        return [{"loc": self.loc, "msg": self.msg, "type": self.kind}]

    def within(self, *outer: str | int, title: str = "") -> EventError:
        return EventError((*outer, *self.loc), self.msg, self.kind, title or self.title)


def _value_error(loc: tuple[str | int, ...], err: ValueError) -> EventError:
    return EventError(loc, f"Value error, {err}")


def text_value(loc: tuple[str | int, ...], v: Any, *, optional: bool = True) -> str | None:
    if v is None and optional:
        return None
    if not isinstance(v, str):
        raise EventError(loc, "Input should be a valid string", "string_type")
    return v


def mapping_value(loc: tuple[str | int, ...], v: Any) -> dict[str, Any]:
    if not isinstance(v, Mapping):
        raise EventError(loc, "Input should be a valid dictionary", "dict_type")
    for k in v:
        if not isinstance(k, str):
            raise EventError((*loc, k, "[key]"), "Input should be a valid string", "string_type")
    return dict(v)


def bool_value(loc: tuple[str | int, ...], v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float | Decimal) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s in _TRUE or s in _FALSE:
            return s in _TRUE
    if isinstance(v, int | float | Decimal | str):
        raise EventError(loc, "Input should be a valid boolean, unable to interpret input", "bool_parsing")
    raise EventError(loc, "Input should be a valid boolean", "bool_type")


def time_value(loc: tuple[str | int, ...], v: Any) -> datetime | None:
    """An aware datetime from a datetime, an ISO 8601 text or a Unix time (seconds, or milliseconds above 2e10)."""
    if v is None:
        return None
    at: datetime
    if isinstance(v, datetime):
        at = v
    elif (isinstance(v, int | float | Decimal) and not isinstance(v, bool)) or (
        isinstance(v, str) and _NUMBER.match(v)
    ):
        seconds = float(v)
        at = datetime.fromtimestamp(seconds / 1000 if abs(seconds) > _MS_FROM else seconds, UTC)
    elif isinstance(v, str):
        try:
            at = datetime.fromisoformat(v.strip())
        except ValueError:
            raise EventError(loc, "Input should be a valid datetime or date", "datetime_parsing") from None
    else:
        raise EventError(loc, "Input should be a valid datetime", "datetime_type")
    if at.tzinfo is None:
        # A naive time cannot be placed: compared later with the aware clock (did_event ... within) it fails the run.
        raise EventError(loc, "Value error, needs a time zone, e.g. 2026-12-01T09:00:00Z or 2026-12-01T10:00:00+01:00")
    return at


def _known(cls: type, value: Any, name: str) -> dict[str, Any]:
    """`value`'s fields of `cls`, after the checks pydantic made first (a mapping; no field None that may not be)."""
    if not isinstance(value, Mapping):
        raise EventError((), f"Input should be a valid dictionary or instance of {name}", "model_type")
    slots: tuple[str, ...] = cls.__slots__  # type: ignore[attr-defined]
    return {k: v for k, v in value.items() if k in slots}


def _extra(cls: type, value: Mapping[str, Any]) -> None:
    """Keys that are no field: reported after the fields' own errors, as pydantic did."""
    for key in value:
        if key not in cls.__slots__:  # type: ignore[attr-defined]
            raise EventError((key,), "Extra inputs are not permitted", "extra_forbidden")


def _required(loc: str, v: Any) -> Any:
    if v is _MISSING:
        raise EventError((loc,), "Field required", "missing")
    return v


def _json(v: Any) -> Any:
    """What pydantic's mode="json" made of a value: times ISO (UTC as Z), Decimals text, sets lists."""
    if isinstance(v, dict):
        return {k: _json(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset):
        return [_json(x) for x in v]
    if isinstance(v, datetime):
        text = v.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(v, Decimal):
        return str(v)
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


class _Plain:
    """Frozen slots, equality by value, pydantic's `model_copy` / `model_dump` / `model_validate`."""

    __slots__: tuple[str, ...] = ()
    _fields: ClassVar[tuple[str, ...]] = ()  # the fields in the models' order (dumps, repr)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: use model_copy(update=...)")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, n) == getattr(other, n) for n in self._fields)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self._fields)})"

    def __setstate__(self, state: Any) -> None:  # copy, deepcopy and pickle restore the slots through this
        self._set(**(state[1] if isinstance(state, tuple) else state))

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def model_dump(self, *, mode: str = "python", exclude_none: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self._fields:
            v = getattr(self, name)
            if v is None and exclude_none:
                continue
            if isinstance(v, _Plain):
                out[name] = v.model_dump(mode=mode, exclude_none=exclude_none)
            else:
                out[name] = _json(v) if mode == "json" else (dict(v) if isinstance(v, dict) else v)
        return out

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Any:
        """A copy with `update`'s fields replaced, not validated again (as pydantic's model_copy)."""
        new = object.__new__(type(self))
        for name in self._fields:
            object.__setattr__(new, name, getattr(self, name))
        for name, value in (update or {}).items():
            if name not in self._fields:
                raise AttributeError(f"{type(self).__name__} has no field {name!r}")
            object.__setattr__(new, name, value)
        return new


class ContactRef(_Plain):
    """Who the event is about: at least one identity."""

    __slots__ = ("contact_id", "email", "external_id", "fields", "first_name", "last_name", "phone", "timezone")
    _fields = ("email", "phone", "external_id", "contact_id", "first_name", "last_name", "timezone", "fields")

    email: str | None
    phone: str | None
    external_id: str | None  # provider-scoped id, e.g. "shopify:7039294554217"
    contact_id: str | None
    first_name: str | None
    last_name: str | None
    timezone: str | None
    fields: dict[str, Any]

    def __init__(
        self,
        *,
        email: str | None = None,
        phone: str | None = None,
        external_id: str | int | None = None,
        contact_id: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        timezone: str | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        self._fill(email, phone, external_id, contact_id, first_name, last_name, timezone, fields)
        self._identified()

    def _fill(self, email: Any, phone: Any, external_id: Any, *rest: Any) -> None:
        contact_id, first_name, last_name, timezone, fields = rest
        mail = text_value(("email",), email)
        if mail is not None:
            mail = mail.strip().lower()
            if "@" not in mail or mail.startswith("@") or mail.endswith("@"):
                raise EventError(("email",), f"Value error, {mail!r} is not an email address")
        number = text_value(("phone",), phone)
        if number is not None:
            try:
                number = normalise_phone(number)
            except ValueError as err:
                raise _value_error(("phone",), err) from None
        # Provider ids beyond 2^53 must never pass through a float.
        external = str(external_id) if isinstance(external_id, int) else external_id
        self._set(
            email=mail,
            phone=number,
            external_id=text_value(("external_id",), external),
            contact_id=text_value(("contact_id",), contact_id),
            first_name=text_value(("first_name",), first_name),
            last_name=text_value(("last_name",), last_name),
            timezone=text_value(("timezone",), timezone),
            fields={} if fields is None else mapping_value(("fields",), None if fields is _MISSING else fields),
        )

    def _identified(self) -> None:
        if not (self.email or self.phone or self.external_id or self.contact_id):
            raise EventError((), "Value error, contact needs at least one of email, phone, external_id, contact_id")

    @classmethod
    def model_validate(cls, value: Any) -> ContactRef:
        if isinstance(value, ContactRef):
            return value
        known = _known(cls, value, "ContactRef")
        if "fields" in known and known["fields"] is None:
            known["fields"] = _MISSING  # refused in its turn: None is no dictionary
        out = object.__new__(cls)
        out._fill(*(known.get(name) for name in cls._fields))
        _extra(cls, value)  # before the identity check, which pydantic ran on valid fields only
        out._identified()
        return out


class ContactEvent(_Plain):
    """One thing that happened to one contact, after a source's payload has been normalised."""

    __slots__ = ("contact", "data", "id", "occurred_at", "source", "test", "type")
    _fields = ("id", "type", "contact", "data", "occurred_at", "source", "test")

    id: str  # stable id from the source; redelivery repeats it
    type: str
    contact: ContactRef
    data: dict[str, Any]
    occurred_at: datetime | None
    source: str | None  # the provider it came from (shopify...); None: our own
    test: bool  # the provider's test-mode flag (Stripe livemode false, Shopify test)

    def __init__(
        self,
        *,
        id: str,
        type: str,
        contact: ContactRef | Mapping[str, Any],
        data: Mapping[str, Any] | None = None,
        occurred_at: datetime | str | float | None = None,
        source: str | None = None,
        test: bool | str | int = False,
    ) -> None:
        if text_value(("id",), _required("id", id), optional=False) == "":
            raise EventError(("id",), "String should have at least 1 character", "string_too_short")
        if not _TYPE.match(text_value(("type",), _required("type", type), optional=False) or ""):
            raise EventError(("type",), f"String should match pattern '{TYPE_PATTERN}'", "string_pattern_mismatch")
        given = _required("contact", contact)
        try:
            who = ContactRef.model_validate(given)
        except EventError as err:
            raise err.within("contact") from None
        self._set(
            id=id,
            type=type,
            contact=who,
            data={} if data is None else mapping_value(("data",), None if data is _MISSING else data),
            occurred_at=time_value(("occurred_at",), occurred_at),
            source=text_value(("source",), source),
            test=bool_value(("test",), None if test is _MISSING else test),
        )

    @classmethod
    def model_validate(cls, value: Any) -> ContactEvent:
        """An event from untrusted JSON (POST /events, the queue, an archived delivery); EventError naming the
        first bad field otherwise."""
        if isinstance(value, ContactEvent):
            return value
        known = _known(cls, value, "ContactEvent")
        for name in ("data", "test"):  # None is no dictionary, no boolean: refused in their turn
            if name in known and known[name] is None:
                known[name] = _MISSING
        out = cls(**{"id": _MISSING, "type": _MISSING, "contact": _MISSING, **known})
        _extra(cls, value)
        return out

    def digest(self) -> str:
        """Short stable hash of the event id, for execution names and idempotency keys."""
        return stable_hash(self.type, self.id)
