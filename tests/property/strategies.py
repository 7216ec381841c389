"""Hypothesis strategies for the validate-means-runs property: workflow files (YAML text) across every step kind,
trigger kind and nesting the format allows, with a companion workflow that start_workflow / subscribe name.

Broader than tests/differential/strategies.py on purpose: no reference to agree with, so anything the format
accepts is fair (go-tos anywhere, ids YAML could misread, `at` with numeric offsets, webhooks, coupons, starts of
other workflows and of this one). Its condition strategy is reused."""

from __future__ import annotations

import re
from datetime import UTC, timedelta, timezone
from typing import Any

import yaml
from hypothesis import strategies as st

from stepwise.simulate import DEFAULT_START
from tests.differential.strategies import COLORS, LISTS, TAGS, TEMPLATES, WAIT_EVENT, WIN, conditions

NAME, OTHER = "pt", "other"
TRIGGER, GOAL_EVENT = "custom.start", "custom.goal"
HOUR = 3600
# Ids a YAML 1.1 reader would turn into booleans or null if they were not kept as strings.
TRICKY_IDS = ["yes", "no", "on", "off", "y", "n", "e" * 63]
ZONES = [UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30))]
OTHER_WORKFLOW = f"""name: {OTHER}
steps:
  - id: o-act
    add_tag: started-by-pt
  - id: o-wait
    wait: 2h
  - id: o-send
    send_site_message: {{template: t1}}
"""


GOAL_TAG = "goal-met"
GOALS: list[dict[str, Any]] = [
    {"event": GOAL_EVENT}, {"event": GOAL_EVENT, "where": {"level": "gold"}},
    {"condition": {"did_event": WIN}}, {"condition": {"has_tag": GOAL_TAG}},
]  # fmt: skip

ACTION_KINDS = [
    "send_email", "send_sms", "send_site_message", "notify", "add_tag", "remove_tag", "subscribe", "unsubscribe",
    "move_to_stage", "set_field", "adjust_score", "generate_coupon", "start_workflow", "remove_from_campaign",
    "call_webhook",
]  # fmt: skip
STEP_ORDER = ["action", "wait_until", "if", "action", "wait", "branch", "action", "goal", "wait_until", "split"]


STEER = "steer"  # the contact field the property test steers decisions by: |go-SID-CASE|... (no step sets it)


def steered(sid: str, case: str, drawn: dict[str, Any], wait: bool = False) -> dict[str, Any]:
    """`drawn`, made steerable: for a contact with the field `steer` it holds only when the field names
    go-SID-CASE (none of the cases: else, otherwise), a condition wait's only when the contact gets the tag
    go-SID-event while it waits; the drawn condition is still evaluated, first."""
    go = {"has_tag": f"go-{sid}-{case}"} if wait else {"field": STEER, "contains": f"|go-{sid}-{case}|"}
    return {"any": [{"all": [drawn, {"not": {"field": STEER, "exists": True}}]}, go]}


def _at(draw: st.DrawFn, hours: st.SearchStrategy[int]) -> str:
    """A time `hours` after the simulation's start, written in one of several UTC offsets."""
    t = DEFAULT_START + timedelta(seconds=60 + HOUR * draw(hours))
    return t.astimezone(draw(st.sampled_from(ZONES))).isoformat()


class Builder:
    """One workflow's steps: unique ids, and the go-tos' and start-ats' targets chosen once every id is known."""

    def __init__(self, draw: st.DrawFn, webhook_url: str) -> None:
        self.draw = draw
        self.url = webhook_url
        self.n = 0
        self.ids: list[str] = []
        self.pending: list[tuple[dict[str, Any], str]] = []  # (mapping, key) to fill with a step id at the end
        self.goals = 0
        self.goal_ids: list[str] = []
        self.goal_refs: list[dict[str, Any]] = []  # split winners by a named goal, filled at the end
        self.tricky = list(TRICKY_IDS)
        # Kinds are taken in turn from a drawn order, so even the simplest examples Hypothesis starts with (and
        # 25 seeded ones in CI) use every kind: independent draws would repeat the first kind of the list.
        self.actions = draw(st.permutations(ACTION_KINDS))
        self.kinds = draw(st.permutations(STEP_ORDER))
        self.ai = self.ki = 0
        self.goal_kinds = draw(st.permutations(range(len(GOALS))))

    def next_action(self) -> str:
        self.ai += 1
        return self.actions[(self.ai - 1) % len(self.actions)]

    def next_kind(self, depth: int) -> str:
        self.ki += 1
        kind = self.kinds[(self.ki - 1) % len(self.kinds)]
        if (kind in ("if", "branch", "split") and depth >= 3) or (kind == "goal" and self.goals >= 2):
            return "action"
        return kind

    def sid(self, kind: str) -> str:
        self.n += 1
        if self.tricky and self.draw(st.integers(0, 9)) == 0:
            s = self.tricky.pop(self.draw(st.integers(0, len(self.tricky) - 1)))
        else:
            s = f"{kind}-{self.n}"
        self.ids.append(s)
        return s

    def action(self) -> dict[str, Any]:
        draw = self.draw
        kind = self.next_action()
        body: Any
        if kind in ("send_email", "send_sms"):
            body = {"template": draw(st.sampled_from(TEMPLATES))}
            if kind == "send_email" and draw(st.booleans()):
                body["subject"] = "Hello {{ first_name }}"
            if draw(st.booleans()):
                body["transactional"] = True
            if draw(st.integers(0, 3)) == 0:
                body["campaign"] = draw(st.sampled_from([OTHER, "spring-sale"]))
            window = draw(st.sampled_from([None, "anytime", {"between": "09:00-20:00", "timezone": "Europe/Rome"}]))
            if window is not None:
                body["send_window"] = window
        elif kind == "send_site_message":
            body = {"template": draw(st.sampled_from(TEMPLATES))}
        elif kind == "notify":
            body = {"to": draw(st.sampled_from([["team@example.com"], ["A@Example.com", "b@example.com"]])),
                    "subject": "Lead"}  # fmt: skip
            if draw(st.booleans()):
                body["template"] = draw(st.sampled_from(TEMPLATES))
        elif kind in ("add_tag", "remove_tag"):
            body = draw(st.one_of(st.sampled_from(TAGS), st.lists(st.sampled_from(TAGS), min_size=1, unique=True)))
        elif kind in ("subscribe", "unsubscribe"):
            body = draw(st.sampled_from([{"list": LISTS[0]}, {"list": LISTS[1]}, {"campaign": OTHER}]))
        elif kind == "move_to_stage":
            body = {"pipeline": "sales", "stage": draw(st.sampled_from(["lead", "won"]))}
        elif kind == "set_field":
            body = draw(
                st.dictionaries(
                    st.sampled_from(["color", "n", "nested"]),
                    st.one_of(st.sampled_from(COLORS), st.integers(0, 12), st.just({"a": [1, "x"]})),
                    min_size=1,
                )
            )
        elif kind == "adjust_score":
            body = draw(
                st.one_of(
                    st.integers(-5, 5).filter(bool),
                    st.builds(lambda n: {"set": n}, st.integers(0, 9)),
                    st.builds(lambda n: {"add": n}, st.integers(-3, 3)),
                )
            )
        elif kind == "generate_coupon":
            body = draw(
                st.sampled_from(
                    [{"amount_off": 5.5}, {"prefix": "XM-", "percent_off": 10, "valid_for": "7d"},
                     {"percent_off": 100, "field": "gift_code", "valid_for": 86400}]
                )
            )  # fmt: skip
        elif kind == "start_workflow":
            body = {"workflow": draw(st.sampled_from([OTHER, NAME]))}
            at = draw(st.sampled_from([None, "o-wait", "o-send", "*"]))
            if body["workflow"] == OTHER and at not in (None, "*"):
                body["at"] = at
            elif body["workflow"] == NAME and at == "*":
                body["at"] = "?"
                self.pending.append((body, "at"))
        elif kind == "remove_from_campaign":
            body = OTHER
        else:
            body = {"url": self.url, "timeout": draw(st.sampled_from([5, "10s"]))}
            if draw(st.booleans()):
                body["body"] = {"source": "stepwise", "list": [1, 2]}
            if draw(st.booleans()):
                body["method"] = "PUT"
        step = {"id": self.sid("act"), kind: body}
        if draw(st.integers(0, 5)) == 0:
            step["name"] = "A step: with 'quotes' & ünïcode"
        return step

    def steps(self, depth: int, min_size: int = 0) -> list[dict[str, Any]]:
        draw = self.draw
        count = draw(st.integers(3 if depth == 0 else min_size, 6 if depth == 0 else 2))
        out = [self.step(depth) for _ in range(count)]
        for step in out:  # a label on any kind (actions draw their own)
            if "name" not in step and draw(st.integers(0, 7)) == 0:
                step["name"] = "Check: «label»"
        tail = draw(st.sampled_from(["none"] * 6 + ["goto", "goto-named", "end", "end-named", "end-reason"]))
        if tail.startswith("goto"):
            g: dict[str, Any] = {"goto": "?"}
            if tail == "goto-named":
                g = {"id": self.sid("jump"), **g}
            self.pending.append((g, "goto"))
            out.append(g)
        elif tail == "end":
            out.append({"end": draw(st.sampled_from([True, None]))})
        elif tail == "end-reason":
            out.append({"end": "bought"})
        elif tail == "end-named":
            out.append({"id": self.sid("end"), "end": {"reason": "done here"}})
        return out

    def step(self, depth: int) -> dict[str, Any]:
        draw = self.draw
        kind = self.next_kind(depth)
        if kind == "action":
            return self.action()
        if kind == "wait":
            return {"id": self.sid("wait"), "wait": draw(st.sampled_from(["1h", "90m", "2d", 3600, "1w"]))}
        if kind == "wait_until":
            sid = self.sid("until")
            what = draw(st.sampled_from(["event", "event", "condition", "at"]))
            if what == "at":
                return {"id": sid, "wait_until": {"at": _at(draw, st.integers(-2, 30))}}
            wu: dict[str, Any] = {"timeout": draw(st.sampled_from(["1h", "3h", "1d", 7200]))}
            if what == "event":
                wu["event"] = draw(st.sampled_from([WAIT_EVENT, WAIT_EVENT, "email.clicked", "tag.added"]))
                if wu["event"] == WAIT_EVENT and draw(st.booleans()):
                    wu["where"] = {"n": {"gt": draw(st.integers(0, 6))}}
                if wu["event"] == WAIT_EVENT and draw(st.booleans()):
                    wu["same"] = ["kind"]
                if wu["event"] == "tag.added":  # the tags steps add (here or in other runs) never resume it
                    wu["where"] = {"tag": f"go-{sid}-event"}
            else:
                wu["condition"] = steered(sid, "event", draw(conditions()), wait=True)
            if draw(st.booleans()):
                wu["on_timeout"] = self.steps(depth + 1)
            return {"id": sid, "wait_until": wu}
        if kind == "if":
            sid = self.sid("if")
            return {"id": sid, "if": steered(sid, "then", draw(conditions())), "then": self.steps(depth + 1, 1),
                    "else": self.steps(depth + 1)}  # fmt: skip
        if kind == "branch":
            sid = self.sid("branch")
            cases = [
                {"name": f"c{i}", "when": steered(sid, f"c{i}", draw(conditions())),
                 "steps": self.steps(depth + 1, int(i == 0))}
                for i in range(draw(st.integers(1, 3)))
            ]  # fmt: skip
            out: dict[str, Any] = {"id": sid, "branch": cases}
            if draw(st.booleans()):
                out["otherwise"] = self.steps(depth + 1)
            return out
        if kind == "split":
            sid = self.sid("split")
            first = draw(st.sampled_from([1, 33.3, 50, 99]))
            shares = [first, 100 - first] if first != 33.3 else [33.3, 33.3, 33.4]
            step: dict[str, Any] = {
                "id": sid,
                "split": [
                    {"name": f"p{i}", "percent": p, "steps": self.steps(depth + 1)} for i, p in enumerate(shares)
                ],
            }
            if draw(st.integers(0, 3)) == 0:
                by = draw(st.sampled_from(["email_opened", "email_clicked", "goal", "goal-named"]))
                winner: dict[str, Any] = {"by": by.removesuffix("-named"), "min_contacts": 10, "after": "1h"}
                if by == "goal-named":  # a goal step's id: lint refuses one that is not a goal (nothing promised)
                    winner["goal"] = "?"
                    self.goal_refs.append(winner)
                step["winner"] = winner
            return step
        self.goals += 1
        # Each goal of a workflow its own kind, so one signal meets one goal (the event ones excepted: gold meets
        # both); the tag is one no step adds, so only the contact driven to meet the goal meets it.
        goal: dict[str, Any] = GOALS[self.goal_kinds[self.goals - 1]]
        if draw(st.booleans()):
            goal = {**goal, "otherwise": "end"}
        sid = self.sid("goal")
        self.goal_ids.append(sid)
        return {"id": sid, "goal": goal}


def _triggers(draw: st.DrawFn) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"event": TRIGGER}]
    if draw(st.booleans()):
        out[0]["where"] = {"value": {"lte": draw(st.integers(3, 12))}}
    if draw(st.integers(0, 3)) == 0:
        out[0]["delay"] = draw(st.sampled_from(["30m", "1d"]))
    extra = draw(st.sampled_from(["none", "again", "again", "schedule"]))
    if extra == "again":
        out.append({"event": "custom.again", "where": {"value": {"gt": 6}}})
    elif extra == "schedule":
        out.append({"at": _at(draw, st.integers(1, 6)), "list": LISTS[0]})
    return out


def dump(raw: dict[str, Any]) -> str:
    """YAML as a person writes it: ids bare (`id: yes`, not `id: 'yes'`), so the loader's reading of them counts."""
    text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    return re.sub(r"^(\s*(?:- )?id: )'([^'\n]*)'$", r"\1\2", text, flags=re.M)


@st.composite
def workflow_files(draw: st.DrawFn, webhook_url: str) -> str:
    """The YAML text of one workflow file named pt (its companion, OTHER_WORKFLOW, sits beside it)."""
    b = Builder(draw, webhook_url)
    steps = b.steps(0, min_size=1)
    for mapping, key in b.pending:
        mapping[key] = draw(st.sampled_from(b.ids)) if b.ids else "nowhere"
    for winner in b.goal_refs:
        winner["goal"] = draw(st.sampled_from(b.goal_ids or b.ids))
    raw: dict[str, Any] = {"name": NAME}
    if draw(st.integers(0, 3)) == 0:
        raw["description"] = "Generated: every kind: 'quoted' & ünïcode"
    raw["triggers"] = _triggers(draw)
    reentry = draw(st.sampled_from([None, "once", "always", {"once_per": "1d"}]))
    if reentry is not None:
        raw["reentry"] = reentry
    settings: dict[str, Any] = {"max_loops": draw(st.integers(1, 3))}
    if draw(st.integers(0, 3)) == 0:
        settings["history_days"] = draw(st.sampled_from([1, 90, 365]))
    if draw(st.integers(0, 3)) == 0:
        settings["send_window"] = {"between": "22:00-06:00", "timezone": "America/New_York"}
    raw["settings"] = settings
    raw["steps"] = steps
    return dump(raw)


def _in_hours(hours: int) -> str:
    return (DEFAULT_START + timedelta(hours=hours)).isoformat()


def explicit_files(webhook_url: str) -> list[str]:
    """Files the CI run always checks first (hypothesis `example`s), so its few generated ones need not be lucky:
    together they hold every step kind, both trigger kinds, every nesting (then, else, a branch case, otherwise,
    a split path, on_timeout), every goal kind and every wait kind, so every kind of path is driven."""
    t = TEMPLATES[0]
    actions = {
        "send_email": {"template": t, "send_window": "anytime"}, "send_sms": {"template": t},
        "send_site_message": {"template": t}, "notify": {"to": ["team@example.com"], "subject": "Lead"},
        "add_tag": "vip", "remove_tag": ["vip"], "subscribe": {"list": LISTS[0]}, "unsubscribe": {"campaign": OTHER},
        "move_to_stage": {"pipeline": "sales", "stage": "lead"}, "set_field": {"color": "red"}, "adjust_score": 2,
        "generate_coupon": {"amount_off": 5.5}, "start_workflow": {"workflow": OTHER},
        "remove_from_campaign": OTHER, "call_webhook": {"url": webhook_url, "timeout": 5},
    }  # fmt: skip
    assert set(actions) == set(ACTION_KINDS)
    every_action = {
        "name": NAME,
        "triggers": [{"event": TRIGGER}, {"at": _in_hours(3), "list": LISTS[0]}],
        "settings": {"max_loops": 2},
        "steps": [
            *({"id": f"a-{kind.replace('_', '-')}", kind: body} for kind, body in actions.items()),
            {"id": "d-if", "if": steered("d-if", "then", {"has_tag": "vip"}),
             "then": [{"id": "t-tag", "add_tag": "vip"}], "else": [{"id": "e-tag", "remove_tag": "vip"}]},
            {"id": "w-ping", "wait_until": {"event": WAIT_EVENT, "timeout": "1h",
                                            "on_timeout": [{"id": "ot-tag", "add_tag": "Buyer"}]}},
            {"id": "d-branch", "branch": [
                {"name": "c0", "when": steered("d-branch", "c0", {"score": {"gte": 2}}),
                 "steps": [{"id": "b-0", "add_tag": "vip"}]},
                {"name": "c1", "when": steered("d-branch", "c1", {"field": "color", "eq": "RED"}),
                 "steps": [{"end": "bought"}]},
            ], "otherwise": [{"id": "b-o", "set_field": {"n": 1}}]},
            {"id": "g-event", "goal": GOALS[0]},
            {"id": "w-1", "wait": "1h"},
            {"id": "g-cond", "goal": {**GOALS[2], "otherwise": "end"}},
            {"id": "last", "add_tag": "done"},
        ],
    }  # fmt: skip
    every_wait = {
        "name": NAME,
        "triggers": [{"event": TRIGGER, "delay": "30m"}],
        "settings": {"max_loops": 1},
        "steps": [
            {"id": "s", "split": [
                {"name": "p0", "percent": 50, "steps": [{"id": "p0-a", "add_tag": "vip"}]},
                {"name": "p1", "percent": 50, "steps": [
                    {"id": "p1-w", "wait_until": {"event": "email.clicked", "timeout": "2h"}}]},
            ]},
            {"id": "w-tag", "wait_until": {"event": "tag.added", "where": {"tag": "go-w-tag-event"}, "timeout": "1h"}},
            {"id": "w-cond", "wait_until": {
                "condition": steered("w-cond", "event", {"has_tag": "vip"}, wait=True), "timeout": "1h",
                "on_timeout": [{"id": "again", "if": steered("again", "then", {"score": {"lt": 1}}),
                                "then": [{"goto": "s"}], "else": []}]}},
            {"id": "w-at", "wait_until": {"at": _in_hours(30)}},
            {"id": "g-gold", "goal": GOALS[1]},
            {"id": "g-tag", "goal": GOALS[3]},
            {"end": {"reason": "done"}},
        ],
    }  # fmt: skip
    return [dump(every_action), dump(every_wait)]
