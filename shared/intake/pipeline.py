"""Judges one webhook delivery: known provider, size, authenticity, then the contact events it says happened.

The HTTP intake Lambda, the local API and `stepwise simulate` all call `accept`, so a delivery is judged the same
way everywhere. Bad input only ever raises an IntakeError subclass (a 4xx); anything else is our fault (a 5xx)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import replace

from shared import intake as registry
from shared.constants import ENV_LOCAL_SECRET_PREFIX
from shared.intake.base import (
    MAX_BODY_BYTES,
    Accepted,
    BodyTooLarge,
    Delivery,
    Provider,
    SecretSource,
    SignatureRejected,
    UnknownProvider,
)


def accept(provider: str, delivery: Delivery, secret_for: SecretSource, *, allow_unverified: bool = False) -> Accepted:
    """Verify and normalise one delivery to `POST /webhooks/{provider}`.

    `allow_unverified` (stepwise simulate only): a provider with no configured secret is accepted unverified;
    a configured secret is always checked."""
    impl = registry.provider(provider)
    if impl is None:
        known = ", ".join(registry.NAMES)
        raise UnknownProvider(f"unknown provider {provider[:40]!r} (known: {known})", field="provider")
    if len(delivery.body) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"body is {len(delivery.body)} bytes, over the {MAX_BODY_BYTES} limit", field="body")
    delivery = _lower_headers(delivery)
    verified = _authenticate(impl, delivery, secret_for(provider), allow_unverified)
    delivery_id = impl.delivery_id(delivery)
    events = impl.normalise(delivery)
    digest = hashlib.sha256(delivery.body).hexdigest()[:16]
    return Accepted(
        provider=provider,
        delivery_id=delivery_id,
        dedupe_key=f"{provider}:{delivery_id}:{digest}",
        verified=verified,
        test=any(e.test for e in events),
        events=events,
    )


def _authenticate(impl: Provider, delivery: Delivery, secret: str | None, allow_unverified: bool) -> bool:
    if not secret:
        if allow_unverified:
            return False
        raise SignatureRejected(f"no secret configured for {impl.name}", field="secret")
    if impl.signed and not _uses_path_token(impl, delivery):
        impl.verify(delivery, secret)
        return True
    # Providers that cannot sign (Jotform, Webflow site webhooks without a signing key): the secret is the last
    # segment of the webhook URL they were given, /webhooks/{provider}/{token}.
    token = delivery.path_token
    if not token:
        raise SignatureRejected(
            f"{impl.name} deliveries are unsigned: the webhook URL must end with the secret path token "
            f"(/webhooks/{impl.name}/<token>)",
            field="path_token",
        )
    if not hmac.compare_digest(token.encode("utf-8", "replace"), secret.encode("utf-8")):
        raise SignatureRejected("path token does not match the configured secret", field="path_token")
    return True


def _uses_path_token(impl: Provider, delivery: Delivery) -> bool:
    """A signing provider whose unsigned variant may come with a path token instead (Webflow site webhooks)."""
    header = getattr(impl, "signature_header", None)
    fallback = getattr(impl, "path_token_fallback", False)
    return bool(fallback and header and delivery.path_token and delivery.header(header) is None)


def _lower_headers(delivery: Delivery) -> Delivery:
    if all(k == k.lower() for k in delivery.headers):
        return delivery
    return replace(delivery, headers={k.lower(): v for k, v in delivery.headers.items()})


def local_secrets(environ: Mapping[str, str]) -> SecretSource:
    """Webhook secrets from STEPWISE_WEBHOOK_SECRET_<PROVIDER> (stepwise local / simulate)."""

    def secret_for(provider: str) -> str | None:
        return environ.get(ENV_LOCAL_SECRET_PREFIX + provider.upper()) or None

    return secret_for
