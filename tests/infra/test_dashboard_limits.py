"""A workflow at the largest size validate accepts gets dashboards CloudWatch takes (issue 11 item 1: "validate OK
means it deploys and runs").

Found here: 600 send_email steps in a row validated and synthesized one dashboard whose funnel graph read 1,201
metrics and whose widgets read 3,607 in all, past CloudWatch's 500 per widget and 2,500 per dashboard, so
PutDashboard (and the deploy) would refuse it. The per-step graphs and the funnel are now split into graphs of at
most GRAPH_SERIES lines, on as many dashboards as the quotas need. The limits asserted are CloudWatch's, not
today's sizes (docs/decision_log.md, 2026-12-02)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from infra.app import build_app
from infra.constructs.observability import (
    DASHBOARD_METRICS_LIMIT,
    DASHBOARD_WIDGETS_LIMIT,
    GRAPH_SERIES,
    WIDGET_METRICS_LIMIT,
)
from shared import constants as C
from tests.infra.conftest import SENDING_CONTEXT, Synth, cdk_json_context

STEPS = 600  # send_email steps in a row: validate accepts them (template-too-large does not refuse them)


def _flat(value: Any) -> str:
    """A dashboard body's Fn::Join made one string, with a stand-in for what only a deploy knows."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return str(sep).join(_flat(p) for p in parts)
    return "X"


def _bodies(template: dict[str, Any], prefix: str) -> dict[str, dict[str, Any]]:
    out = {}
    for res in template["Resources"].values():
        if res["Type"] == "AWS::CloudWatch::Dashboard":
            name = res["Properties"]["DashboardName"]
            if name == prefix or name.startswith(f"{prefix}-"):
                out[name] = json.loads(_flat(res["Properties"]["DashboardBody"]))
    return out


def test_a_workflow_at_the_largest_size_validate_accepts_fits_the_dashboard_quotas(tmp_path: Path) -> None:
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "big.yaml").write_text(
        "name: big\nsteps:\n" + "".join(f"  - {{id: s{i}, send_email: {{template: t{i}}}}}\n" for i in range(STEPS))
    )
    app, stack = build_app(
        context={**cdk_json_context(), **SENDING_CONTEXT, "workflows": str(folder)}, outdir=str(tmp_path / "out")
    )
    template = app.synth().get_stack_artifact(stack.artifact_id).template
    bodies = _bodies(template, "stepwise-dev-big")
    assert len(bodies) > 1  # one dashboard cannot hold them: more pages, not a refused deploy
    shown: set[tuple[str, str]] = set()
    for name, body in bodies.items():
        widgets = body["widgets"]
        assert len(widgets) <= DASHBOARD_WIDGETS_LIMIT, name
        series = [len(w["properties"].get("metrics", [])) for w in widgets]
        assert max(series) <= min(WIDGET_METRICS_LIMIT, 2 * GRAPH_SERIES + 1), (name, max(series))
        assert sum(series) <= DASHBOARD_METRICS_LIMIT, (name, sum(series))
        for w in widgets:
            for m in w["properties"].get("metrics", []):
                if m[:2] == [C.METRICS_NAMESPACE, C.METRIC_STEP_COMPLETED] or m[:2] == [
                    C.METRICS_NAMESPACE,
                    C.METRIC_MESSAGE_SENT,
                ]:
                    shown.add((m[1], m[m.index("step") + 1]))
    # Every step's completions and sends are still on a graph somewhere.
    for metric in (C.METRIC_STEP_COMPLETED, C.METRIC_MESSAGE_SENT):
        assert {s for m, s in shown if m == metric} == {f"s{i}" for i in range(STEPS)}, metric


def test_the_repos_workflows_keep_one_dashboard_each(synth: Synth) -> None:
    """Small workflows are unchanged in shape: one dashboard, no page 2 and no split graph."""
    for d in synth.of_type("AWS::CloudWatch::Dashboard").values():
        assert not re.search(r"\(\d+ of \d+\)", json.dumps(synth.resolve(d["Properties"]["DashboardBody"])))
    assert not any(synth.stack.observability.more_dashboards.values())
