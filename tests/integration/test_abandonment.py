"""Abandoned checkout, derived from checkout.started/updated on the local stack: the clock fires the schedules."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from shared.enrollment import stored_trigger
from shared.runtime.abandonment import KIND
from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import event, workflow

CART = {"cart_value": 80, "currency": "EUR", "products": [{"id": "p1", "title": "Mug"}], "url": "https://s/c/tok1"}

ABANDONED = """
name: abandoned
triggers:
  - event: checkout.abandoned
    where: {idle_minutes: {gt: 10}, cart_value: {gt: 50}}
steps:
  - id: remind
    wait: 30d
"""

LATER = """
name: later
triggers:
  - event: checkout.abandoned
    where: {idle_minutes: {gte: 60}}
steps:
  - id: hold
    wait: 30d
"""


def checkout(eid: str, etype: str = "checkout.started", token: str = "tok1", **data: Any) -> Any:
    return event(eid, etype, {"checkout_id": token, **CART, **data}, email="ann@example.com")


def entries(sim: Simulation, name: str) -> list[dict[str, Any]]:
    """(when, input event) of every run of the workflow."""
    import json

    out = []
    for arn in sim.execution_arns(name):
        desc = sim.stack.sfn.describe_execution(executionArn=arn)
        run_input = json.loads(desc["input"])  # ids only: the event is kept in the contact's partition
        event = stored_trigger(sim.store, run_input["contact_id"], run_input["event"])
        out.append({"at": desc["startDate"], "event": event})
    return sorted(out, key=lambda e: e["at"])


def at(minutes: float, seconds: int = 0) -> Any:
    return DEFAULT_START + timedelta(minutes=minutes, seconds=seconds)


@pytest.fixture
def sim() -> Any:
    with Simulation([workflow(ABANDONED), workflow(LATER)], DEFAULT_START) as s:
        yield s


def test_idle_checkout_enters_after_ten_minutes_with_its_cart(sim: Simulation) -> None:
    sim.send(checkout("c1"))
    sim.advance(at(10))
    assert entries(sim, "abandoned") == []  # exactly 10 minutes is not "more than 10"
    sim.advance(at(11))
    (entry,) = entries(sim, "abandoned")
    assert entry["at"] == at(10, 1)
    data = entry["event"]["data"]
    assert data["idle_minutes"] == pytest.approx(10.0167)
    assert {k: data[k] for k in ("checkout_id", "currency", "url")} == {
        "checkout_id": "tok1",
        "currency": "EUR",
        "url": "https://s/c/tok1",
    }
    assert float(data["cart_value"]) == 80
    assert data["products"] == CART["products"]
    assert entry["event"]["type"] == "checkout.abandoned"


def test_each_threshold_fires_at_its_own_time(sim: Simulation) -> None:
    sim.send(checkout("c1"))
    sim.advance(at(59))
    assert len(entries(sim, "abandoned")) == 1 and entries(sim, "later") == []
    sim.advance(at(61))
    (late,) = entries(sim, "later")
    assert late["at"] == at(60) and late["event"]["data"]["idle_minutes"] == 60
    assert len(entries(sim, "abandoned")) == 1  # the 60-minute firing does not enter the 10-minute one again


def test_an_order_within_ten_minutes_cancels(sim: Simulation) -> None:
    sim.send(checkout("c1"))
    sim.advance(at(5))
    sim.send(event("o1", "order.paid", {"order_id": "1001", "checkout_id": "tok1"}, email="ann@example.com"))
    assert sim.schedules.pending() == []  # both thresholds' schedules deleted
    sim.advance(at(120))
    assert entries(sim, "abandoned") == [] and entries(sim, "later") == []
    # A late update of the converted checkout (a reordered delivery) schedules nothing either.
    sim.send(checkout("c2", "checkout.updated"))
    assert [s.payload["kind"] for s in sim.schedules.pending()] == []


def test_an_update_restarts_the_idle_clock(sim: Simulation) -> None:
    sim.send(checkout("c1"))
    sim.advance(at(8))
    sim.send(checkout("c2", "checkout.updated", cart_value=120))
    sim.advance(at(17))
    assert entries(sim, "abandoned") == []  # not at +10: the update at +8 moved it
    sim.advance(at(19))
    (entry,) = entries(sim, "abandoned")
    assert entry["at"] == at(18, 1) and float(entry["event"]["data"]["cart_value"]) == 120
    sim.advance(at(90))
    assert [e["at"] for e in entries(sim, "later")] == [at(68)]


def test_a_redelivered_checkout_event_schedules_nothing_new(sim: Simulation) -> None:
    sim.send(checkout("c1"))
    first = sorted(s.name for s in sim.schedules.pending())
    assert len(first) == 2 and all(s.payload["kind"] == KIND for s in sim.schedules.pending())
    sim.advance(at(3))
    sim.send(checkout("c1"))  # the same delivery again, three minutes later
    assert sorted(s.name for s in sim.schedules.pending()) == first
    sim.advance(at(120))
    assert [e["at"] for e in entries(sim, "abandoned")] == [at(10, 1)]
    assert [e["at"] for e in entries(sim, "later")] == [at(60)]
