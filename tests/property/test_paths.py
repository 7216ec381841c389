"""The path enumeration the property test drives contacts down (tests/property/paths.py), on small workflows whose
paths can be listed by hand: if it missed a path, the property would silently stop testing it."""

from __future__ import annotations

from typing import Any

import yaml

from shared.workflow.model import parse_workflow
from tests.property.paths import Paths, Signal, address, covering, taken
from tests.property.strategies import GOALS, NAME, steered


def paths(steps: list[dict[str, Any]], max_loops: int = 1) -> list[list[tuple[str, str | None]]]:
    wf = parse_workflow({"name": NAME, "settings": {"max_loops": max_loops}, "steps": steps}, "t.yaml")
    return [p.expected for p in Paths(wf).all()]


def test_if_then_else_and_a_branch_after_it_multiply() -> None:
    found = paths(
        [
            {"id": "i", "if": steered("i", "then", {"has_tag": "x"}), "then": [{"id": "t", "add_tag": "a"}]},
            {"id": "b", "branch": [{"name": "c0", "when": steered("b", "c0", {"has_tag": "y"}), "steps": []}]},
        ]
    )
    assert found == [
        [("i", "branch then"), ("t", None), ("b", "branch c0")],
        [("i", "branch then"), ("t", None), ("b", "branch otherwise")],
        [("i", "branch else"), ("b", "branch c0")],
        [("i", "branch else"), ("b", "branch otherwise")],
    ]


def test_a_wait_is_met_or_times_out_and_a_goal_after_it_is_met_while_waiting() -> None:
    found = paths(
        [
            {"id": "w", "wait_until": {"event": "custom.ping", "timeout": "1h", "on_timeout": [{"end": True}]}},
            {"id": "g", "goal": {**GOALS[0], "otherwise": "end"}},
            {"id": "a", "add_tag": "z"},
        ]
    )
    assert found == [
        [("w", "waiting"), ("w", "resumed"), ("g", "not reached")],
        [("w", "waiting"), ("w", "timed out"), ("end-0-on-timeout-0", "ended")],
        [("w", "waiting"), ("g", "reached"), ("a", None)],
    ]


def test_a_condition_goal_is_also_met_on_entry() -> None:
    found = paths([{"id": "a", "add_tag": "z"}, {"id": "g", "goal": GOALS[2]}, {"id": "b", "add_tag": "y"}])
    assert found == [[("a", None), ("g", "not reached"), ("b", None)], [("g", "reached"), ("b", None)]]


def test_a_loop_takes_its_decision_the_same_way_and_stops_at_max_loops() -> None:
    found = paths(
        [
            {"id": "w", "wait": "1h"},
            {"id": "i", "if": steered("i", "then", {"has_tag": "x"}), "then": [{"goto": "w"}]},
        ]
    )
    assert found == [
        [("w", "waiting"), ("i", "branch then"), ("w", "waiting"), ("i", "branch then"), ("loop-limit", "ended")],
        [("w", "waiting"), ("i", "branch else")],
    ]


def test_split_paths_get_an_address_in_their_bucket() -> None:
    steps = [{"id": "s", "split": [{"name": "p0", "percent": 1, "steps": []}, {"name": "p1", "percent": 99}]}]
    wf = parse_workflow({"name": NAME, "steps": steps}, "t.yaml")
    found = Paths(wf).all()
    assert [p.splits for p in found] == [{"s": "p0"}, {"s": "p1"}]
    assert address(0, {"s": "p0"}, wf) != address(0, {"s": "p1"}, wf)


def test_the_steering_the_strategy_writes_loads() -> None:
    wf = parse_workflow(
        yaml.safe_load(
            yaml.safe_dump({"name": NAME, "steps": [{"id": "i", "if": steered("i", "then", {"has_tag": "x"})}]})
        ),
        "t.yaml",
    )
    assert [p.route for p in Paths(wf).all()] == [{"go-i-then"}, set()]


def test_covering_keeps_every_choice() -> None:
    steps = [
        {"id": f"i{n}", "if": steered(f"i{n}", "then", {"has_tag": "x"}), "then": [{"id": f"t{n}", "add_tag": "a"}]}
        for n in range(5)
    ]
    wf = parse_workflow({"name": NAME, "steps": steps}, "t.yaml")
    every = Paths(wf).all()
    assert len(every) == 32
    chosen = covering(every)
    assert len(chosen) == 2
    assert {c for p in chosen for c in p.choices} == {f"i{n}:{b}" for n in range(5) for b in ("then", "else")}


def test_taken_wants_every_expected_record_in_order() -> None:
    records = [("a", "done"), ("i", "branch then"), ("w", "waiting"), ("w", "resumed")]
    assert taken([("a", None), ("w", "resumed")], records) == ""
    assert taken([("w", "resumed"), ("a", None)], records) == "missing ('a', None) (after [('w', 'resumed')])"
    assert taken([("i", "branch else")], records) == "missing ('i', 'branch else') (after [])"
    assert Signal("x", (("k", 1),)).as_data() == {"k": 1}
