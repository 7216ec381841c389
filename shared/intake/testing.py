"""Sample deliveries for tests, benchmarks and the demo: the providers' published fixtures, signed as they sign.

Fixtures live in tests/events/<provider>/<topic>.json (topic slashes as dots: orders/paid -> orders.paid.json),
and, for Stripe, WooCommerce and Calendly, in the team kit ../shared/fixtures/webhooks/<provider>__<topic>.json,
read in place when that folder exists."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.intake import PROVIDERS
from shared.intake.base import Delivery

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "events"
KIT_FIXTURES = ROOT.parent / "shared" / "fixtures" / "webhooks"


def fixture_path(provider: str, topic: str) -> Path:
    own = FIXTURES / provider / f"{topic.replace('/', '.')}.json"
    if own.exists():
        return own
    kit = KIT_FIXTURES / f"{provider}__{topic}.json"
    if kit.exists():
        return kit
    raise FileNotFoundError(f"no fixture for {provider} {topic} (looked at {own} and {kit})")


def load_fixture(provider: str, topic: str) -> dict[str, Any]:
    """{"provider", "topic", "source", "headers", "body"} (the kit's files say "event" for the topic)."""
    data = json.loads(fixture_path(provider, topic).read_text(encoding="utf-8"))
    data.setdefault("topic", data.get("event", topic))
    return data


def all_fixtures() -> list[tuple[str, str]]:
    """(provider, topic) of every fixture available here, the repository's and the kit's."""
    out = [(p.parent.name, json.loads(p.read_text(encoding="utf-8"))["topic"]) for p in FIXTURES.glob("*/*.json")]
    if KIT_FIXTURES.is_dir():
        for p in KIT_FIXTURES.glob("*__*.json"):
            provider, _, topic = p.stem.partition("__")
            out.append((provider, topic))
    return sorted(out)


def body_bytes(fixture: dict[str, Any]) -> bytes:
    """The raw body: a string as is (Jotform's multipart), JSON compactly as a provider would send it."""
    body = fixture["body"]
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def delivery(
    fixture: dict[str, Any], now: datetime, *, body: bytes | None = None, path_token: str | None = None
) -> Delivery:
    """The fixture as an unsigned delivery: its headers lower-cased (nulls dropped), its published signature kept."""
    headers = {k.lower(): str(v) for k, v in fixture.get("headers", {}).items() if v is not None}
    return Delivery(
        provider=fixture["provider"],
        headers=headers,
        body=body_bytes(fixture) if body is None else body,
        received_at=now,
        path_token=path_token,
    )


def signed(fixture: dict[str, Any], secret: str, now: datetime, *, body: bytes | None = None) -> Delivery:
    """The fixture as its provider would deliver it to a webhook configured with `secret`, sent at `now`: signed
    headers replacing the published ones, or, for a provider that cannot sign, the secret as the path token."""
    impl: Any = PROVIDERS[fixture["provider"]]
    plain = delivery(fixture, now, body=body)
    if not impl.signed:
        return Delivery(plain.provider, plain.headers, plain.body, now, path_token=secret)
    headers = {k: v for k, v in plain.headers.items() if k not in getattr(impl, "signs_headers", ())}
    headers.update(impl.sign(plain.body, secret, now))
    return Delivery(plain.provider, headers, plain.body, now)
