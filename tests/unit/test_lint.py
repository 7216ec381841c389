"""Lint: each named check on a small failing workflow, with its exact message; the example workflows lint clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bench.run import generated_workflow
from shared.workflow.compiler import compile_workflow
from shared.workflow.lint import (
    CHECKS,
    DEFINITION_LIMIT,
    LONGEST_FUNCTION_ARN,
    Violation,
    check,
    lint,
    lint_file,
)
from shared.workflow.model import Workflow, WorkflowFileError, parse_workflow, workflow_files

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def wf(text: str) -> Workflow:
    return parse_workflow(yaml.safe_load(text), "test.yaml")


def found(text: str, name: str) -> list[str]:
    """The violations of one check, as printed."""
    assert name in CHECKS
    return [str(v) for v in lint(wf(text)) if v.check == name]


def test_registry_holds_every_check_in_order() -> None:
    assert list(CHECKS) == [
        "duplicate-ids",
        "unknown-goto-target",
        "goto-not-last",
        "unreachable-steps",
        "cycle-without-wait",
        "cycle-without-step",
        "split-percentages",
        "wait-too-long",
        "unknown-event-field",
        "empty-branch-decision",
        "reserved-key",
        "webhook-timeout",
        "definition-too-large",
        "template-too-large",
    ]


def test_a_check_name_registers_once() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        check("duplicate-ids")(lambda wf: iter(()))


def test_violation_prints_step_and_field() -> None:
    assert str(Violation("x", "remind", "wait", "too long")) == "step remind, field wait: too long"
    assert str(Violation("x", "remind", None, "never runs")) == "step remind: never runs"
    assert str(Violation("x", None, "triggers.0.delay", "too long")) == "field triggers.0.delay: too long"


@pytest.mark.parametrize("path", workflow_files(WORKFLOWS), ids=lambda p: p.name)
def test_example_workflows_lint_clean(path: Path) -> None:
    assert lint_file(path) == []


def test_duplicate_ids() -> None:
    text = """
name: t
steps:
  - {id: remind, send_email: {template: a}}
  - {id: remind, send_sms: {template: b}}
"""
    assert found(text, "duplicate-ids") == [
        "step remind, field id: id 'remind' is already used by the step at steps.0; ids must be unique"
    ]


def test_duplicate_branch_names_are_refused_by_the_model() -> None:
    # The Choice state could not tell two same-named branches apart: the file does not load at all.
    text = """
name: t
steps:
  - id: by-value
    branch:
      - {name: big, when: {score: {gt: 50}}}
      - {name: big, when: {score: {gt: 10}}}
  - id: by-tag
    branch:
      - {name: otherwise, when: {has_tag: x}}
  - id: pick
    split:
      - {name: a, percent: 50}
      - {name: a, percent: 50}
"""
    with pytest.raises(WorkflowFileError) as err:
        wf(text)
    assert err.value.problems == [
        "test.yaml: step by-value, field branch: case name 'big' is used twice; each case needs its own name",
        "test.yaml: step by-tag, field branch: a case cannot be named 'otherwise': that name is the branch taken "
        "when no case matches",
        "test.yaml: step pick, field split: path name 'a' is used twice; each path needs its own name",
    ]


def test_unknown_goto_target() -> None:
    text = """
name: t
steps:
  - {id: remind, send_email: {template: a}}
  - {id: again, start_workflow: {workflow: t, at: nowhere}}
  - id: pick
    split:
      - {name: a, percent: 50}
      - {name: b, percent: 50}
    winner: {goal: remind}
  - id: pick-2
    split:
      - {name: a, percent: 50}
      - {name: b, percent: 50}
    winner: {goal: missing}
  - goto: remind-twice
"""
    assert found(text, "unknown-goto-target") == [
        "step again, field start_workflow.at: 'nowhere' is not a step id of workflow t",
        "step pick, field winner.goal: 'remind' is a send_email step, not a goal step",
        "step pick-2, field winner.goal: 'missing' is not a step id of this workflow",
        "step goto-4, field goto: go-to target 'remind-twice' is not a step id of this workflow",
    ]


def test_unknown_goto_target_leaves_other_workflows_alone() -> None:
    text = """
name: t
steps:
  - {id: hand-over, start_workflow: {workflow: other, at: anywhere}}
"""
    assert found(text, "unknown-goto-target") == []


def test_split_winner_by_goal_needs_a_goal() -> None:
    text = """
name: t
steps:
  - id: pick
    split:
      - {name: a, percent: 50}
      - {name: b, percent: 50}
    winner: {by: goal}
"""
    assert found(text, "unknown-goto-target") == [
        "step pick, field winner: winner by goal needs a goal step to measure; this workflow has none"
    ]


def test_goto_not_last() -> None:
    text = """
name: t
steps:
  - {id: remind, send_email: {template: a}}
  - id: bought
    if: {has_tag: Purchased}
    then:
      - goto: remind
      - {id: thanks, send_email: {template: b}}
    else:
      - {id: stop, end: true}
      - {id: one, send_sms: {template: c}}
      - {id: two, send_sms: {template: d}}
"""
    assert found(text, "goto-not-last") == [
        "step goto-1-then-0, field goto: a go-to must be the last step of its list; the step after it is skipped",
        "step stop, field end: an end must be the last step of its list; the 2 steps after it are skipped",
    ]


def test_unreachable_steps() -> None:
    text = """
name: t
steps:
  - {id: remind, send_email: {template: a}}
  - id: bought
    if: {has_tag: Purchased}
    then:
      - {id: done-here, end: true}
      - {id: thanks, send_email: {template: b}}
    else:
      - {id: stop, end: true}
  - id: after
    if: {has_tag: x}
    then:
      - {id: inside, send_sms: {template: c}}
  - {id: converted, goal: {event: order.paid}}
  - {id: celebrate, add_tag: customer}
"""
    # `inside` is not named on its own: its decision is already reported. Goals are reached by jumping.
    assert found(text, "unreachable-steps") == [
        "step thanks: never runs: it comes after 'done-here' in the same list",
        "step after: never runs: no path from the first step reaches it",
    ]


def test_a_goto_makes_a_step_reachable() -> None:
    text = """
name: t
steps:
  - id: bought
    if: {has_tag: Purchased}
    then: [{goto: later}]
    else: [{end: true}]
  - {id: later, send_email: {template: a}}
"""
    assert found(text, "unreachable-steps") == []


def test_cycle_without_wait() -> None:
    text = """
name: t
settings: {max_loops: 5}
steps:
  - {id: remind, send_email: {template: a}}
  - id: bought
    if: {has_tag: Purchased}
    then:
      - {id: pause, wait: 1d}
      - {id: back, goto: remind}
    else:
      - {id: spin, goto: remind}
"""
    # The `then` loop waits a day; the `else` loop does not.
    assert found(text, "cycle-without-wait") == [
        "step spin, field goto: the loop through remind, bought, spin has no wait or wait_until step; "
        "a contact would run it 5 times (settings.max_loops) at once"
    ]


def test_a_loop_with_a_wait_until_is_fine() -> None:
    text = """
name: t
steps:
  - id: ask
    wait_until: {event: tag.added, timeout: 1d, on_timeout: [{goto: ask}]}
"""
    assert found(text, "cycle-without-wait") == []


def test_a_loop_of_waits_alone_is_refused() -> None:
    """Found by the differential run (DIFF_SEED=7): `wait 9h, goto` back to it has no step-runner call to count the
    jumps, so the compiled machine waited in it forever where the file means max_loops visits."""
    text = """
name: t
steps:
  - {id: hello, send_email: {template: a}}
  - {id: again, wait: 9h}
  - {id: at-noon, wait_until: {at: "2026-12-24T12:00:00Z"}}
  - {id: back, goto: again}
"""
    assert found(text, "cycle-without-step") == [
        "step back, field goto: the loop through again, at-noon only waits: nothing happens in it and it would "
        "never end; add a step to the loop (an action, a decision or a wait for an event) or remove the go-to"
    ]
    assert found(text, "cycle-without-wait") == []


def test_a_loop_of_waits_with_a_step_in_it_is_fine() -> None:
    text = """
name: t
steps:
  - {id: again, wait: 9h}
  - {id: nudge, send_email: {template: a}}
  - {id: back, goto: again}
  - id: ask
    wait_until: {event: tag.added, timeout: 1d, on_timeout: [{id: pause, wait: 1h}, {goto: ask}]}
"""
    assert found(text, "cycle-without-step") == []


def test_split_percentages() -> None:
    text = """
name: t
steps:
  - id: pick
    split:
      - {name: a, percent: 33.3}
      - {name: b, percent: 33.3}
      - {name: c, percent: 33.3}
  - id: fine
    split:
      - {name: a, percent: 33.33}
      - {name: b, percent: 33.33}
      - {name: c, percent: 33.34}
"""
    assert found(text, "split-percentages") == ["step pick, field split: the paths' percent add up to 99.9, not 100"]


def test_wait_too_long() -> None:
    text = """
name: t
triggers:
  - {event: tag.added, delay: 53w}
steps:
  - {id: long, wait: 366d}
  - {id: year, wait: 365d}
  - {id: answer, wait_until: {event: tag.added, timeout: 400d}}
"""
    limit = "is longer than 365 days, the longest a Step Functions execution can run"
    assert found(text, "wait-too-long") == [
        f"field triggers.0.delay: 371d {limit}",
        f"step long, field wait: 366d {limit}",
        f"step answer, field wait_until.timeout: 400d {limit}",
    ]


def test_unknown_event_field() -> None:
    text = """
name: t
triggers:
  - event: checkout.abandoned
    where: {cart_valu: {gt: 50}, products.0.sku: abc}
  - event: custom.thing
    where: {anything: 1}
steps:
  - id: big-cart
    if:
      any:
        - all: [{event_field: cart_value, gt: 100}, {event_field: total, gt: 100}]
        - {not: {did_event: {event: order.paid, where: {sku: x}}}}
  - id: bought
    wait_until: {event: tag.added, where: {name: Purchased}, same: [checkout_id], timeout: 7d}
  - id: paid
    goal: {event: order.paid, where: {amount: {gt: 1}}}
"""
    assert found(text, "unknown-event-field") == [
        "field triggers.0.where.cart_valu: event checkout.abandoned has no field 'cart_valu' "
        "(it has: cart_value, checkout_id, currency, idle_minutes, products, url)",
        "step big-cart, field if.any.0.all.1.event_field: trigger event checkout.abandoned has no field 'total' "
        "(it has: cart_value, checkout_id, currency, idle_minutes, products, url)",
        "step big-cart, field if.any.1.not.did_event.where.sku: event order.paid has no field 'sku' "
        "(it has: checkout_id, coupon, currency, order_id, products, source, total)",
        "step bought, field wait_until.where.name: event tag.added has no field 'name' (it has: tag)",
        "step bought, field wait_until.same: event tag.added has no field 'checkout_id' (it has: tag)",
        "step paid, field goal.where.amount: event order.paid has no field 'amount' "
        "(it has: checkout_id, coupon, currency, order_id, products, source, total)",
    ]


def test_schedule_triggers_carry_list_and_at() -> None:
    text = """
name: t
triggers: [{at: 2026-12-01T09:00:00Z, list: customers}]
steps:
  - id: which
    if: {event_field: segment, eq: vip}
"""
    assert found(text, "unknown-event-field") == [
        "step which, field if.event_field: trigger event schedule.fired has no field 'segment' (it has: at, list)"
    ]


def test_empty_branch_decision() -> None:
    text = """
name: t
steps:
  - {id: pointless, if: {has_tag: x}}
  - id: pointless-too
    branch:
      - {name: vip, when: {has_tag: vip}}
  - id: fine
    if: {has_tag: y}
    else: [{id: hello, send_email: {template: a}}]
"""
    assert found(text, "empty-branch-decision") == [
        "step pointless, field if: then and else are both empty, so the decision changes nothing",
        "step pointless-too, field branch: every case and otherwise are empty, so the decision changes nothing",
    ]


def test_reserved_key() -> None:
    text = """
name: t
steps:
  - {id: hook, call_webhook: {url: "https://example.com", body: {user: {id.$: $.contact_id}}}}
"""
    assert found(text, "reserved-key") == [
        "step hook, field call_webhook.body.user.id.$: keys ending in '.$' are reserved by Step Functions "
        "(read as a path); rename it"
    ]


def test_lint_file_prefixes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("name: loop\nsteps:\n  - {id: a, send_email: {template: x}}\n  - {id: b, goto: a}\n")
    assert lint_file(path) == [
        f"{path}: step b, field goto: the loop through a, b has no wait or wait_until step; "
        "a contact would run it 100 times (settings.max_loops) at once"
    ]


def test_lint_file_returns_load_errors(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nsteps:\n  - {id: a, wait: soon}\n")
    (line,) = lint_file(path)
    assert line.startswith(f"{path}: step a, field wait:")


def _definition_findings(wf: Workflow) -> list[str]:
    return [str(v) for v in lint(wf) if v.check == "definition-too-large"]


def _padded(k: int) -> Workflow:
    """A small workflow whose compiled definition grows by exactly one character per unit of `k`."""
    steps = [{"id": "note", "set_field": {"field": "note", "value": "x" * k}}, {"id": "pause", "wait": "1d"}]
    return parse_workflow({"name": "big", "steps": steps}, "big.yaml")


def _deployed_size(wf: Workflow) -> int:
    return len(json.dumps(compile_workflow(wf, LONGEST_FUNCTION_ARN), separators=(",", ":")))


def test_definition_too_large_at_step_functions_limit() -> None:
    # CreateStateMachine refuses a definition over 1,048,576 characters; the check measures the machine as deployed
    # (compact JSON, the longest function ARN a deploy can put in it) and refuses one character past the limit.
    assert DEFINITION_LIMIT == 1_048_576
    k = DEFINITION_LIMIT - _deployed_size(_padded(0))
    at_limit = _padded(k)
    assert _deployed_size(at_limit) == DEFINITION_LIMIT
    assert _definition_findings(at_limit) == []
    assert _definition_findings(_padded(k + 1)) == [
        f"field steps: the compiled state machine is {DEFINITION_LIMIT + 1:,} characters, over Step Functions' "
        f"limit of {DEFINITION_LIMIT:,}; move part of it into another workflow (start_workflow)"
    ]


def test_the_benchmarks_thousand_steps_fit_the_definition_limit() -> None:
    assert _definition_findings(parse_workflow(generated_workflow(1000), "fits.yaml")) == []
