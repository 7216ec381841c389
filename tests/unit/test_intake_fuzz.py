"""Bad input only ever raises an IntakeError (a 4xx), never anything else (a 5xx): random bodies and headers for
every provider, signed and unsigned, and mutations of the real samples, correctly signed so normalisation runs."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.intake import PROVIDERS
from shared.intake.base import Delivery, IntakeError
from shared.intake.generic import parse_events
from shared.intake.pipeline import accept
from shared.intake.testing import all_fixtures, load_fixture, signed

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECRET = "fuzz-secret"
NAMES = sorted(PROVIDERS)
HEADER_NAMES = [
    "x-shopify-topic", "x-shopify-hmac-sha256", "x-wc-webhook-topic", "x-wc-webhook-signature", "stripe-signature",
    "typeform-signature", "tally-signature", "calendly-webhook-signature", "x-webflow-signature",
    "x-webflow-timestamp", "content-type", "x-shopify-test",
]  # fmt: skip
TOPICS = ["orders/paid", "checkouts/create", "refunds/create", "customers/create", "order.updated", "order.created"]
FIXTURES = [load_fixture(p, t) for p, t in all_fixtures()]
FUZZ = settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
    max_leaves=20,
)


def judge(provider: str, d: Delivery) -> None:
    for secret in (SECRET, None):
        for allow in (False, True):
            with contextlib.suppress(IntakeError):
                accept(provider, d, lambda _, s=secret: s, allow_unverified=allow)


@FUZZ
@given(
    provider=st.sampled_from([*NAMES, "nope"]),
    body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
    headers=st.dictionaries(
        st.sampled_from(HEADER_NAMES), st.text(max_size=40) | st.sampled_from(TOPICS) | st.just("t=1,v1=ab"), max_size=5
    ),
    token=st.none() | st.text(max_size=12),
)
def test_random_deliveries_raise_only_intake_errors(provider, body, headers, token) -> None:
    judge(provider, Delivery(provider, headers, body, NOW, path_token=token))


def _mutate(value, path: list, new):
    if not path:
        return new
    key, rest = path[0], path[1:]
    if isinstance(value, dict) and value:
        k = sorted(value)[key % len(value)]
        return {**value, k: _mutate(value[k], rest, new)}
    if isinstance(value, list) and value:
        i = key % len(value)
        return [*value[:i], _mutate(value[i], rest, new), *value[i + 1 :]]
    return new


@FUZZ
@given(
    index=st.integers(min_value=0, max_value=len(FIXTURES) - 1),
    path=st.lists(st.integers(min_value=0, max_value=50), max_size=5),
    new=json_values,
)
def test_mutated_samples_correctly_signed_raise_only_intake_errors(index, path, new) -> None:
    f = dict(FIXTURES[index])
    if isinstance(f["body"], str):  # Jotform: mutate the answers inside rawRequest instead
        f["body"] = f["body"].replace('"q35_grade":"12"', f'"q35_grade":{json.dumps(new)}')
    else:
        f["body"] = _mutate(f["body"], path, new)
    d = signed(f, SECRET, NOW)
    with contextlib.suppress(IntakeError):
        accept(f["provider"], d, lambda _: SECRET)


@FUZZ
@given(body=st.binary(max_size=200) | json_values.map(lambda v: json.dumps({"events": v}).encode()))
def test_generic_events_raise_only_intake_errors(body) -> None:
    with contextlib.suppress(IntakeError):
        parse_events(body)
