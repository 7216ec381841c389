"""The step runner's metrics are CloudWatch EMF with workflow and step as dimensions, never a contact id."""

from __future__ import annotations

import json

import pytest

from functions.step_runner.handler import emit_metric


def test_emf_dimensions_are_workflow_step_and_branch(capsys: pytest.CaptureFixture[str]) -> None:
    emit_metric("Stepwise")("BranchTaken", "abandoned-checkout", "purchased", {"branch": "else"})
    blob = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Stepwise"
    assert directive["Dimensions"] == [["workflow", "step", "branch"]]
    assert directive["Metrics"] == [{"Name": "BranchTaken", "Unit": "Count"}]
    assert (blob["workflow"], blob["step"], blob["branch"], blob["BranchTaken"]) == (
        "abandoned-checkout",
        "purchased",
        "else",
        [1.0],
    )
    assert not any("contact" in k for k in blob)
