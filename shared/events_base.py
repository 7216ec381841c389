"""What shared.events offers that needs no pydantic: the catalogue of known event types, phone numbers in E.164
and the stable hashes of ids. The runtime modules that never build an event (the contact store, the archive, the
sender) import these from here, so that their import does not load pydantic (cold start, issue 11 item 9);
shared.events re-exports them beside the event models."""

from __future__ import annotations

import hashlib
import json
import re

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


def normalise_phone(raw: str) -> str:
    """E.164: `+` and digits only. Numbers without a country code are refused, not guessed."""
    digits = re.sub(r"[\s\-().]", "", raw)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if not _E164.match(digits):
        raise ValueError(f"{raw!r} is not a phone number in international form (E.164, e.g. +393471234567)")
    return digits


def stable_hash(*parts: str, length: int = 16) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:length]
