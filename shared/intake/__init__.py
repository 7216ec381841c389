"""Webhook providers: each module is one provider's signature scheme and normalisation (see shared/intake/base.py)."""

from __future__ import annotations

from shared.intake.base import Provider
from shared.intake.calendly import Calendly
from shared.intake.jotform import Jotform
from shared.intake.shopify import Shopify
from shared.intake.stripe import Stripe
from shared.intake.tally import Tally
from shared.intake.typeform import Typeform
from shared.intake.webflow import Webflow
from shared.intake.woocommerce import WooCommerce

PROVIDERS: dict[str, Provider] = {
    p.name: p for p in (Shopify(), WooCommerce(), Stripe(), Typeform(), Tally(), Calendly(), Webflow(), Jotform())
}
