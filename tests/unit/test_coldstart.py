"""Each Lambda handler's import (its cold start) loads none of what only compile time needs.

A fresh interpreter per handler: what an import drags in shows in sys.modules only before anything else loaded it.
Lint, the compiler and PyYAML belong to `stepwise validate` and `cdk synth`; Jinja2 only to the sender's first
render; the webhook providers load one by one, as a delivery names them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPILE_TIME = ("yaml", "shared.workflow.lint", "shared.workflow.compiler", "shared.workflow.loader", "jinja2")
HANDLERS = {
    # pydantic (~150 ms with its first model, about half a bare boto3): the intake never loads it (its events and
    # queue message are plain classes: shared/events.py, shared/runtime/inbound.py), the sender neither (it
    # validates nothing it did not write).
    "functions.trigger_router.intake": (*COMPILE_TIME, "pydantic"),
    # The router reads its queue messages, events, settings, form types and entry plans into plain classes;
    # Powertools (any of it loads its Logger, Metrics and Tracer) with its first invocation.
    "functions.trigger_router.router": (*COMPILE_TIME, "pydantic", "aws_lambda_powertools"),
    # The step runner reads its Task payload, its steps, send rules and entry plans into plain classes
    # (functions/step_runner/request.py, shared/workflow/runtime.py, shared/messaging/windows.py and caps.py).
    "functions.step_runner.handler": (*COMPILE_TIME, "pydantic"),
    "functions.senders.handler": (
        *COMPILE_TIME,
        "pydantic",
    ),  # Jinja2 too: loaded on the first render (templates._environment)
}
PROVIDER_MODULES = ("shopify", "woocommerce", "stripe", "typeform", "tally", "calendly", "webflow", "jotform")


def loaded_after(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.splitlines()[-1]))


@pytest.mark.parametrize("handler", sorted(HANDLERS))
def test_handler_import_loads_no_compile_time_module(handler: str) -> None:
    loaded = loaded_after(f"import {handler}")
    assert handler in loaded
    dragged = sorted(m for m in HANDLERS[handler] if m in loaded)
    assert dragged == [], f"import {handler} loads {dragged}: compile-time only"
    assert not any(m == "moto" or m.startswith("moto.") for m in loaded), f"import {handler} loads moto"
    providers = sorted(p for p in PROVIDER_MODULES if f"shared.intake.{p}" in loaded)
    assert providers == [], f"import {handler} loads provider module(s) {providers}"


def test_a_delivery_through_intake_and_queue_loads_no_pydantic() -> None:
    """What the intake's first call and the router's first record read: a provider's delivery normalised, its
    queue message written and parsed back, a POST /events body: plain classes all (no pydantic on either's first
    call)."""
    loaded = loaded_after(
        "from datetime import UTC, datetime\n"
        "from shared.intake.generic import parse_events\n"
        "from shared.intake.pipeline import accept\n"
        "from shared.intake.testing import delivery, load_fixture\n"
        "from shared.runtime.inbound import AcceptedDelivery, dumps, event_json\n"
        "d = delivery(load_fixture('shopify', 'orders/paid'), datetime.now(UTC))\n"
        "a = accept('shopify', d, lambda _: None, allow_unverified=True)\n"
        "m = AcceptedDelivery(dedupe_key='k', archive_key='a', provider='shopify', verified=True, test=False,"
        " events=a.events)\n"
        "back = AcceptedDelivery.parse(dumps(m.message([event_json(e) for e in a.events])))\n"
        "assert back.events == a.events and len(a.events) == 1\n"
        'parse_events(b\'{"id": "w1", "type": "page.visited", "contact": {"email": "a@example.com"}}\')'
    )
    assert "shared.intake.shopify" in loaded and "pydantic" not in loaded


def test_a_provider_is_loaded_alone_when_first_asked_for() -> None:
    loaded = loaded_after("from shared import intake\nassert intake.provider('stripe').name == 'stripe'")
    assert {p for p in PROVIDER_MODULES if f"shared.intake.{p}" in loaded} == {"stripe"}


def test_every_provider_listed_is_the_class_its_module_names() -> None:
    from shared import intake

    assert intake.provider("nosuch") is None
    assert set(intake.NAMES) == set(PROVIDER_MODULES)
    assert {name: p.name for name, p in intake.PROVIDERS.items()} == {n: n for n in PROVIDER_MODULES}
