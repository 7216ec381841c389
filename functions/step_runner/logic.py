"""Performs one state's worth of a workflow for one contact: actions, decisions, goals and event waits."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NoReturn

from functions.step_runner.request import StepRequest
from shared import budgets, clock, webhooks
from shared import constants as C
from shared.enrollment import DUPLICATE, Enroller, stored_trigger
from shared.events import stable_hash
from shared.facts import conditions_window, facts_for
from shared.history import (
    Run,
    cut_at_bound,
    execution_name,
    passive_end,
    passive_metric,
    passive_records,
    stage_entered,
    visit_key,
)
from shared.messaging.caps import FrequencyCap, at_limit, cap_day, counter_write, next_day
from shared.messaging.windows import SendWindow, iso_z
from shared.splits import SplitTests
from shared.store.contacts import ConditionFailed, Contact, ContactStore, contact_pk, epoch
from shared.waits import resume_wait
from shared.workflow.runtime import (
    ANYTIME,
    MESSAGE_KINDS,
    AddTagStep,
    AdjustScoreStep,
    BranchStep,
    CallWebhookStep,
    Evaluation,
    GenerateCouponStep,
    GoalStep,
    IfStep,
    MoveToStageStep,
    NotifyStep,
    RemoveFromCampaignStep,
    RemoveTagStep,
    SendEmailStep,
    SendSiteMessageStep,
    SendSmsStep,
    SetFieldStep,
    SplitStep,
    StartWorkflowStep,
    Step,
    SubscribeStep,
    UnsubscribeStep,
    WaitUntilStep,
    evaluate,
    lookup,
    pick,
)
from shared.workflow.runtime import step as read_step


class LoopLimitReached(Exception):
    """The run jumped more go-tos than settings.max_loops allows; the machine ends it cleanly."""


class InvalidStep(Exception):
    """The step in the payload is not one this runner knows (a machine compiled by a newer version?)."""


class WebhookFailed(Exception):
    """The webhook answered with an error or not at all; the state machine retries."""


class SendDeferred(Exception):
    """A send outside its window or over the frequency cap: the contact is held at the step. The message is the
    UTC time to enter the Task again (ISO 8601, Z), which the machine's Wait reads as its TimestampPath."""

    def __init__(self, until: datetime) -> None:
        super().__init__(iso_z(until))
        self.until = until


@dataclass
class Deps:
    store: ContactStore
    enroller: Enroller
    sfn: Any
    metrics: Any = None  # callable(name, workflow, step, extra_dims) or None
    webhook_policy: webhooks.WebhookPolicy = field(default_factory=webhooks.WebhookPolicy)  # https, public only
    secret_for: Any = None  # callable(name) -> bytes; reads SSM in AWS


@dataclass
class Ctx:
    req: StepRequest
    deps: Deps
    contact: Contact
    loops: int
    now: datetime = field(default_factory=clock.now)
    seq: int = 0
    stage: str = ""  # the last step this invocation reached, when the workflow is a campaign of the contact's
    resumed: str = ""  # the step a held send resumes at: its window opened (the Wait saw to it)

    def commit(self, hist: dict[str, Any], writes: list[dict[str, Any]]) -> bool:
        """Commit the record of a step the contact reaches, with its writes (store.commit_step). In a campaign
        the contact is subscribed to, the step is its new stage: campaign.stage_entered goes out with it."""
        if self.req.workflow in self.contact.campaigns:
            step = hist["step"]
            entered = stage_entered(
                self.deps.store, self.req.contact_id, self.key(step), self.req.workflow, step, self.now
            )
            writes = [*writes, entered]
            self.stage = step
        return self.deps.store.commit_step(self.req.contact_id, hist, writes)

    @property
    def execution_name(self) -> str:
        return execution_name(self.req.execution)

    @property
    def run(self) -> Run:
        r = self.req
        return Run(r.contact_id, r.workflow, r.version, r.execution, r.history_days, r.entered)

    def key(self, step_id: str) -> str:
        """Idempotency key of one visit of one step: stable across Lambda retries and redrives."""
        return visit_key(self.req.execution, self.loops, step_id)

    def history(self, step_id: str, kind: str, outcome: str, why: str = "", **extra: Any) -> dict[str, Any]:
        self.seq += 1
        return self.run.record(self.loops, step_id, kind, outcome, why, self.now, self.seq, **extra)

    def metric(self, name: str, step: str, **dims: str) -> None:
        if self.deps.metrics is not None:
            self.deps.metrics(name, self.req.workflow, step, dims)


def run(req: StepRequest, deps: Deps) -> dict[str, Any]:
    """Entry point of the domain: returns the next `$.run` value {loops, branch}."""
    contact = deps.store.get(req.contact_id)  # raises ContactNotFound, which the machine catches
    # The input carries a reference to the trigger event (executions hold ids only): read it back, one GetItem.
    req = req.model_copy(update={"event": stored_trigger(deps.store, req.contact_id, req.event)})
    ctx = Ctx(req=req, deps=deps, contact=contact, loops=int(req.run.get("loops", 0)))
    if C.RUN_TIMED_OUT in req.run or C.RUN_TIMED_OUT_GOTO in req.run:
        _record_timeouts(ctx)
    if C.RUN_TIMED_OUT_GOTO in req.run:
        ctx.loops += 1  # on_timeout's go-to led straight here: this visit is the jump's, with keys of its own
    if ctx.loops > req.max_loops:
        # A go-to one too many, met at a timeout or after the waits an earlier Task passed it through.
        _end_at_loop_limit(ctx)
    ops = {"actions": _actions, "decide": _decide, "wait": _wait, "goal": _goal}
    result = ops[req.op](ctx)
    if ctx.stage:  # after the commits, and again on a retry that found them done: a SET of the same value
        deps.store.set_campaign_stage(req.contact_id, req.workflow, ctx.stage)
    return result


def parse_step(spec: dict[str, Any] | None) -> Step:
    if spec is None:
        raise InvalidStep("payload has no step")
    body = {k: v for k, v in spec.items() if k != "kind"}
    try:
        return read_step(body)  # its run-time form: validated when the workflow was (synth)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise InvalidStep(f"step {spec.get('id')}: {type(err).__name__}: {err}") from None


def _loop_limit_record(ctx: Ctx, at: datetime) -> dict[str, Any]:
    ctx.seq += 1
    why = f"go-to jumped {ctx.req.max_loops} times (settings.max_loops)"
    # Keyed to the last jump allowed, whichever Task writes it (ahead, then again as the run ends): written once.
    return ctx.run.record(ctx.req.max_loops, "loop-limit", "end", "ended", why, at, ctx.seq)


def _end_at_loop_limit(ctx: Ctx) -> NoReturn:
    """The run jumped one go-to too many: record it (unless a Task wrote it ahead) and end the execution."""
    ctx.deps.store.commit_step(ctx.req.contact_id, _loop_limit_record(ctx, ctx.now), [])
    ctx.metric(C.METRIC_ENDED, "loop-limit", reason="loop_limit")
    raise LoopLimitReached(f"more than {ctx.req.max_loops} go-to jumps")


def _record_ahead(ctx: Ctx, ahead: list[dict[str, Any]], goto: bool) -> int:
    """Record the passive steps this Task leads into (shared/history.py `passive_records`) and count the go-tos
    among them, each where the contact meets it; returns the loop count the run goes on with.

    A jump one too many ends the run where it is met: now (LoopLimitReached) when no wait comes before it; after
    the waits before it otherwise, so a goal met during them is still reached. Then its record is written ahead
    at that time (a goal's jump before it drops it: drop_unreached), and the count returned is over the bound:
    the machine goes through the waits, and the step-runner call after them ends the run (`run`). No state is
    added: only a run that hits the bound pays for the waits and that one Task."""
    reached, loops, over = cut_at_bound(ahead, ctx.loops, ctx.req.max_loops, goto)
    records = passive_records(ctx.run, ctx.loops, reached, ctx.now, ctx.seq + 1)
    ctx.seq += len(reached)
    for rec in records:
        if ctx.commit(rec, []):
            name, dims = passive_metric(rec)
            ctx.metric(name, rec["step"], **dims)
    if not over:
        return loops
    at = passive_end(reached, ctx.now)
    if at <= ctx.now:
        _end_at_loop_limit(ctx)
    ctx.deps.store.commit_step(ctx.req.contact_id, _loop_limit_record(ctx, at), [])
    return ctx.req.max_loops + 1


def _record_timeouts(ctx: Ctx) -> None:
    store = ctx.deps.store
    for w in store.query_prefix(contact_pk(ctx.req.contact_id), f"WAIT#{ctx.execution_name}#", live_only=False):
        hist = ctx.history(w["step"], "wait_until", "timed out", f"no {w.get('event') or 'condition'} in time")
        # Keyed to the visit of the wait (its own loop count), apart from that visit's "waiting" record.
        hist[C.SK] = f"HIST#{ctx.execution_name}#{int(w.get('loops', 0)):04d}#{w['step']}#timed-out"
        if store.commit_step(ctx.req.contact_id, hist, [store.delete(w[C.PK], w[C.SK])]):
            ctx.metric(C.METRIC_WAIT_TIMED_OUT, w["step"])


# ---- actions -------------------------------------------------------------------------------------


def _hold_key(ctx: Ctx) -> str:
    return f"HOLD#{ctx.execution_name}"


def _actions(ctx: Ctx) -> dict[str, Any]:
    resume_at = ctx.req.run.get("resume_at") or ""
    if "deferred" in ctx.req.run:
        # Back from a held send: the steps of this Task before it are committed; go on from the held one.
        hold = ctx.deps.store.get_item(contact_pk(ctx.req.contact_id), _hold_key(ctx))
        if hold is not None and int(hold.get("loops", -1)) == ctx.loops:
            resume_at = ctx.resumed = str(hold["step"])
    specs = ctx.req.steps or []
    ids = [s.get("id") for s in specs]
    skipping = bool(resume_at) and resume_at in ids
    for spec in specs:
        if skipping and spec.get("id") != resume_at:
            continue
        skipping = False
        step = parse_step(spec)
        if step.kind == "end":
            hist = ctx.history(step.id or "end", "end", "ended", step.root.end.reason)  # type: ignore[union-attr]
            if ctx.commit(hist, []):
                ctx.metric(C.METRIC_ENDED, step.id or "end", reason="end_step")
            continue
        _perform(ctx, step)
    loops = _record_ahead(ctx, ctx.req.ahead if isinstance(ctx.req.ahead, list) else [], bool(ctx.req.goto))
    return {"loops": loops, "branch": ""}


def _event(ctx: Ctx, etype: str, data: dict[str, Any], step_id: str) -> dict[str, Any]:
    """An outbox item: a contact event caused by this step (other workflows' triggers and goals read it)."""
    return ctx.deps.store.outbox(ctx.req.contact_id, ctx.key(step_id), etype, data, ctx.now)


def _message(ctx: Ctx, step_id: str, channel: str, **body: Any) -> dict[str, Any]:
    mid = stable_hash(ctx.key(step_id), channel)
    return ctx.deps.store.put(
        {
            C.PK: contact_pk(ctx.req.contact_id),
            C.SK: f"MSG#{mid}",
            "message_id": mid,
            "channel": channel,
            "workflow": ctx.req.workflow,
            "step": step_id,
            "execution": ctx.execution_name,  # its events count for this run's entry in `stats` (run_index.py)
            "status": "queued",
            "at": ctx.now.isoformat(),
            "entered": ctx.run.order_stamp(),
            C.TTL_ATTRIBUTE: epoch(ctx.now + timedelta(days=ctx.req.history_days)),
            # What the template may read of the triggering event (the abandoned cart's items and URL): the sender
            # renders at send time from the message alone, without the execution's input.
            "event": ctx.req.event.get("data") or {},
            **body,
        }
    )


def _defer(ctx: Ctx, step: Step, until: datetime, why: str) -> None:
    """Hold the contact at `step` until `until`: a history record saying why, and the hold (which step, which
    visit) the Task entered again reads; then SendDeferred, before anything of the step is committed."""
    sid, store = step.id or "?", ctx.deps.store
    stamp = iso_z(until)
    hist = ctx.history(sid, step.kind, "held", f"{why}; held until {stamp}", until=stamp)
    hist[C.SK] = f"{hist[C.SK]}#held-{stamp}"  # one record per hold of this visit, repeated by no retry
    hold = {
        C.PK: contact_pk(ctx.req.contact_id),
        C.SK: _hold_key(ctx),
        "step": sid,
        "loops": ctx.loops,
        "until": stamp,
        C.TTL_ATTRIBUTE: epoch(until + timedelta(days=2)),
    }
    store.commit_step(ctx.req.contact_id, hist, [store.put(hold)])
    raise SendDeferred(until)


@dataclass
class _Capped:
    channel: str
    day: str
    limit: int
    cap: FrequencyCap
    window: SendWindow | None


def _send_rules(ctx: Ctx, step: Step, channel: str, writes: list[dict[str, Any]]) -> _Capped | None:
    """Apply the send window (hold the contact when outside it) and count the send against the frequency cap
    (a write in the step's transaction). Returns what the cap needs to tell a full day from another failure."""
    r = step.root
    send = r.send_email if isinstance(r, SendEmailStep) else r.send_sms  # type: ignore[union-attr]
    sending = ctx.req.sending
    window: SendWindow | None
    if send.send_window == ANYTIME:
        window = None
    elif isinstance(send.send_window, SendWindow):
        window = send.send_window
    else:
        window = SendWindow.model_validate(sending["send_window"]) if sending.get("send_window") else None
    tz = ctx.contact.timezone
    if window is not None and ctx.resumed != step.id:
        opens = window.next_open(ctx.now, tz)
        if opens is not None:
            _defer(ctx, step, opens, f"outside the send window {window.describe()}")
    if send.transactional or not sending.get("frequency_cap"):
        return None
    cap = FrequencyCap.model_validate(sending["frequency_cap"])
    limit = cap.limit(channel)
    if limit is None:
        return None
    day = cap_day(ctx.now, tz, cap)
    writes.append(counter_write(ctx.deps.store, contact_pk(ctx.contact.id), channel, day, limit, ctx.now))
    return _Capped(channel, day, limit, cap, window)


def _message_budget(ctx: Ctx, writes: list[dict[str, Any]]) -> int | None:
    """Count the send against the deployment's message budget per contact per day (a write in the step's own
    transaction, transactional sends included: a runaway loop is a loop). Returns the limit, or None."""
    plan = ctx.deps.enroller.plans.get(ctx.req.workflow)
    limit = plan.budgets.get("messages_per_contact_per_day") if plan else None
    if not limit:
        return None
    writes.append(budgets.message_counter(ctx.deps.store, ctx.contact.id, ctx.now, int(limit)))
    return int(limit)


def _budget_reached(ctx: Ctx, step: Step, limit: int) -> None:
    """The contact has had the day's budget of messages: this one is not sent, the workflow is paused (with the
    team alerted), and the step's record says why. The run goes on without the message."""
    sid = step.id or "?"
    day = ctx.now.date().isoformat()
    reason = f"runaway budget: {limit} messages to one contact on {day} (UTC) reached"
    plan = ctx.deps.enroller.plans[ctx.req.workflow]
    alert = list(plan.budgets.get("alert") or [])
    budgets.trip(
        ctx.deps.store,
        ctx.req.workflow,
        reason,
        ctx.now,
        contact_id=ctx.contact.id,
        alert=alert,
        history_days=ctx.req.history_days,
    )
    hist = ctx.history(sid, step.kind, "skipped", f"{reason}; not sent, workflow {ctx.req.workflow} paused")
    if ctx.commit(hist, []):
        ctx.metric(C.METRIC_STEP_COMPLETED, sid)


def _perform(ctx: Ctx, step: Step) -> None:
    """One action: its side effects and its history record in one transaction, so a retry does nothing twice."""
    store, c, r, sid = ctx.deps.store, ctx.contact, step.root, step.id or "?"
    writes: list[dict[str, Any]] = []
    outcome, why = "done", ""
    # Side effects outside DynamoDB (starting or stopping a run). They run after the commit, and again on a retry
    # that finds the step committed: the Lambda may have died between the two, and both are idempotent (a start
    # is keyed to this visit of this step, a stop of a run already stopped does nothing).
    after: list[Any] = []

    def profile(expr: str, names: dict[str, str], values: dict[str, Any]) -> None:
        writes.append(store.profile_update(c.id, expr, names, values))

    capped: _Capped | None = None
    budget: int | None = None  # the message budget's limit, when this send counts against one
    coupon_field = ctx.req.sending.get("coupons", {}).get(sid)
    coupon = {"coupon": c.fields.get(coupon_field)} if coupon_field and c.fields.get(coupon_field) else {}
    if isinstance(r, SendEmailStep):
        if not c.email:
            outcome, why = "skipped", "contact has no email address"
        elif c.consent.get("email") is False:
            outcome, why = "skipped", "contact withdrew email consent"
        else:
            capped = _send_rules(ctx, step, "email", writes)
            budget = _message_budget(ctx, writes)
            writes.append(
                _message(
                    ctx,
                    sid,
                    "email",
                    template=r.send_email.template,
                    subject=r.send_email.subject,
                    campaign=r.send_email.campaign,
                    to=c.email,
                    transactional=r.send_email.transactional or None,
                    **coupon,
                )
            )
            why = f"email {r.send_email.template!r} queued"
    elif isinstance(r, SendSmsStep):
        if not c.phone:
            outcome, why = "skipped", "contact has no phone number"
        elif c.consent.get("sms") is False:
            outcome, why = "skipped", "contact withdrew SMS consent"
        else:
            capped = _send_rules(ctx, step, "sms", writes)
            budget = _message_budget(ctx, writes)
            writes.append(
                _message(
                    ctx,
                    sid,
                    "sms",
                    template=r.send_sms.template,
                    campaign=r.send_sms.campaign,
                    to=c.phone,
                    transactional=r.send_sms.transactional or None,
                    **coupon,
                )
            )
            why = f"SMS {r.send_sms.template!r} queued"
    elif isinstance(r, SendSiteMessageStep):
        writes.append(_message(ctx, sid, "site", template=r.send_site_message.template))
        why = f"site message {r.send_site_message.template!r} queued"
    elif isinstance(r, NotifyStep):
        writes.append(
            _message(
                ctx, sid, "alert", to=r.notify.to, subject=r.notify.subject, template=r.notify.template, about=c.id
            )
        )
        why = f"alert to {len(r.notify.to)} team address(es)"
    elif isinstance(r, AddTagStep):
        new = [t for t in r.add_tag if t not in c.tags]
        profile("ADD tags :t", {}, {":t": set(r.add_tag)})
        writes.extend(_event(ctx, "tag.added", {"tag": t}, sid) for t in new)
        c.tags |= set(r.add_tag)
        why = f"tags added: {', '.join(r.add_tag)}" + ("" if new else " (already present)")
    elif isinstance(r, RemoveTagStep):
        gone = [t for t in r.remove_tag if t in c.tags]
        profile("DELETE tags :t", {}, {":t": set(r.remove_tag)})
        writes.extend(_event(ctx, "tag.removed", {"tag": t}, sid) for t in gone)
        c.tags -= set(r.remove_tag)
        why = f"tags removed: {', '.join(r.remove_tag)}"
    elif isinstance(r, SubscribeStep | UnsubscribeStep | RemoveFromCampaignStep):
        _membership(ctx, r, sid, writes, after, profile)
        why = "membership changed"
    elif isinstance(r, MoveToStageStep):
        m = r.move_to_stage
        profile("SET stages.#p = :s", {"#p": m.pipeline}, {":s": m.stage})
        writes.append(
            _event(
                ctx,
                "pipeline.stage_changed",
                {"pipeline": m.pipeline, "stage": m.stage, "previous": c.stages.get(m.pipeline)},
                sid,
            )
        )
        c.stages[m.pipeline] = m.stage
        why = f"pipeline {m.pipeline}: stage {m.stage}"
    elif isinstance(r, SetFieldStep):
        names, values, sets = {}, {}, []
        for i, (k, v) in enumerate(sorted(r.set_field.items())):
            names[f"#f{i}"] = k
            values[f":v{i}"] = v
            sets.append(f"#fd.#f{i} = :v{i}")
            if c.fields.get(k) != v:
                writes.append(_event(ctx, "field.changed", {"field": k, "value": v, "previous": c.fields.get(k)}, sid))
        profile("SET " + ", ".join(sets), {"#fd": "fields", **names}, values)
        c.fields.update(r.set_field)
        why = "fields set: " + ", ".join(sorted(r.set_field))
    elif isinstance(r, AdjustScoreStep):
        s = r.adjust_score
        new_score = c.score + s.add if s.add is not None else float(s.set or 0)
        if s.add is not None:
            profile("ADD score :n", {}, {":n": s.add})
        else:
            profile("SET score = :n", {}, {":n": s.set})
        writes.append(
            _event(ctx, "score.changed", {"score": new_score, "previous": c.score, "delta": new_score - c.score}, sid)
        )
        why = f"score {c.score:g} -> {new_score:g}"
        c.score = new_score
    elif isinstance(r, GenerateCouponStep):
        g = r.generate_coupon
        code = g.prefix + stable_hash(ctx.key(sid), "coupon", length=8).upper()
        profile("SET #fd.#f = :c", {"#fd": "fields", "#f": g.field}, {":c": code})
        writes.append(
            store.put(
                {
                    C.PK: f"COUPON#{code}",
                    C.SK: "COUPON",
                    "code": code,
                    "contact_id": c.id,
                    "percent_off": g.percent_off,
                    "amount_off": g.amount_off,
                    "valid_until": (ctx.now + timedelta(seconds=g.valid_for)).isoformat(),
                    C.TTL_ATTRIBUTE: epoch(ctx.now + timedelta(seconds=g.valid_for, days=30)),
                }
            )
        )
        c.fields[g.field] = code
        why = f"coupon generated into field {g.field}"
    elif isinstance(r, StartWorkflowStep):
        sw = r.start_workflow
        after.append(lambda: _start_workflow(ctx, sid, sw))
        why = f"start workflow {sw.workflow}" + (f" at {sw.at}" if sw.at else "")
    elif isinstance(r, CallWebhookStep):
        _call_webhook(ctx, r, sid)  # before the commit: a failure raises and the machine retries
        why = f"webhook {r.call_webhook.method} answered"
    else:
        raise InvalidStep(f"step {sid}: unknown action kind {step.kind}")

    hist = ctx.history(sid, step.kind, outcome, why)
    try:
        committed = ctx.commit(hist, writes)
    except ConditionFailed:
        if budget is not None and budgets.message_budget_reached(store, c.id, ctx.now, budget):
            ctx.seq -= 1  # the record above was not written
            _budget_reached(ctx, step, budget)
            return
        # Only the counter's condition can fail here, unless the contact went away: read it to tell which.
        if capped is None or not at_limit(store, contact_pk(c.id), capped.channel, capped.day, capped.limit):
            raise
        until = next_day(ctx.now, c.timezone, capped.cap)
        if capped.window is not None:
            until = capped.window.next_open(until, c.timezone) or until
        ctx.seq -= 1  # the record above was not written
        _defer(ctx, step, until, f"frequency cap: {capped.limit} {capped.channel} per day reached on {capped.day}")
    if committed:
        ctx.metric(C.METRIC_STEP_COMPLETED, sid)
        if outcome == "done" and step.kind in MESSAGE_KINDS:
            ctx.metric(C.METRIC_MESSAGE_SENT, sid)
    # else: committed on an earlier attempt; none of `writes` is applied twice
    for fn in after:
        fn()


def _start_workflow(ctx: Ctx, sid: str, sw: Any) -> None:
    """start_workflow's enrolment, after the step's commit: a retry makes the same execution name, so never a second
    run. A start the other workflow's policy refuses (the contact is inside it, it is paused, its entry budget) is
    recorded under the step as "not started" with the reason, so history never shows a run that did not start."""
    got = ctx.deps.enroller.enrol(ctx.contact.id, sw.workflow, ctx.req.event, key=ctx.key(sid), resume_at=sw.at or "")
    if got.started or got.reason == DUPLICATE:
        return  # started now, or by an earlier attempt of this Task
    hist = ctx.history(sid, "start_workflow", "not started", f"{sw.workflow} not started: {got.reason}")
    hist[C.SK] += "#not-started"
    ctx.deps.store.commit_step(ctx.req.contact_id, hist, [])  # a retry finds it written: one record


def _membership(ctx: Ctx, r: Any, sid: str, writes: list[Any], after: list[Any], profile: Any) -> None:
    store, c = ctx.deps.store, ctx.contact
    ref_list: str | None
    ref_campaign: str | None
    if isinstance(r, RemoveFromCampaignStep):
        ref_list, ref_campaign, subscribe = None, r.remove_from_campaign, False
    else:
        ref = r.subscribe if isinstance(r, SubscribeStep) else r.unsubscribe
        ref_list, ref_campaign, subscribe = ref.list, ref.campaign, isinstance(r, SubscribeStep)
    if ref_list is not None:
        key = (contact_pk(c.id), f"LIST#{ref_list}")
        if subscribe:
            profile("ADD lists :l", {}, {":l": {ref_list}})
            writes.append(
                store.put(
                    {
                        C.PK: key[0],
                        C.SK: key[1],
                        C.GSI1_PK: f"LIST#{ref_list}",
                        C.GSI1_SK: f"CONTACT#{c.id}",
                        "at": ctx.now.isoformat(),
                    }
                )
            )
            if ref_list not in c.lists:
                writes.append(_event(ctx, "list.subscribed", {"list": ref_list, "source": ctx.req.workflow}, sid))
            c.lists.add(ref_list)
        else:
            profile("DELETE lists :l", {}, {":l": {ref_list}})
            writes.append(store.delete(*key))
            if ref_list in c.lists:
                writes.append(_event(ctx, "list.unsubscribed", {"list": ref_list}, sid))
            c.lists.discard(ref_list)
        return
    assert ref_campaign is not None
    if subscribe:
        profile("SET campaigns.#c = :s", {"#c": ref_campaign}, {":s": ""})
        c.campaigns[ref_campaign] = ""
        after.append(lambda: ctx.deps.enroller.enrol(c.id, ref_campaign, ctx.req.event, key=ctx.key(sid)))
    else:
        profile("REMOVE campaigns.#c", {"#c": ref_campaign}, {})
        c.campaigns.pop(ref_campaign, None)
        after.append(lambda: ctx.deps.enroller.stop(c.id, ref_campaign, f"unsubscribed by {ctx.req.workflow}/{sid}"))


def _call_webhook(ctx: Ctx, r: CallWebhookStep, sid: str) -> None:
    w = r.call_webhook
    # A retried Task (a later step of it failed) finds this step committed: the receiver already has it.
    if ctx.deps.store.get_item(contact_pk(ctx.req.contact_id), f"HIST#{ctx.key(sid)}") is not None:
        return
    body = json.dumps(
        {
            "workflow": ctx.req.workflow,
            "step": sid,
            "contact_id": ctx.contact.id,
            "event": ctx.req.event,
            "data": w.body or {},
        },
        default=str,
    ).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": stable_hash(ctx.key(sid), "webhook", length=32)}
    if w.secret:
        if ctx.deps.secret_for is None:
            raise WebhookFailed(f"step {sid}: secret {w.secret!r} given but no secret store configured")
        sig = hmac.new(ctx.deps.secret_for(w.secret), body, hashlib.sha256).hexdigest()
        headers["X-Stepwise-Signature"] = f"sha256={sig}"
    try:
        status = webhooks.send(ctx.deps.webhook_policy, w.url, w.method, body, headers, w.timeout)
    except webhooks.WebhookRefused as err:
        # The same answer on every try: the run fails at once, naming why (never retried).
        raise InvalidStep(f"step {sid}: webhook refused: {err}") from None
    except webhooks.WebhookUnreachable as err:
        raise WebhookFailed(f"step {sid}: webhook unreachable: {err}") from None
    if status >= 300:
        raise WebhookFailed(f"step {sid}: webhook answered HTTP {status}")


# ---- decisions -----------------------------------------------------------------------------------


def _decide(ctx: Ctx) -> dict[str, Any]:
    step = parse_step(ctx.req.step)
    r, sid = step.root, step.id or "?"
    trail: list[Evaluation] = []
    needs_facts = not isinstance(r, SplitStep)
    read = [r.if_] if isinstance(r, IfStep) else [c.when for c in r.branch] if isinstance(r, BranchStep) else []
    window = conditions_window(read)  # activity as far back as the decision's conditions look, no further
    facts = facts_for(ctx.deps.store, ctx.contact, ctx.req.event, ctx.now, window=window) if needs_facts else None
    if isinstance(r, IfStep):
        assert facts is not None
        held = evaluate(r.if_, facts, trail)
        branch = "then" if held else "else"
        why = f"{r.if_.describe()} is {'true' if held else 'false'}"
    elif isinstance(r, BranchStep):
        assert facts is not None
        branch, why = "otherwise", "no case matched"
        for case in r.branch:
            if evaluate(case.when, facts, trail):
                branch, why = case.name, f"case {case.name}: {case.when.describe()}"
                break
    elif isinstance(r, SplitStep):
        tests = SplitTests(ctx.deps.store)
        verdict = tests.verdict(ctx.req.workflow, sid, r, ctx.now)
        if verdict is not None:
            branch, why = verdict.path, verdict.why
        else:
            bucket = int(stable_hash(ctx.req.contact_id, ctx.req.workflow, sid), 16) % 10_000 / 100
            total, branch = 0.0, r.split[-1].name
            for path in r.split:
                total += path.percent
                if bucket < total:
                    branch = path.name
                    break
            why = f"contact's bucket {bucket:.2f} of 100 falls in path {branch}"
        writes = tests.assignment_writes(
            ctx.req.contact_id, ctx.req.workflow, sid, r, branch, ctx.req.path_steps.get(branch, []), ctx.now
        )
    else:
        raise InvalidStep(f"step {sid}: {step.kind} is not a decision")
    conditions = [{"condition": e.condition, "value": _jsonable(e.value), "result": e.result} for e in trail]
    hist = ctx.history(sid, step.kind, f"branch {branch}", why, branch=branch, conditions=conditions)
    if ctx.commit(hist, writes if isinstance(r, SplitStep) else []):
        ctx.metric(C.METRIC_BRANCH_TAKEN, sid, branch=branch)
    else:
        # A retry: the facts (or a split's winner) may have changed since, but the branch recorded is the one taken.
        first = ctx.deps.store.get_item(contact_pk(ctx.req.contact_id), hist[C.SK])
        branch = first["branch"] if first else branch
    ahead = ctx.req.ahead if isinstance(ctx.req.ahead, dict) else {}
    goto = ctx.req.goto.get(branch, False) if isinstance(ctx.req.goto, dict) else bool(ctx.req.goto)
    return {"loops": _record_ahead(ctx, ahead.get(branch, []), goto), "branch": branch}


def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v, default=str))


# ---- waits and goals -----------------------------------------------------------------------------


def _wait(ctx: Ctx) -> dict[str, Any]:
    step = parse_step(ctx.req.step)
    r = step.root
    if not isinstance(r, WaitUntilStep) or ctx.req.task_token is None:
        raise InvalidStep(f"step {step.id}: a wait needs wait_until and a task token")
    wu, sid, store = r.wait_until, step.id or "?", ctx.deps.store
    trigger_data = ctx.req.event.get("data", {})
    timeout = wu.timeout or 0
    record: dict[str, Any] = {
        C.PK: contact_pk(ctx.req.contact_id),
        C.SK: f"WAIT#{ctx.execution_name}#{sid}",
        "step": sid,
        "workflow": ctx.req.workflow,
        "execution": ctx.req.execution,
        "token": ctx.req.task_token,
        "event": wu.event,
        "where": wu.where.root if wu.where else None,
        "same": {k: lookup(trigger_data, k) for k in wu.same},
        "condition": wu.condition.model_dump(mode="json", by_alias=True, exclude_none=True) if wu.condition else None,
        # What the condition reads of the triggering event, for the router to evaluate it when data changes.
        "trigger": pick(trigger_data, wu.condition.event_fields()) if wu.condition else {},
        "loops": ctx.loops,
        "goto": bool(ctx.req.goto),
        # What the contact meets after the resume, up to the next step-runner call (Compiler.ahead): the router
        # records those passive steps and counts the go-tos among them as it resumes (shared/waits.py).
        "ahead": ctx.req.ahead if isinstance(ctx.req.ahead, list) else None,
        "max_loops": ctx.req.max_loops,
        "version": ctx.run.version,
        "since": ctx.now.isoformat(),
        "history_days": ctx.req.history_days,
        C.TTL_ATTRIBUTE: epoch(ctx.now + timedelta(seconds=timeout, days=1)),
    }
    what = (
        f"event {wu.event}" + (f" where {wu.where.root}" if wu.where else "")
        if wu.event
        else (f"condition {wu.condition.describe()}" if wu.condition else "")
    )
    hist = ctx.history(sid, "wait_until", "waiting", f"for {what}, at most {timeout}s")
    if ctx.commit(hist, [store.put(record)]):
        ctx.metric(C.METRIC_WAIT_STARTED, sid)
    else:
        # A retried attempt of this Task has a task token of its own: the wait item must hold the live one,
        # or the awaited event would complete a token nobody waits on. (A wait already resumed has no item.)
        store.transact(
            [store.update_if(record[C.PK], record[C.SK], {"token": ctx.req.task_token}, "attribute_exists(#pk)")]
        )
    if wu.condition is not None:
        facts = facts_for(store, ctx.contact, ctx.req.event, ctx.now, window=conditions_window([wu.condition]))
        trail: list[Evaluation] = []
        if evaluate(wu.condition, facts, trail):
            resume_wait(store, ctx.deps.sfn, record, "condition already held", ctx.now, ctx.deps.metrics)
    return {"loops": ctx.loops, "branch": "waiting"}


def _mark_goal_reached(ctx: Ctx, sid: str) -> None:
    """Note the goal on the run's enrolment, so the router never jumps this run to it again (which would repeat
    the steps after it). Only on this run's own record: an enrolment since replaced is left alone."""
    store, pk = ctx.deps.store, contact_pk(ctx.req.contact_id)
    record = store.get_item(pk, f"ENROLL#{ctx.req.workflow}")
    if record is None or sid in record.get("goals", []):
        return
    goals = sorted({*record.get("goals", []), sid})
    cond = {":e": ctx.req.execution}
    store.transact([store.update_if(pk, f"ENROLL#{ctx.req.workflow}", {"goals": goals}, "execution_arn = :e", cond)])


def _goal(ctx: Ctx) -> dict[str, Any]:
    step = parse_step(ctx.req.step)
    r = step.root
    if not isinstance(r, GoalStep):
        raise InvalidStep(f"step {step.id}: not a goal")
    sid, g = step.id or "?", r.goal
    if ctx.req.run.get("resume_at") == sid:
        met, why = True, "jumped here when the goal was met"
    elif g.condition is not None:
        trail: list[Evaluation] = []
        facts = facts_for(ctx.deps.store, ctx.contact, ctx.req.event, ctx.now, window=conditions_window([g.condition]))
        met = evaluate(g.condition, facts, trail)
        why = f"{g.condition.describe()} is {'true' if met else 'false'}"
    else:
        spec = g.event_spec()
        assert spec is not None
        seen = [
            a
            for a in ctx.deps.store.activity(ctx.contact.id)
            if a["type"] == spec.event and (spec.where is None or spec.where.matches(a.get("data", {})))
        ]
        met, why = bool(seen), f"event {g.event} {'seen' if seen else 'not seen'}"
    hist = ctx.history(sid, "goal", "reached" if met else "not reached", why)
    if ctx.commit(hist, []) and met:
        ctx.metric(C.METRIC_GOAL_REACHED, sid)
    if met:  # counted once per contact and split test however often this runs
        SplitTests(ctx.deps.store).convert(ctx.req.contact_id, "goal", ctx.now, workflow=ctx.req.workflow, goal=sid)
        _mark_goal_reached(ctx, sid)
    loops = ctx.loops
    if met or g.otherwise == "continue":
        loops = _record_ahead(ctx, ctx.req.ahead if isinstance(ctx.req.ahead, list) else [], bool(ctx.req.goto))
    return {"loops": loops, "branch": "met" if met else "not_met"}
