"""Runaway budgets on the local stack: a workflow whose tag re-triggers itself (one email per run) is paused by the
deployment's message budget after the stated number of sends, or by its entry budget after the stated number of
entries; the status says why, the contact's history says why, the team gets an alert."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.budgets import Budgets, message_key
from shared.lifecycle import read_status
from shared.store.contacts import contact_pk
from shared.store.operations import OperationsStore
from shared.workflow.model import WorkflowFileError, load_workflow
from stepwise.ops.history import contact_history
from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import contact, event, history, workflow

LOOP = """
name: loop
triggers: [{event: tag.added, where: {tag: again}}]
reentry: always
steps:
  - id: mail
    send_email: {template: ping}
  - id: untag
    remove_tag: again
  - id: retag
    add_tag: again
"""


def _deployment(tmp_path: Path, settings: str) -> Path:
    (tmp_path / "stepwise.yaml").write_text(settings)
    (tmp_path / "loop.yaml").write_text(LOOP)
    return tmp_path / "loop.yaml"


def test_a_self_retriggering_workflow_is_paused_by_the_message_budget(tmp_path: Path) -> None:
    wf = load_workflow(
        _deployment(tmp_path, "settings:\n  budgets: {messages_per_contact_per_day: 10, alert: [ops@example.com]}\n")
    )
    with Simulation([wf]) as sim:
        sim.send(event("t1", "tag.added", {"tag": "again"}, email="ana@example.com"))
        sim.finish(timedelta(days=2))
        ana = contact(sim, email="ana@example.com")
        sent = [m for m in ana["messages"] if m["channel"] == "email"]
        assert len(sent) == 10  # the stated budget, not one more
        status = read_status(sim.store, "loop")
        assert not status.active and "runaway budget: 10 messages" in status.reason
        records = history(sim, "loop", email="ana@example.com")
        skipped = [h for h in records if h["step"] == "mail" and h["outcome"] == "skipped"]
        assert len(skipped) == 1 and "runaway budget" in skipped[0]["why"] and "paused" in skipped[0]["why"]
        assert any(h["kind"] == "budget" and "paused" in h["why"] for h in records)
        # The team is told: one alert message, queued for the sender.
        alerts = [m for m in ana["messages"] if m["channel"] == "alert"]
        assert len(alerts) == 1
        counter = sim.store.get_item(contact_pk(ana["id"]), message_key(DEFAULT_START))
        assert counter is not None and int(counter["count"]) == 10
        # The loop is over: the run after the pause is refused at entry, nothing runs on.
        entered = [r for _, r, _ in sim.routed if r.workflow == "loop" and r.action == "entered"]
        assert len(entered) == 11
        refused = [r for _, r, _ in sim.routed if r.workflow == "loop" and r.action == "not entered"]
        assert refused and "runaway budget" in refused[-1].why
        # `stepwise history` shows the pause and why.
        report = contact_history(OperationsStore(sim.store, sfn=sim.stack.sfn), "ana@example.com")
        assert any("runaway budget" in s["why"] for s in report["steps"])


def test_a_self_retriggering_workflow_is_paused_by_its_entry_budget() -> None:
    looping = LOOP.replace("  - id: retag", "  - id: pause\n    wait: 5m\n  - id: retag")
    looping += "settings:\n  budgets: {entries_per_hour: 5, alert: [ops@example.com]}\n"
    with Simulation([workflow(looping)]) as sim:
        sim.send(event("t1", "tag.added", {"tag": "again"}, email="bo@example.com"))
        sim.finish(timedelta(days=1))
        sent = [m for m in contact(sim, email="bo@example.com")["messages"] if m["channel"] == "email"]
        assert len(sent) == 5
        status = read_status(sim.store, "loop")
        assert not status.active and "5 entries per hour" in status.reason
        refused = [r for _, r, _ in sim.routed if r.workflow == "loop" and r.action == "not entered"]
        assert "runaway budget: 5 entries per hour" in refused[0].why
        records = history(sim, "loop", email="bo@example.com")
        assert any(h["kind"] == "budget" and "paused" in h["why"] and "5 entries per hour" in h["why"] for h in records)
        # The team is told, as for the message budget: exactly one alert message.
        alerts = [m for m in contact(sim, email="bo@example.com")["messages"] if m["channel"] == "alert"]
        assert len(alerts) == 1
        (alert,) = alerts
        assert alert["to"] == ["ops@example.com"] and alert["workflow"] == "loop" and alert["step"] == "(budget)"
        assert alert["subject"].startswith("Stepwise paused workflow loop: runaway budget: 5 entries per hour")


def test_budgets_are_checked_where_they_are_written(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not an email"):
        Budgets.model_validate({"alert": ["ops"]})
    with pytest.raises(WorkflowFileError, match="budgets"):
        load_workflow(_deployment(tmp_path, "settings:\n  budgets: {messages_per_contact_per_day: 0}\n"))
