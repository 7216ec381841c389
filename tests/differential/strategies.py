"""Hypothesis strategies for differential cases: workflows of every step kind the reference models (nested
decisions, go-to loops, goals, waits, waits until an event, a condition or a time, splits), a contact's starting
data and timed events.

Times are on two grids that never meet, so no case depends on how two things of one instant are ordered: the
trigger comes at +1m and every wait, timeout and `at` is a whole number of hours from it; the other events come at
+30m past an hour (plus a few seconds each, in order).

Go-tos may follow any step, waits included (a go-to reached through a wait, and a wait that leads through go-tos
to another wait or an end, were bugs of the compiled machine found by this run; fixed in ab12010 and 1b8073d, with
regression tests in tests/integration/test_pinned_behaviours.py, so the shapes are generated again).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import strategies as st

from shared.workflow.lint import lint
from shared.workflow.model import (
    WorkflowFileError,
    parse_workflow,
)
from stepwise.simulate import DEFAULT_START
from tests.differential.harness import TRIGGER, Case

HOUR = 3600
TEMPLATES = ["t1", "t2"]
TAGS = ["vip", "Buyer"]
LISTS = ["news", "promo"]
COLORS = ["red", "Blue"]
WAIT_EVENT, MARK, GOAL_EVENT, WIN = "custom.ping", "custom.mark", "custom.goal", "custom.win"

ACTIONS = [
    "send_email",
    "send_sms",
    "send_site_message",
    "notify",
    "add_tag",
    "remove_tag",
    "subscribe",
    "unsubscribe",
    "move_to_stage",
    "set_field",
    "adjust_score",
]


def _ops() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(lambda v: {"gt": v}, st.integers(-2, 12)),
        st.builds(lambda v: {"lte": v}, st.integers(-2, 12)),
        st.builds(lambda v: {"eq": v}, st.sampled_from([0, 5, "5", 10])),
        st.builds(lambda a, b: {"gte": a, "lt": b}, st.integers(0, 6), st.integers(4, 12)),
    )


def leaf_conditions() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(lambda t: {"has_tag": t}, st.sampled_from([*TAGS, "VIP", "buyer"])),
        st.builds(lambda c: {"field": "color", "eq": c}, st.sampled_from(["RED", "blue", "green"])),
        st.builds(lambda c: {"field": "color", "contains": c}, st.sampled_from(["E", "lu"])),
        st.builds(lambda o: {"field": "n", **o}, _ops()),
        st.builds(lambda e: {"field": "color", "exists": e}, st.booleans()),
        st.builds(lambda o: {"score": o}, _ops()),
        st.builds(lambda x: {"in_list": x}, st.sampled_from(LISTS)),
        st.builds(lambda s: {"in_stage": {"pipeline": "sales", "stage": s}}, st.sampled_from(["lead", "won"])),
        st.builds(lambda w: {"did_event": {"event": MARK, "within": f"{w}h"}}, st.integers(1, 6)),
        st.builds(lambda: {"did_event": MARK}),
        st.builds(lambda t: {"opened_email": t}, st.sampled_from(TEMPLATES)),
        st.builds(lambda o: {"event_field": "value", **o}, _ops()),
        st.builds(lambda k: {"event_field": "kind", "eq": k}, st.sampled_from(["A", "b"])),
    )


def conditions() -> st.SearchStrategy[dict[str, Any]]:
    return st.recursive(
        leaf_conditions(),
        lambda inner: st.one_of(
            st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda x: {"not": x}, inner),
        ),
        max_leaves=4,
    )


def _action(draw: st.DrawFn, sid: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(ACTIONS))
    body: Any
    if kind in ("send_email", "send_sms", "send_site_message"):
        body = {"template": draw(st.sampled_from(TEMPLATES))}
    elif kind == "notify":
        body = {"to": ["team@example.com"], "subject": draw(st.sampled_from(["Lead", "Alert"]))}
    elif kind in ("add_tag", "remove_tag"):
        body = draw(st.lists(st.sampled_from(TAGS), min_size=1, max_size=2, unique=True))
    elif kind in ("subscribe", "unsubscribe"):
        body = {"list": draw(st.sampled_from(LISTS))}
    elif kind == "move_to_stage":
        body = {"pipeline": "sales", "stage": draw(st.sampled_from(["lead", "won"]))}
    elif kind == "set_field":
        body = draw(
            st.dictionaries(
                st.sampled_from(["color", "n"]), st.one_of(st.sampled_from(COLORS), st.integers(0, 12)), min_size=1
            )
        )
    else:
        body = draw(st.one_of(st.integers(-5, 5).filter(bool), st.builds(lambda n: {"set": n}, st.integers(0, 9))))
    return {"id": sid, kind: body}


class _Builder:
    """Builds one workflow's steps: unique ids, and the go-tos' targets chosen once every id is known."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.n = 0
        self.ids: list[str] = []
        self.gotos: list[dict[str, Any]] = []
        self.goals = 0

    def sid(self, kind: str) -> str:
        self.n += 1
        s = f"{kind}-{self.n}"
        self.ids.append(s)
        return s

    def steps(self, depth: int, min_size: int = 1) -> list[dict[str, Any]]:
        draw = self.draw
        count = draw(st.integers(max(min_size, 2) if depth == 0 else min_size, 5 if depth == 0 else 2))
        out: list[dict[str, Any]] = []
        for _ in range(count):
            out.append(self.step(depth))
        tail = draw(st.sampled_from(["none", "goto", "goto", "end", "end-named"] if depth else ["none", "goto"]))
        if tail == "goto" and out:
            g = {"goto": "?"}
            self.gotos.append(g)
            out.append(g)
        elif tail == "end":
            out.append({"end": True})
        elif tail == "end-named":
            out.append({"id": self.sid("end"), "end": {"reason": "done here"}})
        return out

    def step(self, depth: int) -> dict[str, Any]:
        draw = self.draw
        kinds = ["action", "action", "action", "wait", "wait_until", "wait_until"]
        if depth < 2:
            kinds += ["if", "if", "branch", "split"]
        if self.goals < 2:
            kinds.append("goal")
        kind = draw(st.sampled_from(kinds))
        if kind == "action":
            return _action(draw, self.sid("act"))
        if kind == "wait":
            return {"id": self.sid("wait"), "wait": f"{draw(st.integers(1, 12))}h"}
        if kind == "wait_until":
            sid = self.sid("until")
            what = draw(st.sampled_from(["event", "event", "condition", "at"]))
            if what == "at":
                return {
                    "id": sid,
                    "wait_until": {
                        "at": (DEFAULT_START + timedelta(seconds=60 + HOUR * draw(st.integers(0, 30)))).isoformat()
                    },
                }
            wu: dict[str, Any] = {"timeout": f"{draw(st.integers(1, 12))}h"}
            if what == "event":
                wu["event"] = WAIT_EVENT
                if draw(st.booleans()):
                    wu["where"] = {"n": draw(_ops())}
                if draw(st.booleans()):
                    wu["same"] = ["kind"]
            else:
                wu["condition"] = draw(
                    st.one_of(
                        st.just({"did_event": MARK}),
                        st.builds(lambda w: {"did_event": {"event": MARK, "within": f"{w}h"}}, st.integers(1, 4)),
                        st.builds(lambda o: {"did_event": {"event": MARK, "where": {"n": o}}}, _ops()),
                    )
                )
            if draw(st.booleans()):
                wu["on_timeout"] = self.steps(depth + 1, min_size=0)
            return {"id": sid, "wait_until": wu}
        if kind == "if":
            return {
                "id": self.sid("if"),
                "if": draw(conditions()),
                "then": self.steps(depth + 1, 0),
                "else": self.steps(depth + 1, 0),
            }
        if kind == "branch":
            sid = self.sid("branch")
            cases = [
                {"name": f"c{i}", "when": draw(conditions()), "steps": self.steps(depth + 1, 0)}
                for i in range(draw(st.integers(1, 3)))
            ]
            return {"id": sid, "branch": cases, "otherwise": self.steps(depth + 1, 0)}
        if kind == "split":
            sid = self.sid("split")
            first = draw(st.integers(1, 99))
            paths = [(first, "p0"), (100 - first, "p1")]
            return {
                "id": sid,
                "split": [{"name": n, "percent": p, "steps": self.steps(depth + 1, 0)} for p, n in paths],
            }
        self.goals += 1
        sid = self.sid("goal")
        goal: dict[str, Any] = draw(
            st.one_of(
                st.just({"event": GOAL_EVENT}),
                st.builds(
                    lambda lv: {"event": GOAL_EVENT, "where": {"level": lv}}, st.sampled_from(["gold", "Gold", "x"])
                ),
                st.just({"condition": {"did_event": WIN}}),
            )
        )
        if draw(st.booleans()):
            goal["otherwise"] = "end"
        return {"id": sid, "goal": goal}


@st.composite
def workflows(draw: st.DrawFn) -> dict[str, Any]:
    b = _Builder(draw)
    steps = b.steps(0)
    for g in b.gotos:
        g["goto"] = draw(st.sampled_from(b.ids)) if b.ids else "?"
    return {
        "name": "diff",
        "triggers": [{"event": TRIGGER}],
        "settings": {"max_loops": draw(st.integers(1, 3))},
        "steps": steps,
    }


def _events(draw: st.DrawFn) -> list[tuple[int, str, dict[str, Any]]]:
    kinds = st.sampled_from(
        [WAIT_EVENT, WAIT_EVENT, MARK, GOAL_EVENT, WIN, "email.opened", "tag.added", "field.changed"]
    )
    out = []
    hours = draw(st.lists(st.integers(0, 14), min_size=1, max_size=8))
    for i, h in enumerate(sorted(hours)):
        etype = draw(kinds)
        data: dict[str, Any]
        if etype == WAIT_EVENT:
            data = {"n": draw(st.integers(0, 12)), "kind": draw(st.sampled_from(["A", "a", "b"]))}
        elif etype == MARK:
            data = {"n": draw(st.integers(0, 12))}
        elif etype == GOAL_EVENT:
            data = {"level": draw(st.sampled_from(["gold", "x"]))}
        elif etype == "email.opened":
            data = {"template": draw(st.sampled_from(TEMPLATES))}
        elif etype == "tag.added":
            data = {"tag": draw(st.sampled_from(TAGS))}
        elif etype == "field.changed":
            data = {"field": "color", "value": draw(st.sampled_from(COLORS))}
        else:
            data = {}
        out.append((60 + 30 * 60 + h * HOUR + i, etype, data))
    return out


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A case whose workflow loads and passes every lint check (a file `stepwise validate` accepts)."""
    raw = draw(workflows())
    try:
        wf = parse_workflow(raw)
    except WorkflowFileError:
        wf = None
    from hypothesis import assume

    assume(wf is not None and not lint(wf))
    assert wf is not None
    fields: dict[str, Any] = draw(
        st.dictionaries(st.sampled_from(["color", "n"]), st.one_of(st.sampled_from(COLORS), st.integers(0, 12)))
    )
    return Case(
        workflow=wf,
        phone=draw(st.sampled_from([None, "+393331234567"])),
        fields=fields,
        tags=draw(st.lists(st.sampled_from(TAGS), unique=True, max_size=2)),
        lists=draw(st.lists(st.sampled_from(LISTS), unique=True, max_size=1)),
        score=draw(st.sampled_from([None, 3, 10])),
        email_consent=draw(st.booleans()) or draw(st.booleans()),
        trigger_data={"value": draw(st.integers(0, 12)), "kind": draw(st.sampled_from(["A", "b"]))},
        events=_events(draw),
    )
