"""Entry plans: which passive steps a run meets before its first Task, per place it can start."""

from __future__ import annotations

import yaml

from shared.history import EntryPlan, dump_entry_plans, load_entry_plans
from shared.workflow.compiler import entry_plan, entry_plans
from shared.workflow.model import parse_workflow

FLOW = """
name: nurture
triggers: [{event: form.submitted, delay: 5m}]
settings: {history_days: 10}
steps:
  - id: breathe
    wait: 1h
  - id: hello
    send_email: {template: hello}
  - id: bye
    end: merged into hello's Task
  - id: unused
    wait: 2d
"""
BRANCHY = """
name: branchy
triggers: [{event: form.submitted}]
steps:
  - id: which
    if: {has_tag: vip}
    then:
      - id: vip-pause
        wait: 1d
      - id: vip-end
        end: done with VIPs
    else:
      - id: regular
        add_tag: regular
      - goto: vip-pause
"""


def wf(text: str):  # type: ignore[no-untyped-def]
    return parse_workflow(yaml.safe_load(text))


def test_a_workflow_opening_with_a_wait_plans_it_for_a_start_and_for_a_resume_there() -> None:
    plan = entry_plan(wf(FLOW))
    breathe = [{"id": "breathe", "kind": "wait", "seconds": 3600}]
    assert plan.history_days == 10
    # "bye" ends hello's Task, which records it. "unused" is after the end, yet the Entry Choice can resume there.
    assert plan.ahead == {
        "": breathe,
        "breathe": breathe,
        "unused": [{"id": "unused", "kind": "wait", "seconds": 172800}],
    }
    assert plan.passive("") == breathe and plan.passive("hello") == []


def test_waits_and_ends_inside_branches_are_planned_only_as_resume_targets() -> None:
    plan = entry_plan(wf(BRANCHY))
    assert plan.passive("") == []  # the run opens with a decision, a Task
    assert plan.ahead == {
        "vip-pause": [
            {"id": "vip-pause", "kind": "wait", "seconds": 86400},
            {"id": "vip-end", "kind": "end", "reason": "done with VIPs"},
        ],
        "vip-end": [{"id": "vip-end", "kind": "end", "reason": "done with VIPs"}],
    }


def test_plans_file_round_trips_and_refuses_unknown_fields(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plans = entry_plans([wf(FLOW), wf(BRANCHY)])
    path = tmp_path / "plans.json"
    path.write_bytes(dump_entry_plans(plans))
    assert load_entry_plans(path) == plans
    assert list(load_entry_plans(path)) == ["branchy", "nurture"]
    path.write_text('{"x": {"version": "v", "history_days": 30, "extra": 1}}')
    try:
        load_entry_plans(path)
    except ValueError as err:
        assert "extra" in str(err)
    else:
        raise AssertionError("an unknown field was accepted")
    assert EntryPlan(version="v", history_days=30).passive("") == []


def test_the_lambdas_read_the_plans_file_into_run_time_plans_equal_to_the_compiled_ones(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from shared.workflow import runtime

    flow = wf(FLOW.replace("settings:", "reentry: {once_per: 1d}\nsettings:"))
    plans = entry_plans([flow, wf(BRANCHY)])
    path = tmp_path / "plans.json"
    path.write_bytes(dump_entry_plans(plans))
    read = runtime.load_entry_plans(path)  # what the router reads: no pydantic
    assert read == {name: runtime.as_runtime(p) for name, p in plans.items()}
    nurture = read["nurture"]
    assert isinstance(nurture, runtime.EntryPlan)
    assert nurture.reentry == runtime.Reentry(mode="once_per", period=86400)
    assert nurture.passive("") == plans["nurture"].passive("") != []
    assert (nurture.version, nurture.history_days) == (plans["nurture"].version, 10)
    assert read["branchy"].reentry == plans["branchy"].reentry and read["branchy"].passive("") == []
    assert read["branchy"].passive("vip-pause") == plans["branchy"].passive("vip-pause") != []
