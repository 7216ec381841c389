"""What every provider module shares: strict JSON, a path-naming reader for bodies, money, times, HMAC, identities."""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from shared.events import ContactEvent, ContactRef, EventError, normalise_phone
from shared.intake.base import Delivery, MalformedDelivery, NotAContactEvent, SignatureRejected

# ---- bodies -----------------------------------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


@lru_cache(maxsize=16)
def _parse(body: bytes) -> Any:
    # Floats become Decimal (money stays exact, DynamoDB takes it); ints stay ints of any size (Shopify ids > 2^53).
    return json.loads(body, parse_float=Decimal, parse_constant=_no_constant)


def parse_json(body: bytes) -> Any:
    """The body as JSON, or MalformedDelivery. Cached per body: delivery_id and normalise both read it."""
    try:
        return _parse(body)
    except RecursionError:
        raise MalformedDelivery("body is nested too deeply", field="body") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity
        raise MalformedDelivery(f"body is not JSON: {str(e)[:120]}", field="body") from None


def root(delivery: Delivery) -> J:
    """The body of a JSON delivery, which must be an object."""
    value = parse_json(delivery.body)
    if not isinstance(value, dict):
        raise MalformedDelivery("body must be a JSON object", field="body")
    return J(value, "")


def body_hash(body: bytes, length: int = 16) -> str:
    return hashlib.sha256(body).hexdigest()[:length]


class J:
    """A value inside a parsed body that knows its path, so every complaint names the field (`data.object.email`).
    Missing keys and nulls read as absent; a value of the wrong kind is a MalformedDelivery."""

    __slots__ = ("path", "v")

    def __init__(self, v: Any, path: builtins.str = "body") -> None:
        self.v = v
        self.path = path

    def __getitem__(self, key: builtins.str) -> J:
        path = f"{self.path}.{key}" if self.path else key
        if self.v is None:
            return J(None, path)
        if not isinstance(self.v, dict):
            raise MalformedDelivery(f"{self.path} must be an object", field=self.path)
        return J(self.v.get(key), path)

    def __bool__(self) -> builtins.bool:
        return self.v is not None

    def _bad(self, kind: builtins.str) -> MalformedDelivery:
        return MalformedDelivery(f"{self.path} must be {kind}, not {type(self.v).__name__}", field=self.path)

    def required(self) -> J:
        if self.v is None:
            raise MalformedDelivery(f"{self.path} is missing", field=self.path)
        return self

    def obj(self) -> dict[str, Any] | None:
        if self.v is None or isinstance(self.v, dict):
            return self.v
        raise self._bad("an object")

    def items(self) -> Iterator[J]:
        if self.v is None:
            return iter(())
        if not isinstance(self.v, list):
            raise self._bad("a list")
        return (J(x, f"{self.path}[{i}]") for i, x in enumerate(self.v))

    def str(self) -> builtins.str | None:
        """A string (empty reads as absent); integer ids become their exact decimal string."""
        v = self.v
        if v is None:
            return None
        if isinstance(v, bool):
            raise self._bad("a string")
        if isinstance(v, int):
            return str(v)
        if not isinstance(v, str):
            raise self._bad("a string")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedDelivery(f"{self.path} is not valid Unicode", field=self.path) from None
        return v.strip() or None

    def text(self) -> builtins.str | None:
        """Like str(), but a JSON number (a phone, a numeric answer) is accepted as its digits."""
        if isinstance(self.v, Decimal) and self.v.is_finite():
            return format(self.v, "f")
        return self.str()

    def req_str(self) -> builtins.str:
        s = self.required().str()
        if s is None:
            raise MalformedDelivery(f"{self.path} is empty", field=self.path)
        return s

    def bool(self) -> builtins.bool | None:
        if self.v is None or isinstance(self.v, bool):
            return self.v
        raise self._bad("true or false")

    def int(self) -> builtins.int | None:
        v = self.v
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise self._bad("an integer")
        return v

    def decimal(self) -> Decimal | None:
        """Money or a quantity as Decimal, from a string ("199.00"), an integer or a JSON fraction."""
        v = self.v
        if v is None or v == "":
            return None
        if isinstance(v, bool) or not isinstance(v, str | int | Decimal):
            raise self._bad("a number")
        try:
            d = Decimal(v.strip()) if isinstance(v, str) else Decimal(v)
        except InvalidOperation:
            raise MalformedDelivery(f"{self.path} is not a number: {str(v)[:40]!r}", field=self.path) from None
        if not d.is_finite() or abs(d.adjusted()) > 30:
            raise MalformedDelivery(f"{self.path} is out of range", field=self.path)
        return d

    def datetime(self, *, naive_is_utc: builtins.bool = True) -> datetime | None:
        """An ISO 8601 time or Unix seconds, as an aware UTC datetime."""
        v = self.v
        if v is None or v == "":
            return None
        if isinstance(v, int | Decimal) and not isinstance(v, bool):
            return from_unix(v, self.path)
        if not isinstance(v, str):
            raise self._bad("a time")
        return parse_time(v, self.path, naive_is_utc=naive_is_utc)


def ref_id(value: J) -> str | None:
    """An id given as itself or as the expanded object holding it (Stripe's `customer`: "cus_..." or {...})."""
    return value["id"].str() if isinstance(value.v, dict) else value.str()


def parse_time(raw: str, path: str, *, naive_is_utc: bool = True) -> datetime:
    text = raw.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Nanoseconds (Shopify's X-Shopify-Triggered-At) and 3-digit fractions: keep microseconds, as Python parses.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        frac, tail = rest[:digits], rest[digits:]
        text = f"{head}.{(frac + '000000')[:6]}{tail}" if frac else head + tail
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedDelivery(f"{path} is not an ISO 8601 time: {raw[:40]!r}", field=path) from None
    if at.tzinfo is None:
        if not naive_is_utc:
            raise MalformedDelivery(f"{path} has no time zone: {raw[:40]!r}", field=path)
        at = at.replace(tzinfo=UTC)
    try:
        return at.astimezone(UTC)
    except OverflowError:
        raise MalformedDelivery(f"{path} is out of range", field=path) from None


def from_unix(seconds: int | Decimal, path: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(seconds), UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedDelivery(f"{path} is not a Unix time", field=path) from None


def as_utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


# ---- money ------------------------------------------------------------------------------------------------------

# Stripe sends amounts in the currency's smallest unit; these have none (JPY 500 is 500 yen), these have three.
# stripe.com/docs/currencies#zero-decimal
ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
THREE_DECIMAL = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])


def minor_units(amount: J, currency: str | None) -> Decimal | None:
    """An integer amount in minor units (Stripe's cents) as a Decimal in major units: 2000 usd -> 20.00."""
    n = amount.int()
    if n is None:
        return None
    code = (currency or "").upper()
    exponent = 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2
    return Decimal(n).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))


def currency(value: J) -> str | None:
    code = value.str()
    if code is None:
        return None
    code = code.upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise MalformedDelivery(f"{value.path} is not a currency code: {code[:10]!r}", field=value.path)
    return code


# ---- signatures -------------------------------------------------------------------------------------------------

TOLERANCE_SECONDS = 300


def hmac_sha256(key: str, message: bytes) -> bytes:
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def same(given: str, expected: str) -> bool:
    """Constant-time equality of a header value and the value we computed (any text, never raises)."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def required_header(delivery: Delivery, name: str) -> str:
    value = delivery.header(name)
    if value is None or not value.strip():
        raise SignatureRejected(f"{name} header is missing", field=name)
    return value.strip()


def parse_t_v1(value: str, header: str) -> tuple[int, list[str]]:
    """`t=<unix seconds>,v1=<hex>[,v1=...][,v0=...]` (Stripe, Calendly): the timestamp and every v1."""
    t: int | None = None
    v1: list[str] = []
    for part in value.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            val = val.strip()
            if not (val.isascii() and val.isdigit() and len(val) <= 12):
                raise SignatureRejected(f"{header} has a malformed timestamp", field=header)
            t = int(val)
        elif key == "v1":
            v1.append(val.strip())
    if t is None:
        raise SignatureRejected(f"{header} has no timestamp (t=)", field=header)
    if not v1:
        raise SignatureRejected(f"{header} has no v1 signature", field=header)
    return t, v1


def check_fresh(signed_at: float, delivery: Delivery, header: str, tolerance: float = TOLERANCE_SECONDS) -> None:
    """Replay protection: the signed timestamp within `tolerance` seconds of when the delivery arrived."""
    age = as_utc(delivery.received_at).timestamp() - signed_at
    if abs(age) > tolerance:
        when = "old" if age > 0 else "in the future"
        raise SignatureRejected(
            f"{header} timestamp is {abs(int(age))} s {when} (tolerance {tolerance:g} s)", field=header
        )


def t_v1_signature(secret: str, t: int, body: bytes) -> str:
    """The v1 of the `t=..,v1=..` scheme (Stripe, Calendly): hex HMAC-SHA256 of "<t>.<body>"."""
    return hmac_sha256(secret, f"{t}.".encode() + body).hex()


def verify_t_v1(delivery: Delivery, secret: str, header: str) -> None:
    """A `t=..,v1=..` header checked: some v1 matches the body (constant-time compare, every candidate compared),
    then the timestamp within TOLERANCE_SECONDS either way of the delivery's arrival."""
    t, candidates = parse_t_v1(required_header(delivery, header), header)
    expected = t_v1_signature(secret, t, delivery.body)
    # Any v1 may match (several while a secret is rolled); v0 is not this scheme and is ignored.
    if not any([same(c, expected) for c in candidates]):
        raise SignatureRejected(f"{header} v1 does not match the body (wrong secret or altered body)", field=header)
    check_fresh(t, delivery, header)


def sign_t_v1(body: bytes, secret: str, now: datetime, header: str) -> dict[str, str]:
    """The header a `t=..,v1=..` provider would send for `body` at `now` (tests, `stepwise send`)."""
    t = int(now.timestamp())
    return {header.lower(): f"t={t},v1={t_v1_signature(secret, t, body)}"}


class TimestampedV1:
    """verify and sign of a provider of the `t=..,v1=..` scheme, whose `signature_header` names its header."""

    signed = True
    signature_header: str

    def verify(self, delivery: Delivery, secret: str) -> None:
        verify_t_v1(delivery, secret, self.signature_header)

    def sign(self, body: bytes, secret: str, now: datetime) -> dict[str, str]:
        return sign_t_v1(body, secret, now, self.signature_header)


# ---- contacts and events ----------------------------------------------------------------------------------------


def contact(
    *,
    emails: list[J | str | None] = (),  # type: ignore[assignment]
    phones: list[J | str | None] = (),  # type: ignore[assignment]
    external_id: str | None = None,
    first_name: J | None = None,
    last_name: J | None = None,
    timezone: J | None = None,
) -> ContactRef:
    """The first usable email and phone of those given (in order of preference), the provider's own customer id.
    An unusable email or phone is dropped, not fatal; nothing usable at all is NotAContactEvent."""
    email = _first_valid(emails, _email)
    phone = _first_valid(phones, normalise_phone, text=True)
    if not (email or phone or external_id):
        raise NotAContactEvent("the delivery names no contact (no usable email, phone or customer id)", field="contact")
    names: dict[str, Any] = {
        "first_name": first_name.str() if first_name is not None else None,
        "last_name": last_name.str() if last_name is not None else None,
        "timezone": timezone.str() if timezone is not None else None,
    }
    try:
        return ContactRef(email=email, phone=phone, external_id=external_id, **names)
    except EventError as e:  # pragma: no cover - values were validated above
        raise MalformedDelivery(f"contact: {e.errors()[0]['msg']}", field="contact") from None


def _email(raw: str) -> str:
    # ContactRef's own rule (it lower-cases and checks again): an @ with something on both sides.
    v = raw.strip().lower()
    if "@" not in v or v.startswith("@") or v.endswith("@") or len(v) > 254 or any(c.isspace() for c in v):
        raise ValueError("not an email address")
    return v


def _first_valid(candidates: Any, check: Any, *, text: bool = False) -> str | None:
    for c in candidates:
        if c is None:
            continue
        value = (c.text() if text else c.str()) if isinstance(c, J) else c
        if not value:
            continue
        try:
            return check(value)
        except ValueError:
            continue
    return None


def event_base(provider: str, delivery_id: str, body: bytes) -> str:
    """The stable id a delivery's events derive from: the provider's event id, else the body's hash."""
    return f"{provider}:{delivery_id}" if delivery_id else f"{provider}:sha256-{body_hash(body)}"


def make_event(
    base: str,
    type_: str,
    who: ContactRef,
    data: dict[str, Any],
    *,
    source: str,
    occurred_at: datetime | None,
    test: bool,
    index: int | None = None,
) -> ContactEvent:
    try:
        return ContactEvent(
            id=base if index is None else f"{base}:{index}",
            type=type_,
            contact=who,
            data={k: v for k, v in data.items() if v is not None},
            occurred_at=occurred_at,
            source=source,
            test=test,
        )
    except EventError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise MalformedDelivery(f"{where}: {err['msg']}", field=where) from None


def product(
    *, product_id: J, variant_id: J | None = None, name: J, quantity: J, price: Decimal | None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "product_id": product_id.str(),
        "name": name.str(),
        "quantity": quantity.int() if not isinstance(quantity.v, Decimal) else quantity.decimal(),
        "price": price,
    }
    if variant_id is not None and variant_id.str() not in (None, "0"):
        out["variant_id"] = variant_id.str()
    return {k: v for k, v in out.items() if v is not None}
