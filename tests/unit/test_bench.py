"""bench/run.py's floor: every example path costs exactly the transitions the design allows, and the floor is right."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from shared.workflow.compiler import compile_workflow
from shared.workflow.lint import lint
from shared.workflow.model import DEPLOYMENT_FILE, Workflow, load_workflow, parse_workflow, workflow_files

ROOT = Path(__file__).resolve().parents[2]
ARN = "arn:aws:lambda:us-east-1:123456789012:function:stepwise-step-runner"


def _load_bench() -> ModuleType:
    # bench/ is a folder of scripts, not a package: load run.py by path.
    spec = importlib.util.spec_from_file_location("stepwise_bench_run", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


bench = _load_bench()
EXAMPLES = workflow_files(ROOT / "workflows")


def _wf(steps: list[dict[str, Any]], **extra: Any) -> Workflow:
    return parse_workflow({"name": "probe", **extra, "steps": steps})


def _floors(wf: Workflow) -> dict[str, int]:
    return {" > ".join(p.route): p.floor for p in bench.floor_paths(wf)}


def test_every_shipped_workflow_is_checked() -> None:
    # Every workflow file in workflows/ (not the samples folder, not a deployment file) has its floor checked.
    settings = {DEPLOYMENT_FILE, "stepwise.yml"}
    shipped = sorted(
        p for p in (ROOT / "workflows").iterdir() if p.suffix in (".yaml", ".yml") and p.name not in settings
    )
    assert shipped and shipped == EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_path_costs_the_floor(path: Path) -> None:
    wf = load_workflow(path)
    asl = compile_workflow(wf, ARN)
    rows = bench.compare(wf, asl)
    # The rows are the model's paths and together pass through every step that is a state of the machine, so no
    # path goes unchecked (a row missing either side shows up in `off` as None against a number).
    model = bench.floor_paths(wf)
    assert {tuple(r.route) for r in rows} <= {p.route for p in model}
    step_states = {k for p in model for k in p.visited} & set(asl["States"])
    assert step_states and step_states <= {s for r in rows for s in r.states}
    off = [
        f"{' > '.join(r.route) or ' -> '.join(r.states)}: cost.py {r.predicted}, floor {r.floor}"
        for r in rows
        if r.predicted != r.floor
    ]
    assert off == []


def test_floor_of_the_abandoned_checkout_by_hand() -> None:
    # Entry 1, remind 1, wait-a-day 1, purchased 2 (Task + Choice), wait-for-purchase 1 = 6; the else branch adds
    # remind-again's Task; a timeout is caught into a Succeed state (a Catch cannot end the execution): +1.
    floors = _floors(load_workflow(ROOT / "workflows" / "abandoned-checkout.yaml"))
    assert floors == {
        "remind > wait-a-day > purchased=then > goto wait-for-purchase > wait-for-purchase (resumed)": 6,
        "remind > wait-a-day > purchased=then > goto wait-for-purchase > wait-for-purchase (timed out)": 7,
        "remind > wait-a-day > purchased=else > remind-again > wait-for-purchase (resumed)": 7,
        "remind > wait-a-day > purchased=else > remind-again > wait-for-purchase (timed out)": 8,
    }


def test_floor_of_branch_split_and_empty_branches_by_hand() -> None:
    wf = _wf(
        [
            {
                "id": "tier",
                "branch": [
                    {"name": "gold", "when": {"has_tag": "gold"}, "steps": [{"id": "thank", "add_tag": "vip"}]},
                    {"name": "silver", "when": {"has_tag": "silver"}, "steps": []},
                ],
                "otherwise": [],
            },
            {"id": "ab", "split": [{"name": "a", "percent": 50, "steps": [{"id": "pause", "wait": "1d"}]},
                                   {"name": "b", "percent": 50, "steps": []}]},
        ]
    )  # fmt: skip
    floors = _floors(wf)
    # Entry 1 + tier 2 (+ thank 1) + ab 2, then a Wait that can end (+1) or the split's Choice, which cannot (+1 Done).
    assert floors["tier=gold > thank > ab=a > pause"] == 7
    assert floors["tier=gold > thank > ab=b"] == 7
    assert floors["tier=silver > ab=a > pause"] == 6
    assert floors["tier=otherwise > ab=b"] == 6
    rows = bench.compare(wf, compile_workflow(wf, ARN))
    assert all(r.predicted == r.floor for r in rows)


def test_consecutive_actions_are_one_run_unless_a_goto_lands_inside() -> None:
    wf = _wf(
        [
            {"id": "a", "add_tag": "x"},
            {"id": "b", "send_email": {"template": "t"}},
            {"id": "pause", "wait": "1d"},
            {"id": "c", "add_tag": "y"},
            {"id": "d", "add_tag": "z"},
            {"id": "again", "if": {"has_tag": "stop"}, "then": [], "else": [{"goto": "b"}]},
        ]
    )
    assert lint(wf) == []
    (only,) = bench.floor_paths(wf)  # the else branch loops back to b: a loop, not a path
    # Entry 1, a 1, b 1 (a go-to target starts its own Task), pause 1, [c d] 1, again 2, Done after the Choice 1.
    assert only.floor == 8
    assert dict(only.parts)["action runs"] == 3


def test_goal_with_otherwise_end_is_a_decision() -> None:
    wf = _wf([{"id": "pause", "wait": "1d"}, {"id": "bought", "goal": {"event": "order.paid", "otherwise": "end"}}])
    assert sorted(_floors(wf).values()) == [5, 5]  # Entry, pause, goal Task + Choice, and Done after the Choice


def test_start_delay_is_counted_only_when_a_trigger_has_one() -> None:
    steps = [{"id": "a", "add_tag": "x"}]
    assert bench.start_delay_extra(_wf(steps, triggers=[{"event": "tag.added", "delay": "5m"}])) == 1
    assert bench.start_delay_extra(_wf(steps, triggers=[{"event": "tag.added"}])) == 0


@pytest.mark.parametrize(
    "steps",
    [
        [{"id": "pause", "wait": "1d"}, {"id": "stop", "end": "done"}],
        [{"id": "pause", "wait": "1d"}, {"id": "bought", "goal": {"event": "order.paid"}}, {"id": "stop", "end": "x"}],
    ],
    ids=["wait-then-end", "goal-then-end"],
)
def test_an_end_after_a_wait_or_goal_costs_nothing(steps: list[dict[str, Any]]) -> None:
    wf = _wf(steps)
    rows = bench.compare(wf, compile_workflow(wf, ARN))
    assert [(r.predicted, r.floor) for r in rows if r.predicted != r.floor] == []


def test_the_generated_workflow_has_the_size_asked_and_lints_clean() -> None:
    wf = parse_workflow(bench.generated_workflow(200))
    assert sum(1 for _ in wf.walk()) == 200
    assert {s.kind for s, _ in wf.walk()} >= {"add_tag", "send_email", "wait", "if", "goto", "branch", "wait_until"}
    assert lint(wf) == []


@pytest.mark.parametrize(
    ("steps", "floors"),
    [
        # resumed: Entry, hold; timed out: Entry, hold, the Task recording the timeout (it ends the execution).
        ([{"id": "hold", "wait_until": {"event": "order.paid", "timeout": "1d"}}], [2, 3]),
        # timed out into a wait: the recording Task, then the Wait.
        (
            [
                {
                    "id": "hold",
                    "wait_until": {
                        "event": "order.paid",
                        "timeout": "1d",
                        "on_timeout": [{"id": "grace", "wait": "1d"}, {"id": "stop", "end": "gave up"}],
                    },
                }
            ],
            [2, 4],
        ),
        # timed out into an action: that Task records the timeout, nothing extra.
        (
            [
                {
                    "id": "hold",
                    "wait_until": {"event": "order.paid", "timeout": "1d", "on_timeout": [{"id": "t", "add_tag": "x"}]},
                }
            ],
            [2, 3],
        ),
    ],
    ids=["timeout-to-end", "timeout-to-wait", "timeout-to-action"],
)
def test_a_timeout_is_recorded_at_the_floor(steps: list[dict[str, Any]], floors: list[int]) -> None:
    wf = _wf(steps)
    rows = bench.compare(wf, compile_workflow(wf, ARN))
    assert sorted(r.floor for r in rows if r.floor is not None) == floors
    assert [(r.predicted, r.floor) for r in rows if r.predicted != r.floor] == []
