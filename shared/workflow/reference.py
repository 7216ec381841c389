"""The reference interpreter: what docs/workflows.md says one contact's run of a workflow does, in plain Python.

It is the documentation's executable twin, written from the page and nothing else (no compiler, step runner or
router is imported): the differential tests run it beside the compiled machine on the local stack and expect the
same timeline. Given a workflow, a contact and a timed sequence of events it returns, in the vocabulary of the
contact's history records, which steps ran, in which order, when, with which outcome; the messages sent; the
contact as it ends up.

What it models: every step kind of one workflow for one contact (other workflows started, subscribed or stopped
are noted, not run), the operators and conditions, waits with events, conditions and timeouts, goals (jumps,
once per run, met on entry), go-to loops and `max_loops`, splits by the documented hash. Not modelled: split
winners (a winner needs `min_contacts` >= 10 contacts: one contact never picks one), send windows and frequency
caps, coupon codes (the field is set to a placeholder) and webhook calls (assumed to answer 2xx).

Ties in time: an event at the instant a wait ends comes after it (the clock wakes the run first); an event is
handled after everything the run does at its instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.events import stable_hash  # the split's hash: the one function shared with the runtime
from shared.workflow import model as m
from shared.workflow.conditions import (
    AllOf,
    AnyOf,
    ClickedEmail,
    Compare,
    Condition,
    DidEvent,
    FieldCondition,
    HasTag,
    InCampaign,
    InList,
    InStage,
    Not,
    OpenedEmail,
    ScoreCondition,
    TriggerField,
    Where,
)

LOOP_LIMIT = "loop-limit"  # the record a run ended by settings.max_loops shows
BUILT_IN_FIELDS = ("email", "phone", "timezone", "first_name", "last_name")


@dataclass(frozen=True)
class Event:
    """An event about the contact at a time: its type, its data and the contact data it brings (a form's fields)."""

    at: datetime
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class Contact:
    id: str
    email: str | None = None
    phone: str | None = None
    timezone: str | None = None
    tags: set[str] = field(default_factory=set)
    fields: dict[str, Any] = field(default_factory=dict)
    score: float = 0
    lists: set[str] = field(default_factory=set)
    stages: dict[str, str] = field(default_factory=dict)
    campaigns: dict[str, str] = field(default_factory=dict)
    consent: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """One history record: (time, step id, outcome) as `stepwise history` and the timeline show them."""

    at: datetime
    step: str
    outcome: str


@dataclass(frozen=True)
class Message:
    at: datetime
    channel: str  # email, sms, site, alert
    template: str  # the template, or for an alert without one its subject
    step: str


@dataclass
class Trace:
    records: list[Record] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    emitted: list[Event] = field(default_factory=list)  # events the run's actions caused (tag.added...)
    started: list[str] = field(default_factory=list)  # other workflows started or stopped: "start x", "stop y"
    contact: Contact | None = None


# ---- conditions and operators (docs: "Conditions", "Operators") -------------------------------------------


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return float(v) if hasattr(v, "as_tuple") else None  # Decimal


def _equal(a: Any, b: Any) -> bool:
    """Text compares case-insensitively, "50" equals 50."""
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na == nb
    return bool(a == b)


def _text(v: Any) -> str:
    return " ".join(str(x) for x in v) if isinstance(v, list) else str(v)


def passes(value: Any, ops: Compare) -> bool:
    """Every operator of the mapping holds; a missing value fails all but `exists: false`."""
    for name in ops.model_fields_set:
        want = getattr(ops, name)
        if name == "exists":
            if (value is not None) != bool(want):
                return False
        elif value is None:
            return False
        elif name in ("gt", "gte", "lt", "lte"):
            n = _number(value)
            holds = {"gt": n > want, "gte": n >= want, "lt": n < want, "lte": n <= want} if n is not None else {}
            if not holds.get(name, False):
                return False
        elif (name == "eq" and not _equal(value, want)) or (name == "ne" and _equal(value, want)):
            return False
        elif name == "contains":
            items = value if isinstance(value, list) else [value]
            if not any(str(want).casefold() in str(i).casefold() for i in items):
                return False
        elif (name == "starts_with" and not _text(value).casefold().startswith(str(want).casefold())) or (
            name == "in_" and not any(_equal(value, w) for w in want)
        ):
            return False
    return True


def lookup(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def where_holds(where: Where | None, data: dict[str, Any]) -> bool:
    if where is None:
        return True
    for key, want in where.root.items():
        ops = Compare.model_validate(want) if isinstance(want, dict) else Compare(eq=want)
        if not passes(lookup(data, key), ops):
            return False
    return True


def _ops(leaf: FieldCondition | TriggerField) -> Compare:
    return leaf.ops()


def _in(name: str, names: set[str]) -> bool:
    return name.casefold() in {n.casefold() for n in names}


@dataclass
class _World:
    """What a condition looks at: the contact, what happened to it (with times) and the run's triggering event."""

    contact: Contact
    activity: list[Event]
    trigger: dict[str, Any]
    now: datetime

    def happened(self, etype: str, within: int | None) -> list[Event]:
        since = self.now - timedelta(seconds=within) if within is not None else None
        return [e for e in self.activity if e.type == etype and e.at <= self.now and (since is None or e.at >= since)]


def holds(cond: Condition, w: _World) -> bool:
    r, c = cond.root, w.contact
    if isinstance(r, AllOf):
        return all(holds(x, w) for x in r.all)
    if isinstance(r, AnyOf):
        return any(holds(x, w) for x in r.any)
    if isinstance(r, Not):
        return not holds(r.not_, w)
    if isinstance(r, HasTag):
        return _in(r.has_tag, c.tags)
    if isinstance(r, FieldCondition):
        value = getattr(c, r.field) if r.field in ("email", "phone", "timezone") else c.fields.get(r.field)
        return passes(value, _ops(r))
    if isinstance(r, ScoreCondition):
        return passes(c.score, r.score)
    if isinstance(r, InList):
        return _in(r.in_list, c.lists)
    if isinstance(r, InCampaign):
        return r.in_campaign in c.campaigns and (r.at_stage is None or c.campaigns[r.in_campaign] == r.at_stage)
    if isinstance(r, InStage):
        stage = c.stages.get(r.in_stage.pipeline)
        return stage is not None and stage.casefold() == r.in_stage.stage.casefold()
    if isinstance(r, OpenedEmail):
        return any(e.data.get("template") == r.opened_email for e in w.happened("email.opened", r.within))
    if isinstance(r, ClickedEmail):
        s = r.spec()
        return any(
            e.data.get("template") == s.template and (s.link is None or e.data.get("link") == s.link)
            for e in w.happened("email.clicked", r.within)
        )
    if isinstance(r, DidEvent):
        ev = r.spec()
        return any(where_holds(ev.where, e.data) for e in w.happened(ev.event, ev.within))
    if isinstance(r, TriggerField):
        return passes(lookup(w.trigger, r.event_field), _ops(r))
    raise TypeError(f"unhandled condition {type(r).__name__}")  # every kind of the docs' table is above


# ---- the step graph ----------------------------------------------------------------------------------------


def derived_id(kind: str, loc: tuple[str, ...]) -> str:
    """A go-to's or end's id from its position ("goto-2-then-0"), as the docs describe; a hash when too long."""
    text = f"{kind}-{'-'.join(loc[1:])}".replace("_", "-").replace(".", "-")
    if len(text) > 63:
        text = f"{kind}-{stable_hash('/'.join(loc)).ljust(16, '0')[:16]}"
    return text


@dataclass
class _Node:
    step: Any  # the step's model (SendEmailStep, IfStep, ...)
    id: str
    next: str | None  # the step after it (None: the run ends)
    heads: dict[str, str | None] = field(default_factory=dict)  # branch name -> where that branch starts


def _graph(wf: m.Workflow) -> tuple[dict[str, _Node], str | None, list[str]]:
    nodes: dict[str, _Node] = {}
    order: list[str] = []

    def visit(steps: list[m.Step], cont: str | None, where: tuple[str, ...]) -> str | None:
        ids = [s.id or derived_id("goto" if s.kind == "goto" else "end", (*where, str(i))) for i, s in enumerate(steps)]
        for i, step in enumerate(steps):
            r, sid = step.root, ids[i]
            nxt = ids[i + 1] if i + 1 < len(steps) else cont
            if isinstance(r, m.EndStep):
                nxt = None
            node = nodes[sid] = _Node(r, sid, nxt)
            order.append(sid)
            for name, inner in m.branches(step):
                node.heads[name] = visit(inner, nxt, (*where, str(i), *name.split(".")))
        return ids[0] if ids else cont

    first = visit(wf.steps, None, ("steps",))
    return nodes, first, order


# ---- one run -----------------------------------------------------------------------------------------------


class _Ended(Exception):
    pass


@dataclass
class _Interrupt:
    kind: str  # "resumed" or "goal"
    at: datetime
    goal: str = ""


class Interpreter:
    def __init__(self, wf: m.Workflow, contact: Contact, events: list[Event], horizon: timedelta) -> None:
        self.wf = wf
        self.c = contact
        self.pending = sorted(events, key=lambda e: e.at)  # stable: same-instant events keep their order
        self.activity: list[Event] = []
        self.trace = Trace()
        self.nodes, self.first, self.order = _graph(wf)
        self.goals = [sid for sid in self.order if isinstance(self.nodes[sid].step, m.GoalStep)]
        self.horizon = horizon
        self.limit: datetime | None = None
        self.trigger: Event | None = None
        self.reached: set[str] = set()  # goals reached this run: no event jumps back to them
        self.loops = 0

    # -- the world moving on: events change the contact and are remembered --
    def _apply(self, e: Event) -> None:
        c, d = self.c, e.data
        c.fields.update(e.fields)
        if e.type in ("tag.added", "tag.removed") and d.get("tag"):
            (c.tags.add if e.type == "tag.added" else c.tags.discard)(d["tag"])
        elif e.type in ("list.subscribed", "list.unsubscribed") and d.get("list"):
            (c.lists.add if e.type == "list.subscribed" else c.lists.discard)(d["list"])
        elif e.type == "field.changed" and d.get("field"):
            c.fields[str(d["field"])] = d.get("value")
        elif e.type == "score.changed" and isinstance(d.get("score"), int | float):
            c.score = d["score"]
        elif e.type in ("consent.given", "consent.withdrawn") and d.get("channel") in ("email", "sms"):
            c.consent[d["channel"]] = e.type == "consent.given"
        elif e.type == "email.unsubscribed":
            c.consent["email"] = False
        elif e.type == "sms.opted_out":
            c.consent["sms"] = False
        self.activity.append(e)

    def _world(self, now: datetime) -> _World:
        return _World(self.c, self.activity, self.trigger.data if self.trigger else {}, now)

    def _record(self, at: datetime, step: str, outcome: str) -> None:
        self.trace.records.append(Record(at, step, outcome))

    def _emit(self, at: datetime, etype: str, data: dict[str, Any]) -> None:
        e = Event(at, etype, data)
        self.trace.emitted.append(e)
        self.activity.append(e)

    # -- entry --
    def run(self) -> Trace:
        while self.pending and self.trigger is None:
            e = self.pending.pop(0)
            self._apply(e)
            for t in self.wf.triggers:
                tr = t.root
                if isinstance(tr, m.Trigger) and tr.event == e.type and where_holds(tr.where, e.data):
                    self.trigger = e
                    self._start(e, tr.delay or 0)
                    break
        while self.pending:  # after the run: the contact still changes
            self._apply(self.pending.pop(0))
        self.trace.contact = self.c
        return self.trace

    def _start(self, trigger: Event, delay: int) -> None:
        t = trigger.at
        self.limit = t + self.horizon
        pos = self.first
        for g in self.goals:  # a contact already meeting a goal's condition starts at that goal
            cond = self.nodes[g].step.goal.condition
            if cond is not None and holds(cond, self._world(t)):
                pos, delay = g, 0
                self._record(t, g, "reached")
                self.reached.add(g)
                pos = self.nodes[g].next
                break
        try:
            if delay:
                got = self._pass_time(t, t + timedelta(seconds=delay), None)
                if got is not None:  # a goal met during the start delay
                    pos, t = self._jump(got)
                else:
                    t = t + timedelta(seconds=delay)
            while True:
                try:
                    self._walk(pos, t)
                    return
                except _GoalJump as jump:
                    pos, t = self._jump(jump.interrupt)
        except _Ended:
            return

    def _jump(self, got: _Interrupt) -> tuple[str | None, datetime]:
        self._record(got.at, got.goal, "reached")
        self.reached.add(got.goal)
        self.loops = 0  # a goal's jump is a new start of the run at the goal: its go-tos count from 0
        return self.nodes[got.goal].next, got.at

    # -- time passing while the contact waits: events may resume the wait or jump it to a goal --
    def _pass_time(
        self, t: datetime, until: datetime, resumes: Any, cond: Condition | None = None
    ) -> _Interrupt | None:
        """Handle every event before `until`; the first that resumes the wait (`resumes(event)`) or meets a goal
        ends the waiting. None: the wait ran to `until`."""
        if cond is not None and holds(cond, self._world(t)):
            return _Interrupt("resumed", t)
        end = min(until, self.limit) if self.limit else until
        while self.pending and self.pending[0].at < end:
            e = self.pending.pop(0)
            self._apply(e)
            if resumes is not None and resumes(e):
                return _Interrupt("resumed", e.at)
            if cond is not None and holds(cond, self._world(e.at)):
                return _Interrupt("resumed", e.at)
            goal = self._goal_met_by(e)
            if goal:
                return _Interrupt("goal", e.at, goal)
        if self.limit is not None and until >= self.limit:
            raise _Ended  # the horizon: the run is still waiting when the observation stops
        return None

    def _goal_met_by(self, e: Event) -> str:
        for g in self.goals:
            if g in self.reached:
                continue
            goal = self.nodes[g].step.goal
            if goal.event is not None:
                if goal.event == e.type and where_holds(goal.where, e.data):
                    return g
            elif holds(goal.condition, self._world(e.at)):
                return g
        return ""

    def _wait(
        self, t: datetime, until: datetime, resumes: Any = None, cond: Condition | None = None
    ) -> _Interrupt | None:
        got = self._pass_time(t, until, resumes, cond)
        if got is not None and got.kind == "goal":
            raise _GoalJump(got)
        return got

    # -- the steps --
    def _walk(self, pos: str | None, t: datetime) -> None:
        while pos is not None:
            node = self.nodes[pos]
            r, sid = node.step, node.id
            if isinstance(r, m.GotoStep):
                self.loops += 1
                if self.loops > self.wf.settings.max_loops:
                    self._record(t, LOOP_LIMIT, "ended")
                    return
                pos = r.goto
            elif isinstance(r, m.EndStep):
                self._record(t, sid, "ended")
                return
            elif isinstance(r, m.WaitStep):
                self._record(t, sid, "waiting")
                until = t + timedelta(seconds=r.wait)
                self._wait(t, until)
                pos, t = node.next, until
            elif isinstance(r, m.WaitUntilStep):
                pos, t = self._wait_until(node, r.wait_until, t)
            elif isinstance(r, m.IfStep):
                branch = "then" if holds(r.if_, self._world(t)) else "else"
                self._record(t, sid, f"branch {branch}")
                pos = node.heads[branch]
            elif isinstance(r, m.BranchStep):
                name = next((c.name for c in r.branch if holds(c.when, self._world(t))), "otherwise")
                self._record(t, sid, f"branch {name}")
                pos = node.heads["otherwise" if name == "otherwise" else f"branch.{name}"]
            elif isinstance(r, m.SplitStep):
                name = self._split_path(r, sid)
                self._record(t, sid, f"branch {name}")
                pos = node.heads[f"split.{name}"]
            elif isinstance(r, m.GoalStep):
                g = r.goal
                if g.condition is not None:
                    met = holds(g.condition, self._world(t))
                else:
                    met = any(e.type == g.event and where_holds(g.where, e.data) for e in self.activity)
                self._record(t, sid, "reached" if met else "not reached")
                if met:
                    self.reached.add(sid)
                elif g.otherwise == "end":
                    return
                pos = node.next
            else:
                self._act(r, sid, t)
                pos = node.next

    def _wait_until(self, node: _Node, wu: m.WaitUntil, t: datetime) -> tuple[str | None, datetime]:
        self._record(t, node.id, "waiting")
        if wu.at is not None:
            until = max(t, wu.at)
            self._wait(t, until)
            return node.next, until
        trigger = self.trigger.data if self.trigger else {}

        def resumes(e: Event) -> bool:
            return (
                e.type == wu.event
                and where_holds(wu.where, e.data)
                and all(lookup(e.data, k) == lookup(trigger, k) for k in wu.same)
            )

        deadline = t + timedelta(seconds=wu.timeout or 0)
        got = self._wait(t, deadline, resumes if wu.event else None, wu.condition)
        if got is not None:
            self._record(got.at, node.id, "resumed")
            return node.next, got.at
        self._record(deadline, node.id, "timed out")
        return (node.heads["on_timeout"] if wu.on_timeout is not None else node.next), deadline

    def _split_path(self, r: m.SplitStep, sid: str) -> str:
        """A contact's path is fixed by a hash of contact, workflow and step (docs: split)."""
        bucket = int(stable_hash(self.c.id, self.wf.name, sid), 16) % 10_000 / 100
        total = 0.0
        for path in r.split:
            total += path.percent
            if bucket < total:
                return path.name
        return r.split[-1].name

    def _act(self, r: Any, sid: str, t: datetime) -> None:
        c, outcome = self.c, "done"

        def send(channel: str, template: str) -> None:
            self.trace.messages.append(Message(t, channel, template, sid))

        if isinstance(r, m.SendEmailStep):
            if not c.email or c.consent.get("email") is False:
                outcome = "skipped"
            else:
                send("email", r.send_email.template)
        elif isinstance(r, m.SendSmsStep):
            if not c.phone or c.consent.get("sms") is False:
                outcome = "skipped"
            else:
                send("sms", r.send_sms.template)
        elif isinstance(r, m.SendSiteMessageStep):
            send("site", r.send_site_message.template)
        elif isinstance(r, m.NotifyStep):
            send("alert", r.notify.template or r.notify.subject)
        elif isinstance(r, m.AddTagStep):
            for tag in r.add_tag:
                if tag not in c.tags:
                    self._emit(t, "tag.added", {"tag": tag})
                c.tags.add(tag)
        elif isinstance(r, m.RemoveTagStep):
            for tag in r.remove_tag:
                if tag in c.tags:
                    self._emit(t, "tag.removed", {"tag": tag})
                c.tags.discard(tag)
        elif isinstance(r, m.SubscribeStep | m.UnsubscribeStep):
            ref, on = (r.subscribe, True) if isinstance(r, m.SubscribeStep) else (r.unsubscribe, False)
            if ref.list is not None:
                if on != (ref.list in c.lists):
                    self._emit(t, "list.subscribed" if on else "list.unsubscribed", {"list": ref.list})
                (c.lists.add if on else c.lists.discard)(ref.list)
            elif ref.campaign is None:
                raise TypeError("a subscribe/unsubscribe step names a list or a campaign")  # the model ensures it
            elif on:
                c.campaigns[ref.campaign] = ""
                self.trace.started.append(f"start {ref.campaign}")
            else:
                c.campaigns.pop(ref.campaign, None)
                self.trace.started.append(f"stop {ref.campaign}")
        elif isinstance(r, m.RemoveFromCampaignStep):
            c.campaigns.pop(r.remove_from_campaign, None)
            self.trace.started.append(f"stop {r.remove_from_campaign}")
        elif isinstance(r, m.MoveToStageStep):
            s = r.move_to_stage
            self._emit(t, "pipeline.stage_changed", {"pipeline": s.pipeline, "stage": s.stage})
            c.stages[s.pipeline] = s.stage
        elif isinstance(r, m.SetFieldStep):
            for k, v in sorted(r.set_field.items()):
                if c.fields.get(k) != v:
                    self._emit(t, "field.changed", {"field": k, "value": v, "previous": c.fields.get(k)})
                c.fields[k] = v
        elif isinstance(r, m.AdjustScoreStep):
            score = r.adjust_score
            new = c.score + score.add if score.add is not None else float(score.set or 0)
            self._emit(t, "score.changed", {"score": new, "previous": c.score, "delta": new - c.score})
            c.score = new
        elif isinstance(r, m.GenerateCouponStep):
            c.fields[r.generate_coupon.field] = f"{r.generate_coupon.prefix}<code>"
        elif isinstance(r, m.StartWorkflowStep):
            self.trace.started.append(f"start {r.start_workflow.workflow}")
        elif not isinstance(r, m.CallWebhookStep):
            raise TypeError(f"unhandled step {type(r).__name__}")  # every kind of the docs is above
        self._record(t, sid, outcome)


class _GoalJump(Exception):
    def __init__(self, interrupt: _Interrupt) -> None:
        super().__init__(interrupt.goal)
        self.interrupt = interrupt


def interpret(
    wf: m.Workflow, contact: Contact, events: list[Event], *, horizon: timedelta = timedelta(days=60)
) -> Trace:
    """The run of `wf` the first event matching one of its triggers starts for `contact`, observed for `horizon`
    after that event; every event changes the contact as the docs say (tags, lists, fields, score, consent)."""
    return Interpreter(wf, contact, events, horizon).run()
