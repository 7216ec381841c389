"""The one condition evaluator (shared/workflow/runtime.py, no pydantic: the router's and the step runner's, and the
authoring models' through it) read from the data the Lambdas hold: a workflows file's dump, a wait item's condition
as DynamoDB gives it back (numbers as Decimal, durations as written). And the one walk of nested steps, which the
authoring and the run-time forms share. Pure Python, no AWS."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from shared.workflow import runtime
from shared.workflow.conditions import Condition, Where
from shared.workflow.model import Workflow

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def trail(cond: Any, facts: runtime.Facts) -> list[tuple[str, Any, bool]]:
    out: list[runtime.Evaluation] = []
    runtime.evaluate(cond, facts, out)
    return [(e.condition, e.value, e.result) for e in out]


def test_a_stored_condition_evaluates_and_reads_as_written() -> None:
    stored = {
        "all": [
            {"field": "size", "gte": Decimal("10"), "lt": Decimal("20.5")},
            {"did_event": {"event": "order.paid", "where": {"total": {"gt": Decimal("5")}}, "within": "1d"}},
            {"not": {"has_tag": "vip"}},
            {"event_field": "cart.value", "exists": True},
        ]
    }
    cond = runtime.condition(stored)
    paid = {"type": "order.paid", "data": {"total": 6}, "at": NOW - timedelta(hours=2)}
    facts = runtime.Facts(fields={"size": 12}, activity=[paid], trigger={"cart": {"value": 3}}, now=NOW)
    assert runtime.evaluate(cond, facts, [])
    assert trail(cond, facts) == [
        ("field size gte 10 and lt 20.5", 12, True),
        ("did event order.paid where {'total': {'gt': Decimal('5')}} within 86400s", 1, True),
        ("has tag 'vip'", [], False),
        ("trigger event cart.value exists True", 3, True),
    ]
    ops = cond.root.all[0].root.ops()  # type: ignore[union-attr]
    assert (ops.gte, ops.lt, ops.model_fields_set) == (10.0, 20.5, {"gte", "lt"})
    assert type(ops.gte) is float
    # The event a day and an hour ago is outside `within: 1d`; one a day ago to the second is inside.
    old = {**paid, "at": NOW - timedelta(days=1, hours=1)}
    assert not runtime.evaluate(cond, runtime.Facts(**{**facts.__dict__, "activity": [old]}), [])
    edge = {**paid, "at": NOW - timedelta(days=1)}
    assert runtime.evaluate(cond, runtime.Facts(**{**facts.__dict__, "activity": [edge]}), [])
    # What it was read from is what it dumps, a copy.
    dumped = cond.model_dump()
    assert dumped == stored
    dumped["all"].clear()
    assert cond.model_dump() == stored


def test_operators_read_from_a_dump_are_the_ones_given() -> None:
    cmp = runtime.Compare.read({"eq": None, "in": [1, "a"], "field": "x", "note": "ignored"}, "field")
    assert cmp.model_fields_set == {"eq", "in_"}
    assert cmp.in_ == [1, "a"]
    assert not runtime.compare("x", cmp)  # eq None given: no value equals it
    assert runtime.Compare.read({"exists": "false"}).exists is False
    assert runtime.Compare.read({"exists": "Yes"}).exists is True
    assert runtime.compare(None, runtime.Compare.read({"exists": "no"}))
    assert runtime.Compare.read({"exists": None}).exists is None
    assert runtime.Compare.read({"gt": "3"}).gt == 3.0
    assert runtime.Compare.read({"gt": None}).gt is None
    assert runtime.Compare(gt=1.0) == runtime.Compare(gt=1.0)
    assert runtime.Compare(gt=1.0) != runtime.Compare(gt=2.0)


def test_a_run_time_where_matches_as_the_authoring_one() -> None:
    where = runtime.Where({"total": {"gte": 20}, "currency": "EUR", "cart.items": {"exists": True}})
    event = {"total": 20, "currency": "eur", "cart": {"items": 2}}
    assert where.matches(event)
    assert not where.matches({**event, "total": 19})
    assert not where.matches({"total": 20, "currency": "eur"})
    assert not where.matches({**event, "currency": "usd"})
    assert set(where.comparisons()) == {"total", "currency", "cart.items"}
    assert where.comparisons()["currency"].model_fields_set == {"eq"}
    assert where == runtime.Where(dict(where.root))
    assert where != runtime.Where({"total": {"gte": 21}})
    assert where != Where.model_validate(dict(where.root))  # an authoring Where is another thing
    assert runtime.as_runtime(Condition.model_validate({"did_event": {"event": "a", "where": {"x": 1}}})) == (
        runtime.condition({"did_event": {"event": "a", "where": {"x": 1}}})
    )


def test_a_condition_read_again_equals_itself_and_names_its_leaves() -> None:
    data = {"all": [{"event_field": "cart.value", "gt": 5}, {"not": {"event_field": "plan"}}, {"has_tag": "a"}]}
    cond = runtime.Condition.model_validate(data)  # as the step runner reads a wait item's condition
    assert cond == runtime.condition(data)
    assert cond != runtime.condition({**data, "all": data["all"][:2]})
    assert cond != Condition.model_validate(data)
    assert [leaf.describe() for leaf in cond.leaves()] == [
        "trigger event cart.value gt 5",
        "trigger event plan ",
        "has tag 'a'",
    ]
    assert cond.event_fields() == {"cart.value", "plan"}


@pytest.mark.parametrize(
    ("data", "found"),
    [({"has_tag": "a", "in_list": "b"}, "['has_tag', 'in_list']"), ({"at_stage": "x"}, "none")],
)
def test_a_condition_needs_exactly_one_kind(data: dict[str, Any], found: str) -> None:
    with pytest.raises(ValueError, match=rf"exactly one of has_tag, .*\(found: {re.escape(found)}\)"):
        runtime.condition(data)


CONDITIONS: list[dict[str, Any]] = [
    {"has_tag": "Buyer"},
    {"in_list": "news"},
    {"field": "plan", "ne": "free", "starts_with": "p"},
    {"score": {"gt": 3, "lte": 10}},
    {"in_campaign": "onboarding", "at_stage": "day-3"},
    {"in_stage": {"pipeline": "sales", "stage": "Won"}},
    {"opened_email": "welcome", "within": "2d"},
    {"clicked_email": {"template": "promo", "link": "https://x.example/a"}, "within": "1h"},
    {"did_event": {"event": "order.paid", "where": {"total": {"gte": 20}}}},
    {"event_field": "cart.value", "in": [80, 90]},
    {"any": [{"all": [{"not": {"in_list": "x"}}, {"has_tag": "buyer"}]}, {"in_list": "a"}]},
]


@pytest.mark.parametrize("data", CONDITIONS, ids=lambda d: next(iter(d)))
def test_authoring_and_run_time_forms_evaluate_and_describe_alike(data: dict[str, Any]) -> None:
    def at(ago: timedelta, etype: str, d: dict[str, Any]) -> dict[str, Any]:
        return {"type": etype, "data": d, "at": NOW - ago}

    facts = runtime.Facts(
        tags={"buyer"},
        lists={"news"},
        fields={"plan": "pro"},
        score=10,
        campaigns={"onboarding": "day-3"},
        stages={"sales": "won"},
        activity=[
            at(timedelta(days=1), "email.opened", {"template": "welcome"}),
            at(timedelta(minutes=5), "email.clicked", {"template": "promo", "link": "https://x.example/a"}),
            at(timedelta(days=9), "order.paid", {"total": 25}),
        ],
        trigger={"cart": {"value": 80}},
        now=NOW,
    )
    authoring = Condition.model_validate(data)
    read = runtime.condition(data)
    assert authoring.describe() == read.describe()
    assert trail(authoring, facts) == trail(read, facts)
    assert runtime.evaluate(read, facts, [])  # every one of them holds for these facts
    assert not runtime.evaluate(read, runtime.Facts(now=NOW), [])  # and none for a contact with nothing


WORKFLOW: dict[str, Any] = {
    "name": "walk",
    "triggers": [{"event": "user.signed_up"}],
    "steps": [
        {"id": "hello", "send_email": {"template": "welcome"}},
        {
            "id": "vip",
            "if": {"has_tag": "vip"},
            "then": [{"id": "thanks", "add_tag": "thanked"}],
            "else": [{"id": "nudge", "add_tag": "nudged"}, {"id": "later", "wait": "1d"}],
        },
        {
            "id": "plan",
            "branch": [
                {"name": "pro", "when": {"field": "plan", "eq": "pro"}, "steps": [{"id": "p1", "add_tag": "pro"}]},
                {"name": "free", "when": {"field": "plan", "eq": "free"}, "steps": []},
            ],
            "otherwise": [{"id": "o1", "add_tag": "other"}],
        },
        {
            "id": "ab",
            "split": [
                {"name": "a", "percent": 50, "steps": [{"id": "a1", "add_tag": "a"}]},
                {"name": "b", "percent": 50, "steps": [{"id": "b1", "add_tag": "b"}]},
            ],
        },
        {
            "id": "buy",
            "wait_until": {
                "event": "order.paid",
                "timeout": "3d",
                "on_timeout": [{"id": "t1", "if": {"in_list": "x"}, "then": [{"id": "t2", "add_tag": "late"}]}],
            },
        },
        {"id": "pause", "wait_until": {"event": "order.paid", "timeout": "1d"}},
    ],
}

WALKED = [
    ("hello", "steps.0"),
    ("vip", "steps.1"),
    ("thanks", "steps.1.then.0"),
    ("nudge", "steps.1.else.0"),
    ("later", "steps.1.else.1"),
    ("plan", "steps.2"),
    ("p1", "steps.2.branch.pro.0"),
    ("o1", "steps.2.otherwise.0"),
    ("ab", "steps.3"),
    ("a1", "steps.3.split.a.0"),
    ("b1", "steps.3.split.b.0"),
    ("buy", "steps.4"),
    ("t1", "steps.4.on_timeout.0"),
    ("t2", "steps.4.on_timeout.0.then.0"),
    ("pause", "steps.5"),
]


def test_both_forms_walk_their_nested_steps_alike_in_document_order() -> None:
    authoring = Workflow.model_validate(WORKFLOW)
    read = runtime.as_runtime(authoring)
    assert isinstance(read, runtime.Workflow)
    walked = [(sid, tuple(loc.split("."))) for sid, loc in WALKED]
    assert [(s.id, loc) for s, loc in authoring.walk()] == walked
    assert [(s.id, loc) for s, loc in read.walk()] == walked
    assert all(isinstance(s, runtime.Step) for s, _ in read.walk())
    names = [[name for name, _ in runtime.branches(s)] for s in read.steps]
    assert names == [[], ["then", "else"], ["branch.pro", "branch.free", "otherwise"], ["split.a", "split.b"],
                     ["on_timeout"], []]  # fmt: skip
    assert [[name for name, _ in runtime.branches(s)] for s in authoring.steps] == names
    # The conditions of the control steps are read with them.
    assert read.steps[1].root.if_ == runtime.condition({"has_tag": "vip"})  # type: ignore[union-attr]
    assert read.steps[2].root.branch[0].when == runtime.condition({"field": "plan", "eq": "pro"})  # type: ignore[union-attr]
    assert [(s.id, loc) for s, loc in runtime.walk_steps(read.steps[1:2], ("x",))] == [
        ("vip", ("x", "0")),
        ("thanks", ("x", "0", "then", "0")),
        ("nudge", ("x", "0", "else", "0")),
        ("later", ("x", "0", "else", "1")),
    ]
