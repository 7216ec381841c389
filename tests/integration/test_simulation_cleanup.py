"""A simulation that fails to start (a definition moto refuses) leaves no local stack installed behind it."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from stepwise import simulate
from stepwise.simulate import Simulation
from tests.integration.support import event, workflow

HELLO = workflow(
    """
name: hello
triggers: [{event: list.subscribed}]
steps:
  - id: tag
    add_tag: hi
"""
)


def test_a_refused_definition_uninstalls_the_stack_so_the_next_simulation_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(wf: Any, fn: str) -> dict[str, Any]:  # what a compiler bug would hand CreateStateMachine
        return {"StartAt": "Nowhere", "States": {}}

    with monkeypatch.context() as m:
        m.setattr(simulate, "compile_workflow", refused)
        with pytest.raises(ClientError), Simulation([HELLO]):
            pass
    # Before the fix: "stepwise.local patches are already installed" here.
    with Simulation([HELLO]) as sim:
        sim.send(event("e1", "list.subscribed", {"list": "news"}, email="ann@example.com"))
        assert "hi" in sim.store.get(sim.contacts()[0]).tags
