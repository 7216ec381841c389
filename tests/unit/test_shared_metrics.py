"""shared/metrics.py: the one EMF writer behind the step runner's and the router's counts."""

from __future__ import annotations

import json

import pytest

from functions.step_runner import handler
from functions.trigger_router import router
from shared.metrics import emit_count


def test_a_count_is_one_emf_line_with_exactly_its_dimensions(capsys: pytest.CaptureFixture[str]) -> None:
    emit_count("Stepwise", "DeadLetter", {"source": "queue"})
    blob = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Stepwise"
    assert directive["Dimensions"] == [["source"]]
    assert directive["Metrics"] == [{"Name": "DeadLetter", "Unit": "Count"}]
    assert (blob["source"], blob["DeadLetter"]) == ("queue", [1.0])


def test_router_and_step_runner_write_the_same_lines(capsys: pytest.CaptureFixture[str]) -> None:
    lines = []
    for emit in (handler.emit_metric, router.emit_metric):
        emit("Stepwise")("GoalReached", "welcome", "bought", {"reason": "goal"})
        blob = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        del blob["_aws"]["Timestamp"]
        lines.append(blob)
    assert lines[0] == lines[1]
    assert lines[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["workflow", "step", "reason"]]
