"""`stepwise stats --since`: the message counts are per entry like every other figure: an event of a message sent by
a run entered before `since` is not counted, even when it happens inside the window; one of a run entered since is,
also when a goal's jump restarted that run (the restarted execution goes on with the same entry)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from shared import constants as C
from shared.store.operations import OperationsStore
from shared.store.run_index import message_event_keys, message_run, parse_funnel_sk
from stepwise.ops.stats import TableSource
from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import contact, event, workflow

ROOT = Path(__file__).resolve().parents[2]
NURTURE = """
name: nurture
triggers: [{event: list.subscribed}]
steps:
  - id: hello
    send_email: {template: welcome-email, subject: Hi}
  - id: pause
    wait: 3d
  - id: bought
    goal: {event: order.paid}
  - id: thanks
    send_email: {template: welcome-email, subject: Thanks}
"""
ANA, BO = "ana@example.com", "bo@example.com"


def opened(sim: Simulation, email: str, step: str, eid: str) -> None:
    """The contact opens the message the workflow sent it at `step` (the provider's event names our message id)."""
    cid = contact(sim, email=email)["id"]
    (msg,) = [m for m in sim.store.messages(cid) if m.get("step") == step]
    sim.send(event(eid, "email.opened", {"message_id": msg["message_id"]}, email=email))


def test_message_events_count_for_the_entries_made_since(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(C.ENV_TEMPLATES_DIR, str(ROOT / "templates"))  # the messages go out (SES on moto)
    with Simulation([workflow(NURTURE)]) as sim:
        sim.send(event("s-ana", "list.subscribed", {"list": "news"}, email=ANA))  # an old entry
        sim.advance(DEFAULT_START + timedelta(days=10))
        sim.send(event("s-bo", "list.subscribed", {"list": "news"}, email=BO))  # a new one
        sim.advance(sim.now + timedelta(hours=1))
        sim.send(event("o-bo", "order.paid", {"total": 5}, email=BO))  # the goal: Bo's run jumps, restarted
        opened(sim, ANA, "hello", "op-ana")  # inside the window, of a message of the old entry
        opened(sim, BO, "hello", "op-bo-1")
        opened(sim, BO, "thanks", "op-bo-2")  # sent by the restarted execution
        ops = OperationsStore(sim.store)

        week = TableSource(ops).funnel("nurture", DEFAULT_START + timedelta(days=9))
        assert week.entered == 1
        assert week.messages["opened"] == 2  # Bo's two; Ana's open (day 10) is of her day-0 entry
        assert week.messages["sent"] == 2  # Bo's hello and thanks
        everything = TableSource(ops).funnel("nurture", DEFAULT_START - timedelta(days=1))
        assert everything.entered == 2
        assert everything.messages["opened"] == 3
        assert everything.messages["sent"] == 4  # and Ana's hello and thanks (her goal not met: it goes on)
        # Each message event's key names the run that sent it.
        keys = [e for e in ops.funnel("nurture", DEFAULT_START - timedelta(days=1)) if e.mark == "msg"]
        assert keys and all(message_run(k.run)[0].startswith("nurture-") for k in keys)


def test_a_message_event_key_without_its_run_is_read_as_before() -> None:
    data = {"workflow": "w", "message_id": "m1"}
    at = "2026-11-01T00:00:00+00:00"
    old = parse_funnel_sk(message_event_keys("email.opened", data, at, contact_id="c1")[C.GSI1_SK])
    new = parse_funnel_sk(message_event_keys("email.opened", data, at, "w-run1", contact_id="c1")[C.GSI1_SK])
    assert (old.mark, old.name, message_run(old.run)) == ("msg", "opened", ("", "m1"))
    assert (new.mark, new.name, message_run(new.run)) == ("msg", "opened", ("w-run1", "m1"))
    assert message_event_keys("tag.added", data, at, "w-run1", contact_id="c1") == {}
