"""Every path of a generated workflow (tests/property/strategies.py), and a contact driven down each one.

A path is one run's choices at every point where runs part: an `if`'s then or else, a `branch`'s case or
otherwise, a `split`'s path, a `wait_until` event or condition that is met or times out, a goal met (by its
event or condition while the contact waits before it, or on entry for a condition goal) or not. The walk follows
go-tos (a decision met again takes the same way: its steering does not change; a wait met again times out) up
to `max_loops`, and goal jumps (a goal is reached once per run; its jump starts the go-to count again), as
docs/workflows.md describes them.

How a contact is steered (the strategy writes every decision's condition so that this works, and the drawn
condition is still evaluated): its field `steer`, given with the trigger, names the case each decision takes
(|go-SID-CASE|...; none: else, otherwise); a split's path is fixed by the contact's id, so the contact's
address is chosen to fall in the right bucket; a wait's event, and a goal's signal, are sent when the contact's
history shows it waiting there. What the path expects is a list of (step, outcome) records the run's history
must show in order."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

from shared.events import stable_hash
from shared.store.contacts import new_contact_id
from shared.workflow import model as m
from shared.workflow.reference import _graph
from tests.differential.strategies import GOAL_EVENT, WAIT_EVENT, WIN
from tests.property.strategies import GOAL_TAG, NAME

MAX_PATHS = 12  # more than this (rare: a few nested decisions after one another): a subset covering every choice
TRIGGER_DATA = {"value": 0, "kind": "A"}  # passes every generated trigger's `where` (value <= 3 at least)


@dataclass(frozen=True)
class Signal:
    """An event sent about the contact: its type and data."""

    type: str
    data: tuple[tuple[str, Any], ...] = ()

    def as_data(self) -> dict[str, Any]:
        return dict(self.data)


@dataclass
class Path:
    expected: list[tuple[str, str | None]] = field(default_factory=list)  # (step, outcome); None: any outcome
    route: set[str] = field(default_factory=set)  # go-SID-CASE of the decisions it is steered to
    before: list[Signal] = field(default_factory=list)  # events before the trigger (a goal's condition on entry)
    at_wait: dict[str, Signal] = field(default_factory=dict)  # wait step -> what to send when the contact waits there
    splits: dict[str, str] = field(default_factory=dict)  # split step -> path name
    choices: tuple[str, ...] = ()  # every (step:choice) taken, for coverage

    def key(self) -> tuple[Any, ...]:
        return (tuple(self.expected), tuple(sorted(self.at_wait.items(), key=str)), tuple(self.before))


@dataclass(frozen=True)
class _State:
    pos: str | None
    loops: int
    reached: frozenset[str]
    chosen: tuple[tuple[str, str], ...]  # decision -> branch taken (fixed for the run)
    visited_waits: frozenset[str]
    sent: tuple[Signal, ...]  # what was sent during the run
    wait_go: frozenset[str]  # condition waits whose go tag the contact got (met at once when met again)
    entry_goal: str | None


def goal_signal(goal: m.Goal) -> Signal:
    if goal.event is not None:
        return Signal(GOAL_EVENT, (("level", "gold" if goal.where else "x"),))
    cond = goal.condition.model_dump(exclude_none=True) if goal.condition is not None else {}
    return Signal(WIN) if "did_event" in str(cond) else Signal("tag.added", (("tag", GOAL_TAG),))


def _meets(goal: m.Goal, sig: Signal, sent: tuple[Signal, ...]) -> bool:
    """Whether the goal holds once `sig` arrives (event goals: that event; condition goals: their signal sent)."""
    if goal.event is not None:
        return sig.type == goal.event and (not goal.where or sig.as_data().get("level") == "gold")
    return goal_signal(goal) in (*sent, sig)


class Paths:
    def __init__(self, wf: m.Workflow) -> None:
        self.wf = wf
        self.nodes, self.first, self.order = _graph(wf)
        self.goals = [s for s in self.order if isinstance(self.nodes[s].step, m.GoalStep)]

    def all(self) -> list[Path]:
        found: dict[tuple[Any, ...], Path] = {}
        start = _State(self.first, 0, frozenset(), (), frozenset(), (), frozenset(), None)
        entries = [(start, Path())]
        for g in self.goals:  # a contact meeting a goal's condition on entry starts at the first such goal
            goal = self.nodes[g].step.goal
            if goal.condition is not None:
                p = Path(before=[goal_signal(goal)], choices=(f"{g}:entry",))
                p.expected.append((g, "reached"))
                entries.append((replace(start, pos=self.nodes[g].next, reached=frozenset([g]), entry_goal=g), p))
        for state, path in entries:
            for done in self._walk(state, path, 0):
                found.setdefault(done.key(), done)
        return list(found.values())

    def _walk(self, s: _State, p: Path, depth: int) -> Any:
        """Every way on from `s`, each a finished Path (a generator: the caller bounds how many it takes)."""
        while s.pos is not None:
            if depth > 400:
                raise AssertionError(f"path walk does not end at {s.pos}")
            depth += 1
            node = self.nodes[s.pos]
            r, sid = node.step, node.id
            if isinstance(r, m.GotoStep):
                if s.loops + 1 > self.wf.settings.max_loops:
                    p.expected.append(("loop-limit", "ended"))
                    break
                s = replace(s, loops=s.loops + 1, pos=r.goto)
            elif isinstance(r, m.EndStep):
                p.expected.append((sid, "ended"))
                break
            elif isinstance(r, m.IfStep | m.BranchStep | m.SplitStep):
                options = (
                    ["then", "else"]
                    if isinstance(r, m.IfStep)
                    else [c.name for c in r.branch] + ["otherwise"]
                    if isinstance(r, m.BranchStep)
                    else [x.name for x in r.split if x.percent > 0]
                )
                fixed = dict(s.chosen).get(sid)
                for choice in [fixed] if fixed else options:
                    q = _fork(p)
                    q.expected.append((sid, f"branch {choice}"))
                    q.choices += (f"{sid}:{choice}",)
                    head = (
                        node.heads[choice]
                        if isinstance(r, m.IfStep)
                        else node.heads["otherwise" if choice == "otherwise" else f"branch.{choice}"]
                        if isinstance(r, m.BranchStep)
                        else node.heads[f"split.{choice}"]
                    )
                    if isinstance(r, m.SplitStep):
                        q.splits[sid] = choice
                    elif choice not in ("else", "otherwise"):
                        q.route.add(f"go-{sid}-{choice}")
                    yield from self._walk(replace(s, pos=head, chosen=(*s.chosen, (sid, choice))), q, depth)
                return
            elif isinstance(r, m.WaitStep | m.WaitUntilStep):
                yield from self._wait(s, p, node, depth)
                return
            elif isinstance(r, m.GoalStep):
                g = r.goal
                met = (
                    any(_meets(g, x, s.sent) for x in s.sent)
                    if g.event is not None
                    else goal_signal(g) in s.sent or s.entry_goal == sid
                )
                p.expected.append((sid, "reached" if met else "not reached"))
                p.choices += (f"{sid}:{'met' if met else 'not met'}",)
                s = replace(s, pos=node.next, reached=s.reached | ({sid} if met else set()))
                if not met and g.otherwise == "end":
                    break
            else:
                p.expected.append((sid, None))
                s = replace(s, pos=node.next)
        yield p

    def _wait(self, s: _State, p: Path, node: Any, depth: int) -> Any:
        r, sid = node.step, node.id
        first_visit = sid not in s.visited_waits
        s = replace(s, visited_waits=s.visited_waits | {sid})
        wu = r.wait_until if isinstance(r, m.WaitUntilStep) else None
        if wu is not None and wu.condition is not None and sid in s.wait_go:
            c = _fork(p)  # its condition already holds: met as the wait starts
            c.expected.append((sid, "resumed"))
            yield from self._walk(replace(s, pos=node.next), c, depth)
            return
        q = _fork(p)
        q.expected.append((sid, "waiting"))
        if wu is not None and wu.at is None:
            if first_visit:  # met: the event comes (or the condition comes to hold)
                e = _fork(q)
                e.expected.append((sid, "resumed"))
                e.choices += (f"{sid}:resumed",)
                e.at_wait[sid] = self._resume(sid, wu)
                wait_go = s.wait_go | ({sid} if wu.condition is not None else set())
                yield from self._walk(replace(s, pos=node.next, wait_go=wait_go), e, depth)
            t = _fork(q)
            t.expected.append((sid, "timed out"))
            t.choices += (f"{sid}:timed out",)
            head = node.heads["on_timeout"] if wu.on_timeout is not None else node.next
            yield from self._walk(replace(s, pos=head), t, depth)
        else:
            yield from self._walk(replace(s, pos=node.next), _fork(q), depth)
        if not first_visit or (wu is not None and wu.at is not None):
            return  # a wait until a time may already have passed: no signal there
        for g in self.goals:  # a goal met while the contact waits here: the jump
            if g in s.reached:
                continue
            sig = goal_signal(self.nodes[g].step.goal)
            target = next(h for h in self.goals if h not in s.reached and _meets(self.nodes[h].step.goal, sig, s.sent))
            j = _fork(q)
            j.at_wait[sid] = sig
            j.expected.append((target, "reached"))
            j.choices += (f"{target}:jump",)
            yield from self._walk(
                replace(s, pos=self.nodes[target].next, loops=0, reached=s.reached | {target}, sent=(*s.sent, sig)),
                j,
                depth,
            )

    @staticmethod
    def _resume(sid: str, wu: m.WaitUntil) -> Signal:
        if wu.condition is not None or wu.event == "tag.added":
            return Signal("tag.added", (("tag", f"go-{sid}-event"),))
        if wu.event == WAIT_EVENT:
            return Signal(WAIT_EVENT, (("n", 12), ("kind", TRIGGER_DATA["kind"])))
        if wu.event == "email.clicked":
            return Signal("email.clicked", (("template", "t1"), ("url", "https://example.com/x")))
        raise AssertionError(f"no resume signal for {wu.event}")


def _fork(p: Path) -> Path:
    return Path(list(p.expected), set(p.route), list(p.before), dict(p.at_wait), dict(p.splits), tuple(p.choices))


def covering(paths: list[Path], limit: int = MAX_PATHS) -> list[Path]:
    """All the paths if they are few; else a subset, greedy, that takes every choice some path takes."""
    if len(paths) <= limit:
        return paths
    left = set(itertools.chain.from_iterable(p.choices for p in paths))
    out: list[Path] = []
    while left:
        best = max(paths, key=lambda p: len(left & set(p.choices)))
        out.append(best)
        left -= set(best.choices)
    return out


def address(who: int, splits: dict[str, str], wf: m.Workflow) -> str:
    """An email whose contact falls in the named path of every split (the hash the step runner uses)."""
    by_id = {s.id: s.root for s, _ in wf.walk() if isinstance(s.root, m.SplitStep)}
    for k in range(200_000):
        email = f"p{who}-{k}@example.com"
        cid = new_contact_id(("email", email))
        if all(_bucket_path(by_id[sid], cid, sid) == name for sid, name in splits.items()):
            return email
    raise AssertionError(f"no address falls in {splits}")


def _bucket_path(split: m.SplitStep, cid: str, sid: str) -> str:
    bucket = int(stable_hash(cid, NAME, sid), 16) % 10_000 / 100
    total = 0.0
    for path in split.split:
        total += path.percent
        if bucket < total:
            return path.name
    return split.split[-1].name


def taken(expected: list[tuple[str, str | None]], records: list[tuple[str, str]]) -> str:
    """'' when the records show every expected one in order, else what is missing."""
    i = 0
    for step, outcome in records:
        if i < len(expected) and expected[i][0] == step and expected[i][1] in (None, outcome):
            i += 1
    if i == len(expected):
        return ""
    return f"missing {expected[i]} (after {expected[:i][-3:]})"
