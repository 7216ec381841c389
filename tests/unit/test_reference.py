"""The reference interpreter (shared/workflow/reference.py) on the docs' own meanings, and the condition semantics
both it and the runtime's evaluator (shared/workflow/conditions.py) must share. Pure Python.

The condition tests were each checked to fail on the named one-line change (mutation) of conditions.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from shared.workflow import reference as ref
from shared.workflow.conditions import Condition, Facts, evaluate
from shared.workflow.model import parse_workflow

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def both(cond: dict[str, Any], facts: Facts) -> tuple[bool, bool]:
    """The runtime's verdict and the reference's on the same facts."""
    c = Condition.model_validate(cond)
    contact = ref.Contact(
        id="c-1", tags=set(facts.tags), fields=dict(facts.fields), score=facts.score, lists=set(facts.lists),
        stages=dict(facts.stages), campaigns=dict(facts.campaigns),
    )  # fmt: skip
    activity = [ref.Event(a["at"], a["type"], a["data"]) for a in facts.activity]
    world = ref._World(contact, activity, facts.trigger, facts.now or NOW)
    return evaluate(c, facts, []), ref.holds(c, world)


def test_not_in_a_condition_group_negates() -> None:
    # Kills: conditions.evaluate `return not evaluate(r.not_, ...)` made `return evaluate(r.not_, ...)`.
    group = {"any": [{"all": [{"has_tag": "Purchased"}, {"not": {"clicked_email": "holiday-1"}}]}]}
    buyer = Facts(tags={"Purchased"}, now=NOW)
    clicked = Facts(
        tags={"Purchased"}, now=NOW, activity=[{"type": "email.clicked", "data": {"template": "holiday-1"}, "at": NOW}]
    )
    assert both(group, buyer) == (True, True)
    assert both(group, clicked) == (False, False)


def test_did_event_within_ignores_an_event_outside_the_window() -> None:
    # Kills: conditions._recent `if within is None or facts.now is None` made `if True` (the window ignored).
    cond = {"did_event": {"event": "page.visited", "where": {"url": {"contains": "pricing"}}, "within": "3d"}}
    old = {"type": "page.visited", "data": {"url": "https://x.example/pricing"}, "at": NOW - timedelta(days=4)}
    recent = {**old, "at": NOW - timedelta(days=2)}
    assert both(cond, Facts(activity=[old], now=NOW)) == (False, False)
    assert both(cond, Facts(activity=[old, recent], now=NOW)) == (True, True)
    # Exactly at the edge of the window still counts (the last 3 days include their first instant).
    assert both(cond, Facts(activity=[{**old, "at": NOW - timedelta(days=3)}], now=NOW)) == (True, True)


def test_eq_on_text_is_case_insensitive_and_numbers_written_as_text_are_equal() -> None:
    # Kills: conditions._equal `a.casefold() == b.casefold()` made `a == b`.
    facts = Facts(fields={"first_name": "Mario", "size": "50"}, now=NOW)
    assert both({"field": "first_name", "eq": "mario"}, facts) == (True, True)
    assert both({"field": "first_name", "ne": "MARIO"}, facts) == (False, False)
    assert both({"field": "size", "eq": 50}, facts) == (True, True)
    assert both({"field": "first_name", "in": ["luigi", "MARIO"]}, facts) == (True, True)


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        ({"field": "plan", "contains": "ANNUAL"}, True),  # case-insensitive
        ({"field": "plan", "starts_with": "pro"}, True),
        ({"field": "seats", "lte": 7}, True),  # lte holds at the bound (lt would not)
        ({"field": "seats", "lt": 7}, False),
        ({"field": "seats", "gt": 5, "lte": 6}, False),  # several operators: all must hold
        ({"field": "missing", "exists": False}, True),
        ({"field": "missing", "ne": "x"}, False),  # a missing value fails every operator but exists: false
        ({"score": {"gte": 10}}, True),
        ({"in_list": "newsletter"}, True),
        ({"in_list": "promo"}, False),
        ({"in_stage": {"pipeline": "sales", "stage": "QUALIFIED"}}, True),
        ({"opened_email": "welcome", "within": "7d"}, False),  # opened 8 days ago
        ({"opened_email": "welcome"}, True),
        ({"event_field": "cart.value", "gt": 50}, True),
    ],
)
def test_operators_and_leaves_agree_with_the_docs(cond: dict[str, Any], expected: bool) -> None:
    facts = Facts(
        fields={"plan": "Pro Annual", "seats": 7},
        score=10,
        lists={"newsletter"},
        stages={"sales": "Qualified"},
        activity=[{"type": "email.opened", "data": {"template": "welcome"}, "at": NOW - timedelta(days=8)}],
        trigger={"cart": {"value": "80"}},
        now=NOW,
    )
    assert both(cond, facts) == (expected, expected)


# ---- whole runs --------------------------------------------------------------------------------------------


def wf(text: str) -> Any:
    return parse_workflow(yaml.safe_load(text))


def run(text: str, events: list[tuple[float, str, dict[str, Any]]], **contact: Any) -> ref.Trace:
    c = ref.Contact(id="c-1", email="ana@example.com", **contact)
    return ref.interpret(wf(text), c, [ref.Event(NOW + timedelta(hours=h), t, d) for h, t, d in events])


def timeline(trace: ref.Trace) -> list[tuple[float, str, str]]:
    return [((r.at - NOW).total_seconds() / 3600, r.step, r.outcome) for r in trace.records]


CART = """
name: abandoned-checkout
triggers: [{event: checkout.abandoned, where: {cart_value: {gt: 50}}}]
settings: {max_loops: 20}
steps:
  - id: remind
    send_email: {template: cart-reminder}
  - id: wait-a-day
    wait: 1d
  - id: purchased
    if: {has_tag: Purchased}
    then:
      - goto: wait-for-purchase
    else:
      - id: remind-again
        send_email: {template: cart-reminder-2}
      - id: wait-for-purchase
        wait_until: {event: tag.added, where: {tag: Purchased}, timeout: 7d}
"""


def test_the_docs_whole_file_example_waits_reminds_and_resumes_on_the_tag() -> None:
    trace = run(
        CART,
        [(0, "checkout.abandoned", {"cart_value": 80}), (30, "tag.added", {"tag": "Purchased"})],
    )
    assert timeline(trace) == [
        (0, "remind", "done"),
        (0, "wait-a-day", "waiting"),
        (24, "purchased", "branch else"),
        (24, "remind-again", "done"),
        (24, "wait-for-purchase", "waiting"),
        (30, "wait-for-purchase", "resumed"),
    ]
    assert [(m.channel, m.template) for m in trace.messages] == [
        ("email", "cart-reminder"),
        ("email", "cart-reminder-2"),
    ]
    assert trace.contact is not None and trace.contact.tags == {"Purchased"}


def test_a_trigger_filter_that_fails_enrols_nobody() -> None:
    assert run(CART, [(0, "checkout.abandoned", {"cart_value": 20})]).records == []


LOOP = """
name: nag
triggers: [{event: list.subscribed}]
settings: {max_loops: 2}
steps:
  - id: nag
    send_email: {template: come-back}
  - id: pause
    wait: 1d
  - id: bought
    goal: {event: order.paid}
  - id: tally
    adjust_score: 1
  - goto: nag
"""


def test_a_goto_loop_ends_at_its_bound_and_a_goal_jump_restarts_the_count() -> None:
    plain = run(LOOP, [(0, "list.subscribed", {})])
    assert timeline(plain)[-1] == (72, "loop-limit", "ended")  # jumps at 24h and 48h; the third is one too many
    assert len(plain.messages) == 3
    jumped = run(LOOP, [(0, "list.subscribed", {}), (30, "order.paid", {"total": 5})])
    # The goal met during the second wait: reached there, and its run counts go-tos from 0 again.
    assert (30, "bought", "reached") in timeline(jumped)
    assert [h for h, s, _ in timeline(jumped) if s == "bought"] == [24, 30, 54, 78]
    assert timeline(jumped)[-1] == (78, "loop-limit", "ended")


GOALS = """
name: vip
triggers: [{event: form.submitted}]
steps:
  - id: hello
    send_email: {template: hello}
  - id: wait
    wait: 1d
  - id: vip
    goal: {condition: {score: {gte: 100}}, otherwise: end}
  - id: welcome-vip
    send_email: {template: vip}
"""


def test_a_goal_condition_met_on_entry_starts_there_and_otherwise_end_ends_the_run() -> None:
    met = run(GOALS, [(0, "form.submitted", {})], score=120)
    assert timeline(met) == [(0, "vip", "reached"), (0, "welcome-vip", "done")]
    unmet = run(GOALS, [(0, "form.submitted", {})], score=5)
    assert timeline(unmet) == [(0, "hello", "done"), (0, "wait", "waiting"), (24, "vip", "not reached")]


def test_a_split_path_is_the_documented_hash_of_contact_workflow_and_step() -> None:
    text = """
name: t
triggers: [{event: form.submitted}]
steps:
  - id: pick
    split:
      - {name: a, percent: 50, steps: [{id: sa, add_tag: a}]}
      - {name: b, percent: 50, steps: [{id: sb, add_tag: b}]}
"""
    paths = set()
    for n in range(20):
        trace = ref.interpret(
            wf(text), ref.Contact(id=f"c-{n}"), [ref.Event(NOW, "form.submitted", {})], horizon=timedelta(days=1)
        )
        paths.add(trace.records[0].outcome)
        again = ref.interpret(wf(text), ref.Contact(id=f"c-{n}"), [ref.Event(NOW, "form.submitted", {})])
        assert again.records == trace.records  # a hash, not a dice
    assert paths == {"branch a", "branch b"}
