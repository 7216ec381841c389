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
from tests.differential.strategies import COLORS, LISTS, MARK, TAGS, TEMPLATES, WAIT_EVENT, WIN, conditions

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


ACTION_KINDS = [
    "send_email", "send_sms", "send_site_message", "notify", "add_tag", "remove_tag", "subscribe", "unsubscribe",
    "move_to_stage", "set_field", "adjust_score", "generate_coupon", "start_workflow", "remove_from_campaign",
    "call_webhook",
]  # fmt: skip
STEP_ORDER = ["action", "wait_until", "if", "action", "wait", "branch", "action", "goal", "wait_until", "split"]


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
            else:
                wu["condition"] = draw(conditions())
            if draw(st.booleans()):
                wu["on_timeout"] = self.steps(depth + 1)
            return {"id": sid, "wait_until": wu}
        if kind == "if":
            return {"id": self.sid("if"), "if": draw(conditions()), "then": self.steps(depth + 1, 1),
                    "else": self.steps(depth + 1)}  # fmt: skip
        if kind == "branch":
            cases = [
                {"name": f"c{i}", "when": draw(conditions()), "steps": self.steps(depth + 1, int(i == 0))}
                for i in range(draw(st.integers(1, 3)))
            ]
            out: dict[str, Any] = {"id": self.sid("branch"), "branch": cases}
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
        goal: dict[str, Any] = draw(
            st.sampled_from(
                [{"event": GOAL_EVENT}, {"event": GOAL_EVENT, "where": {"level": "gold"}},
                 {"condition": {"did_event": WIN}}, {"condition": {"has_tag": "Buyer"}}]
            )
        )  # fmt: skip
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


def _event_times(draw: st.DrawFn) -> list[tuple[int, str, dict[str, Any]]]:
    """Events after the trigger (seconds after the start, type, data): what resumes waits and meets goals."""
    kinds = st.sampled_from([WAIT_EVENT, MARK, GOAL_EVENT, WIN, "email.clicked", "tag.added"])
    out = []
    for i, minutes in enumerate(sorted(draw(st.lists(st.integers(2, 60 * 40), max_size=5)))):
        etype = draw(kinds)
        data: dict[str, Any] = {}
        if etype == WAIT_EVENT:
            data = {"n": draw(st.integers(0, 12)), "kind": draw(st.sampled_from(["A", "b"]))}
        elif etype == MARK:
            data = {"n": draw(st.integers(0, 12))}
        elif etype == GOAL_EVENT:
            data = {"level": draw(st.sampled_from(["gold", "x"]))}
        elif etype == "email.clicked":
            data = {"template": "t1", "url": "https://example.com/x"}
        elif etype == "tag.added":
            data = {"tag": draw(st.sampled_from(["vip", "Buyer"]))}
        out.append((60 * minutes + i, etype, data))
    return out


@st.composite
def contacts(draw: st.DrawFn) -> dict[str, Any]:
    """One contact's starting data and the events it sends after the trigger."""
    return {
        "tags": draw(st.lists(st.sampled_from([*TAGS, "vip"]), unique=True, max_size=2)),
        "lists": draw(st.lists(st.sampled_from(LISTS), unique=True, max_size=1)),
        "fields": draw(st.dictionaries(st.sampled_from(["color", "n"]), st.sampled_from([*COLORS, 0, 7]))),
        "trigger": {"value": draw(st.integers(0, 12)), "kind": draw(st.sampled_from(["A", "b"]))},
        "events": _event_times(draw),
    }
