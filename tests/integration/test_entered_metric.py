"""Entered is counted once per new execution: the funnel's denominator on the dashboards."""

from __future__ import annotations

from datetime import timedelta

from shared.events import ContactEvent
from shared.workflow.model import load_workflow
from stepwise.simulate import DEFAULT_START, Simulation, TimedEvent


def test_entered_counted_once_per_new_execution_not_on_duplicates() -> None:
    wf = load_workflow("workflows/welcome-series.yaml")
    e = ContactEvent.model_validate(
        {"id": "s1", "type": "list.subscribed", "contact": {"email": "m@example.com"}, "data": {"list": "newsletter"}}
    )
    other = ContactEvent.model_validate(
        {"id": "s2", "type": "list.subscribed", "contact": {"email": "n@example.com"}, "data": {"list": "newsletter"}}
    )
    with Simulation([wf]) as sim:
        sim.run(
            [
                TimedEvent(DEFAULT_START, e),
                TimedEvent(DEFAULT_START + timedelta(minutes=1), e),
                TimedEvent(DEFAULT_START, other),
            ]
        )
        assert sim.metrics[("Entered", "welcome-series", "entry")] == 2
