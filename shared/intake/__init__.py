"""Webhook providers: each module is one provider's signature scheme and normalisation (see shared/intake/base.py)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.intake.base import Provider

    PROVIDERS: dict[str, Provider]

# Provider name (the path's /webhooks/{name}) -> its class in shared/intake/{name}.py. A module is imported when
# its provider is first asked for: a Lambda serving Shopify deliveries never loads the other seven.
CLASSES = {
    "shopify": "Shopify",
    "woocommerce": "WooCommerce",
    "stripe": "Stripe",
    "typeform": "Typeform",
    "tally": "Tally",
    "calendly": "Calendly",
    "webflow": "Webflow",
    "jotform": "Jotform",
}
NAMES = tuple(sorted(CLASSES))
_loaded: dict[str, Provider] = {}


def provider(name: str) -> Provider | None:
    """The provider serving /webhooks/{name}, or None for a name no provider has."""
    impl = _loaded.get(name)
    if impl is None:
        cls = CLASSES.get(name)
        if cls is None:
            return None
        impl = getattr(importlib.import_module(f"shared.intake.{name}"), cls)()
        if impl.name != name:
            raise RuntimeError(f"shared/intake/{name}.py: {cls}.name is {impl.name!r}, not {name!r} (CLASSES)")
        _loaded[name] = impl
    return impl


def __getattr__(name: str) -> Any:
    # Every provider at once, for the tests and tools that iterate them; built on first use, like provider().
    if name == "PROVIDERS":
        providers = {n: p for n in CLASSES if (p := provider(n)) is not None}
        globals()["PROVIDERS"] = providers
        return providers
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
