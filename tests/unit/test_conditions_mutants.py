"""Condition evaluation as the runtime does it (shared/workflow/runtime.py, through the authoring models of
conditions.py, which read a condition into its run-time form), pinned where `make mutation` found one-line changes
that no test noticed (docs/mutation.md): each operator at its edge, the leaves the unit tests never evaluated
(in_campaign, in_stage, opened_email, clicked_email with a link), the trail that history shows a marketer ("why this
branch"), and the descriptions in it. Pure Python, no AWS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from shared.workflow.conditions import (
    Compare,
    Condition,
    Evaluation,
    Facts,
    Strict,
    _leaf,
    compare,
    evaluate,
    lookup,
    pick,
)

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def holds(cond: dict[str, Any], facts: Facts) -> bool:
    return evaluate(Condition.model_validate(cond), facts, [])


def trail_of(cond: dict[str, Any], facts: Facts) -> list[Evaluation]:
    trail: list[Evaluation] = []
    evaluate(Condition.model_validate(cond), facts, trail)
    return trail


def ops(**kw: Any) -> Compare:
    return Compare.model_validate(kw)


@pytest.mark.parametrize(
    ("value", "cmp", "expected"),
    [
        # exists: present/absent both ways; a missing value fails every other operator.
        ("x", {"exists": True}, True),
        (None, {"exists": True}, False),
        (None, {"exists": False}, True),
        ("x", {"exists": False}, False),
        (None, {"ne": "x"}, False),
        # eq / ne, including numbers written as text and values that are neither text nor numbers.
        ("A", {"eq": "b"}, False),
        ("50", {"eq": 50}, True),
        (["a", "b"], {"eq": ["a", "b"]}, True),
        (["a"], {"eq": ["b"]}, False),
        (Decimal("2.5"), {"eq": 2.5}, True),
        ("a", {"ne": "b"}, True),
        ("A", {"ne": "a"}, False),  # ne is eq's opposite: text case-insensitively
        (1, {"eq": True}, True),  # a number against a yes/no compares as Python does (the reference agrees)
        # numeric bounds at their edge, and text that is no number fails them.
        (10, {"gt": 10}, False),
        (11, {"gt": 10}, True),
        (10, {"gte": 10}, True),
        (9, {"gte": 10}, False),
        (10, {"lt": 10}, False),
        (9, {"lt": 10}, True),
        (10, {"lte": 10}, True),
        (11, {"lte": 10}, False),
        ("lots", {"gt": 1}, False),
        ("lots", {"lte": 1}, False),
        # several operators in one mapping must all hold.
        (15, {"gt": 10, "lt": 20}, True),
        (25, {"gt": 10, "lt": 20}, False),
        # text operators are case-insensitive; contains reads a list as its items.
        ("Big Sale", {"contains": "sale"}, True),
        ("Big Sale", {"contains": "winter"}, False),
        (["red", "Blue"], {"contains": "blue"}, True),
        (["red", "blue"], {"contains": "d b"}, False),  # any item contains it, not the items joined
        ([1, 2], {"contains": "1, 2"}, False),  # nor the list written out
        ([1, 2], {"contains": "2"}, True),
        (["Red", "Blue"], {"starts_with": "red b"}, True),  # starts_with reads a list as its text
        ("Pricing page", {"starts_with": "PRICING"}, True),
        ("the pricing", {"starts_with": "pricing"}, False),
        ("GOLD", {"in": ["silver", "gold"]}, True),
        ("bronze", {"in": ["silver", "gold"]}, False),
    ],
)
def test_compare_each_operator(value: Any, cmp: dict[str, Any], expected: bool) -> None:
    assert compare(value, ops(**cmp)) is expected


@pytest.mark.parametrize(
    "failing",
    [
        {"eq": "x"},
        {"ne": "y"},
        {"gt": 5},
        {"gte": 5},
        {"lt": 1},
        {"lte": 1},
        {"contains": "z"},
        {"starts_with": "z"},
        {"in": ["x"]},
    ],
)
def test_a_value_that_exists_still_needs_the_other_operators(failing: dict[str, Any]) -> None:
    # Checked in any order (the operators given are a set): exists holding does not end the check.
    assert compare("y", ops(exists=True, **failing)) is False


def test_lookup_and_pick_follow_dotted_paths() -> None:
    data = {"cart": {"value": 80, "items": [1]}, "flat": 3}
    assert lookup(data, "cart.value") == 80
    assert lookup(data, "cart.missing") is None
    assert lookup(data, "flat.deeper") is None  # a number has no fields
    assert lookup("text", "x") is None
    assert pick(data, {"cart.value", "flat", "nope.x"}) == {"cart": {"value": 80}, "flat": 3}
    assert pick(data, {"a.missing", "flat"}) == {"flat": 3}  # a missing path is skipped, not the end
    assert pick(data, set()) == {}


def test_in_campaign_and_at_stage() -> None:
    facts = Facts(campaigns={"onboarding": "day-3", "holiday": None}, now=NOW)
    assert holds({"in_campaign": "onboarding"}, facts)
    assert holds({"in_campaign": "holiday"}, facts)  # in it, no stage yet
    assert not holds({"in_campaign": "winback"}, facts)
    assert holds({"in_campaign": "onboarding", "at_stage": "day-3"}, facts)
    assert not holds({"in_campaign": "onboarding", "at_stage": "day-7"}, facts)
    assert not holds({"in_campaign": "winback", "at_stage": "day-3"}, Facts(now=NOW))


def test_in_stage_matches_the_pipelines_current_stage_case_insensitively() -> None:
    facts = Facts(stages={"sales": "Qualified"}, now=NOW)
    assert holds({"in_stage": {"pipeline": "sales", "stage": "qualified"}}, facts)
    assert not holds({"in_stage": {"pipeline": "sales", "stage": "won"}}, facts)
    assert not holds({"in_stage": {"pipeline": "support", "stage": "qualified"}}, facts)


def activity(etype: str, data: dict[str, Any], ago: timedelta = timedelta(hours=1)) -> dict[str, Any]:
    return {"type": etype, "data": data, "at": NOW - ago}


def test_opened_email_names_the_template_and_honours_within() -> None:
    opened = activity("email.opened", {"template": "welcome"}, timedelta(days=5))
    other = activity("email.clicked", {"template": "welcome"})  # a click is no open
    facts = Facts(activity=[opened, other, activity("email.opened", {"template": "promo"})], now=NOW)
    assert holds({"opened_email": "welcome"}, facts)
    assert not holds({"opened_email": "welcome", "within": "2d"}, facts)
    assert not holds({"opened_email": "receipt"}, facts)
    assert holds({"opened_email": "promo", "within": "2d"}, facts)


def test_clicked_email_with_a_link_needs_that_link_and_that_template() -> None:
    facts = Facts(activity=[activity("email.clicked", {"template": "promo", "link": "https://x.example/a"})], now=NOW)
    assert holds({"clicked_email": "promo"}, facts)
    assert holds({"clicked_email": {"template": "promo", "link": "https://x.example/a"}}, facts)
    assert not holds({"clicked_email": {"template": "promo", "link": "https://x.example/b"}}, facts)
    assert not holds({"clicked_email": {"template": "other", "link": "https://x.example/a"}}, facts)
    assert not holds({"clicked_email": "promo", "within": "30m"}, facts)


def test_did_event_where_filters_on_the_events_data() -> None:
    facts = Facts(activity=[activity("order.paid", {"total": 20})], now=NOW)
    assert holds({"did_event": "order.paid"}, facts)
    assert holds({"did_event": {"event": "order.paid", "where": {"total": {"gte": 20}}}}, facts)
    assert not holds({"did_event": {"event": "order.paid", "where": {"total": {"gt": 20}}}}, facts)
    assert not holds({"did_event": {"event": "order.refunded"}}, facts)


def test_activity_without_a_time_counts_in_any_window() -> None:
    facts = Facts(activity=[{"type": "page.visited", "data": {}, "at": None}], now=NOW)
    assert holds({"did_event": {"event": "page.visited", "within": "1h"}}, facts)


def test_the_trail_records_each_leaf_with_the_value_it_looked_at() -> None:
    facts = Facts(
        tags={"vip", "Buyer"},
        lists={"news"},
        fields={"plan": "pro"},
        score=12.0,
        campaigns={"onboarding": "day-3"},
        stages={"sales": "won"},
        activity=[activity("email.opened", {"template": "welcome"}), activity("email.opened", {"template": "welcome"})],
        trigger={"cart": {"value": 80}},
        now=NOW,
    )
    cond = {
        "all": [
            {"has_tag": "buyer"},
            {"in_list": "news"},
            {"field": "plan", "eq": "pro"},
            {"score": {"gte": 10}},
            {"in_campaign": "onboarding", "at_stage": "day-3"},
            {"in_stage": {"pipeline": "sales", "stage": "won"}},
            {"opened_email": "welcome"},
            {"not": {"event_field": "cart.value", "lt": 50}},
            {"any": [{"in_campaign": "winback"}, {"did_event": "order.paid"}, {"has_tag": "vip"}]},
        ]
    }
    assert [(e.condition, e.value, e.result) for e in trail_of(cond, facts)] == [
        ("has tag 'buyer'", ["Buyer", "vip"], True),
        ("in list 'news'", ["news"], True),
        ("field plan eq 'pro'", "pro", True),
        ("score gte 10", 12.0, True),
        ("in campaign 'onboarding' at stage 'day-3'", "day-3", True),
        ("in pipeline 'sales' stage 'won'", "won", True),
        ("opened email 'welcome'", 2, True),
        ("trigger event cart.value lt 50", 80, False),
        ("in campaign 'winback'", None, False),
        ("did event order.paid", 0, False),
        ("has tag 'vip'", ["Buyer", "vip"], True),
    ]


def test_descriptions_read_as_written() -> None:
    def described(cond: dict[str, Any]) -> str:
        return Condition.model_validate(cond).describe()

    assert (
        described({"field": "size", "gte": 10, "lt": 20.5, "in": ["a"]}) == "field size gte 10 and in ['a'] and lt 20.5"
    )
    assert described({"clicked_email": {"template": "promo", "link": "https://x.example"}}) == (
        "clicked email 'promo' link 'https://x.example'"
    )
    assert described({"clicked_email": "promo"}) == "clicked email 'promo'"
    assert described({"did_event": {"event": "page.visited", "where": {"url": "/p"}, "within": "1d"}}) == (
        "did event page.visited where {'url': '/p'} within 86400s"
    )
    assert described({"did_event": "page.visited"}) == "did event page.visited"
    assert described({"in_campaign": "onboarding"}) == "in campaign 'onboarding'"
    assert described({"all": [{"has_tag": "a"}, {"any": [{"in_list": "b"}, {"not": {"has_tag": "c"}}]}]}) == (
        "all of (has tag 'a'; any of (in list 'b'; not (has tag 'c')))"
    )


def test_field_operators_keep_in_and_the_subject_out() -> None:
    cond = Condition.model_validate({"field": "color", "in": ["red", "blue"]})
    assert cond.root.ops().model_fields_set == {"in_"}  # type: ignore[union-attr]
    assert holds({"field": "color", "in": ["red", "blue"]}, Facts(fields={"color": "Blue"}))
    assert not holds({"field": "color", "in": ["red", "blue"]}, Facts(fields={"color": "green"}))


def test_an_unknown_condition_kind_is_a_type_error_naming_it() -> None:
    class Mystery(Strict):
        pass

    with pytest.raises(TypeError, match="unhandled condition kind Mystery"):
        _leaf(Mystery(), Facts())
