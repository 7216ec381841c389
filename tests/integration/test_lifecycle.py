"""A workflow's lifecycle: deactivated, it takes no new contacts and either lets the ones inside finish or
cancels their scheduled steps; activated again, only events from then on count."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.events import ContactEvent
from stepwise.cli import main
from stepwise.simulate import DEFAULT_START, TABLE, Simulation
from tests.integration.support import at, contact, executions, messages, workflow

DRIP = """
name: drip
triggers: [{event: list.subscribed}]
reentry: always
steps:
  - id: hello
    send_email: {template: hello}
  - id: pause
    wait: 2d
  - id: follow-up
    send_email: {template: follow-up}
"""


def joined(eid: str, email: str, occurred: timedelta | None = None) -> ContactEvent:
    body = {"id": eid, "type": "list.subscribed", "contact": {"email": email}, "data": {"list": "news"}}
    if occurred is not None:
        body["occurred_at"] = (DEFAULT_START + occurred).isoformat()
    return ContactEvent.model_validate(body)


def reasons(sim: Simulation, email: str) -> list[str]:
    cid = contact(sim, email=email)["id"]
    return [r.why for _, r, _ in sim.routed if r.contact == cid and r.workflow == "drip"]


def test_deactivated_it_takes_nobody_new_and_lets_those_inside_finish_then_activated_only_new_events_count() -> None:
    with Simulation([workflow(DRIP)]) as sim:
        sim.send(joined("e1", "ann@example.com"))
        sim.advance(DEFAULT_START + timedelta(hours=1))
        status = sim.lifecycle.deactivate("drip")
        assert (status.active, status.since) == (False, DEFAULT_START + timedelta(hours=1))
        sim.send(joined("e2", "bob@example.com"))
        sim.advance(DEFAULT_START + timedelta(days=3))
        sim.lifecycle.activate("drip")
        # Delivered now, but it happened while the workflow was inactive: it does not count.
        sim.send(joined("e3", "cat@example.com", occurred=timedelta(days=2)))
        sim.send(joined("e4", "dan@example.com"))
        sim.finish()
        assert [t for _, _, t in messages(sim, email="ann@example.com")] == ["hello", "follow-up"]
        assert messages(sim, email="bob@example.com") == []
        assert reasons(sim, "bob@example.com") == [f"workflow is not active (deactivated {at(hours=1)})"]
        assert messages(sim, email="cat@example.com") == []
        assert reasons(sim, "cat@example.com") == [
            f"the event happened before the workflow was activated ({at(days=3)})"
        ]
        assert [t for _, _, t in messages(sim, email="dan@example.com")] == ["hello", "follow-up"]


def test_deactivate_cancel_scheduled_from_the_cli_stops_the_runs_under_way(capsys: pytest.CaptureFixture[str]) -> None:
    with Simulation([workflow(DRIP)]) as sim:
        sim.send(joined("e1", "ann@example.com"))
        sim.send(joined("e2", "eve@example.com"))
        sim.advance(DEFAULT_START + timedelta(days=1))
        where = ["--table", TABLE, "--machine-arn-template", sim.arn_template]
        assert main(["deactivate", "drip", "--cancel-scheduled", *where]) == 0
        out = capsys.readouterr().out
        assert out.splitlines() == [
            f"drip: inactive since {at(days=1)}",
            "cancelled 2 run(s) under way: their scheduled steps will not happen",
        ]
        sim.finish()
        assert [t for _, _, t in messages(sim, email="ann@example.com")] == ["hello"]  # follow-up never sent
        assert {e["status"] for e in executions(sim, "drip")} == {"ABORTED"}
        ann = sim.enroller.current(contact(sim, email="ann@example.com")["id"], "drip")
        assert ann is not None and (ann["status"], ann["stopped_because"]) == ("stopped", "workflow deactivated")
        assert main(["status", "drip", *where]) == 0
        assert capsys.readouterr().out == f"drip: inactive since {at(days=1)}\n"
        assert main(["activate", "drip", *where]) == 0
        sim.send(joined("e3", "ann@example.com"))  # re-entry always: she may start again
        sim.finish()
        assert [t for _, _, t in messages(sim, email="ann@example.com")] == ["hello", "hello", "follow-up"]


HANDOFF = """
name: handoff
triggers: [{event: form.submitted}]
steps:
  - id: go
    start_workflow: {workflow: drip}
"""


def test_a_deactivated_workflow_is_not_started_by_another_either() -> None:
    with Simulation([workflow(DRIP), workflow(HANDOFF)]) as sim:
        sim.lifecycle.deactivate("drip")
        sim.send(
            ContactEvent.model_validate(
                {"id": "f1", "type": "form.submitted", "contact": {"email": "fay@example.com"}, "data": {}}
            )
        )
        sim.finish()
        assert executions(sim, "drip") == []
        assert len(executions(sim, "handoff")) == 1


def test_status_of_a_workflow_never_switched(capsys: pytest.CaptureFixture[str]) -> None:
    with Simulation([workflow(DRIP)]) as sim:
        assert main(["status", "drip", "--table", TABLE, "--machine-arn-template", sim.arn_template]) == 0
        assert capsys.readouterr().out == "drip: active (never switched: active since deployed)\n"


def test_a_cancelling_deactivation_moves_the_runs_to_stopped_in_the_run_index() -> None:
    from shared.store.operations import OperationsStore

    with Simulation([workflow(DRIP)]) as sim:
        sim.send(joined("e1", "ann@example.com"))
        sim.send(joined("e2", "eve@example.com"))
        ops = OperationsStore(sim.store)
        assert {r.status for r in ops.runs("drip")} == {"running"}
        assert sim.lifecycle.deactivate("drip", cancel=True).cancelled == 2
        # What `stats` and `diff` read: no run still indexed as running, both as stopped, entered_at kept.
        assert list(ops.runs("drip", status="running")) == []
        stopped = sorted(ops.runs("drip", status="stopped"), key=lambda r: r.contact_id)
        ids = sorted(contact(sim, email=e)["id"] for e in ("ann@example.com", "eve@example.com"))
        assert [r.contact_id for r in stopped] == ids
        assert {r.entered_at for r in stopped} == {DEFAULT_START.isoformat()}
