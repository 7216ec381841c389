"""The normalised contact event every source is turned into, and the catalogue of known event types."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Known event types and the data fields each carries. Conditions on other fields of these events are
# lint errors; event types outside the catalogue are allowed (custom events) and not checked.
CATALOGUE: dict[str, frozenset[str]] = {
    k: frozenset(v)
    for k, v in {
        # shop
        "order.paid": {"order_id", "total", "currency", "products", "source", "coupon", "checkout_id"},
        "order.cancelled": {"order_id", "total", "currency", "reason", "source"},
        "order.refunded": {"order_id", "total", "amount_refunded", "currency", "source"},
        "checkout.abandoned": {"checkout_id", "cart_value", "currency", "idle_minutes", "products", "url"},
        # what a shop says of a checkout as it happens; checkout.abandoned is derived from these
        "checkout.started": {"checkout_id", "cart_value", "currency", "products", "url"},
        "checkout.updated": {"checkout_id", "cart_value", "currency", "products", "url"},
        "subscription.payment_failed": {"subscription_id", "invoice_id", "amount", "currency", "attempt"},
        "subscription.cancelled": {"subscription_id", "reason"},
        "contact.created": set(),  # a shop's new customer account
        "coupon.used": {"coupon", "campaign", "order_id", "coupon_status"},  # used/unknown/expired/already_used
        # forms, lists, campaigns
        "form.submitted": {"form", "form_id", "form_type", "page", "fields"},
        "list.subscribed": {"list", "source"},
        "list.unsubscribed": {"list"},
        # consent: a preference centre or an import (consent.*), a provider's unsubscribe link or STOP reply
        "consent.given": {"channel", "source"},
        "consent.withdrawn": {"channel", "source"},
        "email.unsubscribed": {"message_id", "campaign", "template", "workflow", "step"},
        "sms.opted_out": {"message_id", "campaign", "template", "workflow", "step", "keyword"},
        "campaign.stage_entered": {"campaign", "stage"},
        "campaign.completed": {"campaign"},
        # tags and data
        "tag.added": {"tag"},
        "tag.removed": {"tag"},
        "field.changed": {"field", "value", "previous"},
        "score.changed": {"score", "previous", "delta"},
        "pipeline.stage_changed": {"pipeline", "stage", "previous"},
        # messages
        "email.sent": {"template", "campaign", "message_id", "workflow", "step", "provider_id"},
        "email.delivered": {"template", "campaign", "message_id", "workflow", "step", "provider_id"},
        "email.bounced": {
            "template",
            "campaign",
            "message_id",
            "workflow",
            "step",
            "provider_id",
            "bounce_type",
            "reason",
        },
        "email.complained": {"template", "campaign", "message_id", "workflow", "step", "provider_id", "reason"},
        "email.rejected": {"template", "campaign", "message_id", "workflow", "step", "provider_id", "reason"},
        "email.delivery_delayed": {"template", "campaign", "message_id", "workflow", "step", "provider_id"},
        "email.opened": {"template", "campaign", "message_id", "workflow", "step", "provider_id"},
        "email.not_opened": {"template", "campaign", "message_id", "workflow", "step", "after"},
        "email.clicked": {"template", "campaign", "message_id", "workflow", "step", "link", "provider_id"},
        "email.not_clicked": {"template", "campaign", "message_id", "workflow", "step", "after"},
        "sms.sent": {"template", "campaign", "message_id", "workflow", "step"},
        "sms.delivered": {"template", "campaign", "message_id", "workflow", "step", "provider_id"},
        "sms.not_delivered": {"template", "campaign", "message_id", "workflow", "step", "reason", "provider_id"},
        # other activity
        "page.visited": {"url", "tracker", "title"},
        "conversion.completed": {"rule", "value"},
        "appointment.scheduled": {"appointment_id", "event_type", "starts_at", "ends_at"},
        "appointment.cancelled": {"appointment_id", "event_type", "reason"},
        "webinar.registered": {"webinar"},
        "course.enrolled": {"course"},
        "course.completed": {"course"},
        "module.completed": {"course", "module"},
        "lesson.completed": {"course", "module", "lesson"},
        "bundle.enrolled": {"bundle"},
        "community.joined": {"community"},
        "loyalty.card_created": {"card_id", "program"},
        "loyalty.points_added": {"card_id", "points", "balance"},
        "loyalty.reward_granted": {"card_id", "reward"},
        # time: a fixed-date trigger fires this for every contact of its list
        "schedule.fired": {"list", "at"},
    }.items()
}

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class ContactRef(BaseModel):
    """Who the event is about: at least one identity."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = None
    phone: str | None = None
    external_id: str | None = None  # provider-scoped id, e.g. "shopify:7039294554217"
    contact_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    timezone: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip().lower()
        if "@" not in v or v.startswith("@") or v.endswith("@"):
            raise ValueError(f"{v!r} is not an email address")
        return v

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if v is None:
            return None
        return normalise_phone(v)

    @field_validator("external_id", mode="before")
    @classmethod
    def _external(cls, v: Any) -> Any:
        # Provider ids beyond 2^53 must never pass through a float.
        return str(v) if isinstance(v, int) else v

    @model_validator(mode="after")
    def _some_identity(self) -> ContactRef:
        if not (self.email or self.phone or self.external_id or self.contact_id):
            raise ValueError("contact needs at least one of email, phone, external_id, contact_id")
        return self


def normalise_phone(raw: str) -> str:
    """E.164: `+` and digits only. Numbers without a country code are refused, not guessed."""
    digits = re.sub(r"[\s\-().]", "", raw)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if not _E164.match(digits):
        raise ValueError(f"{raw!r} is not a phone number in international form (E.164, e.g. +393471234567)")
    return digits


class ContactEvent(BaseModel):
    """One thing that happened to one contact, after a source's payload has been normalised."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, description="Stable id from the source; redelivery repeats it")
    type: str = Field(pattern=r"^[a-z_]+\.[a-z_]+$")
    contact: ContactRef
    data: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime | None = None
    source: str | None = Field(default=None, description="The provider it came from (shopify...); None: our own")
    test: bool = Field(default=False, description="The provider's test-mode flag (Stripe livemode false, Shopify test)")

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        # A naive time cannot be placed: compared later with the aware clock (did_event ... within) it fails the run.
        if v is not None and v.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-12-01T09:00:00Z or 2026-12-01T10:00:00+01:00")
        return v

    def digest(self) -> str:
        """Short stable hash of the event id, for execution names and idempotency keys."""
        return stable_hash(self.type, self.id)


def stable_hash(*parts: str, length: int = 16) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:length]
