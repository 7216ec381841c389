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
    # pydantic (~150 ms with its first model, about half a bare boto3): the intake loads it with the first delivery
    # it validates, the sender never (it validates nothing it did not write); shared/events_base.py.
    "functions.trigger_router.intake": (*COMPILE_TIME, "pydantic"),
    # Powertools (any of it loads its Logger, Metrics and Tracer): with the router's first invocation.
    "functions.trigger_router.router": (*COMPILE_TIME, "aws_lambda_powertools"),
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


# The router's own modules on its import path: plain run-time forms, no pydantic (the event and its contact, the
# queue message, the form types, the settings, the run-time entry plans). What still brings pydantic to the
# router's import is listed in ROUTER_PYDANTIC_VIA until it is gone; then "pydantic" joins the router's HANDLERS.
ROUTER_PLAIN = (
    "shared.events",
    "shared.runtime.inbound",
    "shared.intake.form_types",
    "functions.trigger_router.settings",
    "shared.lifecycle",
    "shared.store.contacts",
    "shared.workflow.runtime",
)
ROUTER_PYDANTIC_VIA = {"shared.budgets", "shared.history"}


def test_the_routers_own_run_time_modules_load_no_pydantic() -> None:
    loaded = loaded_after("\n".join(f"import {m}" for m in ROUTER_PLAIN))
    assert set(ROUTER_PLAIN) <= loaded
    assert "pydantic" not in loaded, "a run-time module of the router's imports pydantic"


def test_the_router_imports_pydantic_only_through_the_modules_listed() -> None:
    code = (
        "import builtins, sys\n"
        "via = set()\n"
        "real = builtins.__import__\n"
        "def spy(name, globals=None, *a, **k):\n"
        "    if name == 'pydantic' or name.startswith('pydantic.'):\n"
        "        via.add((globals or {}).get('__name__', '?'))\n"
        "    return real(name, globals, *a, **k)\n"
        "builtins.__import__ = spy\n"
        "import functions.trigger_router.router\n"
        "builtins.__import__ = real\n"
        "print(sorted(m for m in via if not m.startswith('pydantic')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    importers = set(json.loads(out.stdout.splitlines()[-1].replace("'", '"')))
    assert importers <= ROUTER_PYDANTIC_VIA, f"pydantic reaches the router's import through {sorted(importers)}"


def test_a_provider_is_loaded_alone_when_first_asked_for() -> None:
    loaded = loaded_after("from shared import intake\nassert intake.provider('stripe').name == 'stripe'")
    assert {p for p in PROVIDER_MODULES if f"shared.intake.{p}" in loaded} == {"stripe"}


def test_every_provider_listed_is_the_class_its_module_names() -> None:
    from shared import intake

    assert intake.provider("nosuch") is None
    assert set(intake.NAMES) == set(PROVIDER_MODULES)
    assert {name: p.name for name, p in intake.PROVIDERS.items()} == {n: n for n in PROVIDER_MODULES}
