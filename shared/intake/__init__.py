"""Webhook providers: each module is one provider's signature scheme and normalisation (see shared/intake/base.py)."""

from __future__ import annotations

from shared.intake.base import Provider
from shared.intake.shopify import Shopify
from shared.intake.stripe import Stripe

PROVIDERS: dict[str, Provider] = {p.name: p for p in (Shopify(), Stripe())}
