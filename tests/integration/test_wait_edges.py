"""Waits at the edges of a flow: a timeout with nothing after it, a timeout into another wait, a go-to after a
wait (it is a loop and counts against settings.max_loops), an end after a wait."""

from __future__ import annotations

from datetime import timedelta

import yaml

from shared.events import ContactEvent
from shared.store.contacts import contact_pk
from shared.workflow.model import parse_workflow
from stepwise.simulate import DEFAULT_START, Simulation


def ev(eid: str, etype: str, data: dict) -> ContactEvent:
    return ContactEvent.model_validate(
        {"id": eid, "type": etype, "contact": {"email": "ida@example.com"}, "data": data}
    )


def wf(text: str):  # type: ignore[no-untyped-def]
    return parse_workflow(yaml.safe_load(text))


def records(sim: Simulation) -> list[tuple[str, str, str]]:
    (c,) = sim.summary()["contacts"]
    return [(h["at"], h["step"], h["outcome"]) for h in sim.store.history(c["id"])]


def at(**delta: float) -> str:
    return (DEFAULT_START + timedelta(**delta)).isoformat()


def test_a_timeout_with_nothing_after_it_is_recorded_when_it_happens() -> None:
    flow = wf("""
name: hold-then-end
triggers: [{event: checkout.abandoned}]
steps:
  - id: hello
    add_tag: Browsing
  - id: hold
    wait_until: {event: order.paid, timeout: 2d}
""")
    with Simulation([flow]) as sim:
        sim.send(ev("e1", "checkout.abandoned", {"checkout_id": "k"}))
        sim.finish()
        assert records(sim) == [
            (at(), "hello", "done"),
            (at(), "hold", "waiting"),
            (at(days=2), "hold", "timed out"),
        ]
        (c,) = sim.summary()["contacts"]
        assert sim.store.query_prefix(contact_pk(c["id"]), "WAIT#", live_only=False) == []
        (arn,) = sim.execution_arns("hold-then-end")
        assert sim.stack.sfn.describe_execution(executionArn=arn)["status"] == "SUCCEEDED"


def test_a_timeout_into_a_wait_and_an_end_records_each_at_its_time() -> None:
    flow = wf("""
name: grace
triggers: [{event: checkout.abandoned}]
steps:
  - id: hold
    wait_until:
      event: order.paid
      timeout: 1d
      on_timeout:
        - id: grace
          wait: 3h
        - id: stop
          end: gave up
""")
    with Simulation([flow]) as sim:
        sim.send(ev("e1", "checkout.abandoned", {"checkout_id": "k"}))
        sim.finish()
        assert records(sim) == [
            (at(), "hold", "waiting"),
            (at(days=1), "hold", "timed out"),
            (at(days=1), "grace", "waiting"),
            (at(days=1, hours=3), "stop", "ended"),
        ]


def test_a_goto_after_a_wait_is_a_loop_bounded_by_max_loops() -> None:
    flow = wf("""
name: nag
triggers: [{event: checkout.abandoned}]
settings: {max_loops: 3}
steps:
  - id: nag
    send_email: {template: come-back}
  - id: pause
    wait: 1d
  - goto: nag
""")
    with Simulation([flow]) as sim:
        sim.send(ev("e1", "checkout.abandoned", {"checkout_id": "k"}))
        sim.finish()
        (c,) = sim.summary()["contacts"]
        # The first email and one per jump allowed: 1 + 3, a day apart. The fourth jump is one too many: the run
        # ends where the contact meets it, after the last pause (as the docs and the reference interpreter say: a
        # goal met during that pause is still reached).
        assert [m["at"] for m in c["messages"]] == [at(days=d) for d in range(4)]
        assert records(sim)[-3:] == [
            (at(days=3), "nag", "done"),
            (at(days=3), "pause", "waiting"),
            (at(days=4), "loop-limit", "ended"),
        ]
        (arn,) = sim.execution_arns("nag")
        assert sim.stack.sfn.describe_execution(executionArn=arn)["status"] == "SUCCEEDED"
