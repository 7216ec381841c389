"""The seam every webhook provider plugs into: a raw delivery in, verified and normalised contact events out.

One module per provider in shared/intake/ implements `Provider` and registers itself in shared/intake/__init__.py
(PROVIDERS). The HTTP intake Lambda (functions/trigger_router/), the local API (`stepwise local`) and
`stepwise simulate` all call `shared.intake.pipeline.accept`, so a delivery is judged the same way everywhere."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:  # the providers build the events; this seam only names them (the intake's import stays light)
    from shared.events import ContactEvent

MAX_BODY_BYTES = 1_048_576  # larger bodies get 413 before anything else is read


class IntakeError(Exception):
    """A delivery refused; `status` is the HTTP answer, the message names the header or field and the problem.
    Never raised for our own faults: those are ordinary exceptions (a 5xx, and the provider retries)."""

    status: ClassVar[int] = 400

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class UnknownProvider(IntakeError):
    status = 404


class BodyTooLarge(IntakeError):
    status = 413


class MalformedDelivery(IntakeError):
    """Not JSON where JSON is due, a required field missing, a value of the wrong kind."""

    status = 400


class SignatureRejected(IntakeError):
    """Missing, wrong or stale signature (or path token); the message names the header."""

    status = 401


class NotAContactEvent(IntakeError):
    """Well formed and authentic, but about nobody we can identify (kept and reported, answered 202 by the API)."""

    status = 422


@dataclass(frozen=True)
class Delivery:
    """One HTTP request as it arrived. Header names are lower-cased; `body` is the raw bytes, never re-serialised
    (every signature is over the exact bytes)."""

    provider: str
    headers: Mapping[str, str]
    body: bytes
    received_at: datetime
    path_token: str | None = None  # /webhooks/{provider}/{token}: the only proof for providers that cannot sign
    query: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


# secret_for(provider name) -> the configured secret, or None when none is configured. AWS: SSM Parameter Store /
# Secrets Manager through Powertools parameters (cached); locally: STEPWISE_WEBHOOK_SECRET_<PROVIDER>.
SecretSource = Callable[[str], str | None]


class Provider(Protocol):
    """A webhook sender: how it signs, how it names its deliveries, how its bodies become contact events."""

    name: str  # the {provider} of POST /webhooks/{provider}
    signed: bool  # False: cannot sign; accepted only with the secret path token

    def verify(self, delivery: Delivery, secret: str) -> None:
        """Raise SignatureRejected naming the header when the delivery is not authentic (or is stale, judged
        against delivery.received_at). Constant-time comparison (hmac.compare_digest) only."""
        ...

    def delivery_id(self, delivery: Delivery) -> str:
        """The provider's own id of the event (X-Shopify-Event-Id, Stripe's evt_..., Typeform's event_id...);
        a redelivery repeats it. "" when the provider gives none."""
        ...

    def normalise(self, delivery: Delivery) -> list[ContactEvent]:
        """The contact events the delivery says happened, each with a stable id derived from the provider's
        event id. Raises MalformedDelivery naming the field. [] for deliveries that are about no contact event
        (a ping, a topic nobody maps)."""
        ...


@dataclass(frozen=True)
class Accepted:
    """What the pipeline made of a delivery."""

    provider: str
    delivery_id: str  # the provider's id ("" if none)
    dedupe_key: str  # provider + delivery id + body hash: equal ids with different bodies are not duplicates
    verified: bool  # False only where the caller allowed unsigned deliveries (stepwise simulate)
    test: bool  # the provider's test-mode flag
    events: list[ContactEvent]
