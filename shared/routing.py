"""Routes one normalised contact event: resumes waits, jumps to goals, enrols contacts whose triggers match."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from shared import clock
from shared import constants as C
from shared.enrollment import Claim, Enroller, Enrolment, confirmed, stored_key, stored_trigger
from shared.events import ContactEvent, ContactRef
from shared.facts import facts_from
from shared.intake.form_types import apply as apply_form_types
from shared.intake.form_types import deployment_forms
from shared.runtime.abandonment import observe as observe_checkout
from shared.runtime.index import RoutingIndex
from shared.splits import SplitTests
from shared.store.contacts import ContactStore, IdentityRace, Snapshot, UnknownContact, activity_item, contact_pk
from shared.store.run_index import message_event_keys
from shared.waits import ResumeDeferred, resume_wait
from shared.workflow.runtime import (
    Condition,
    Evaluation,
    Facts,
    ScheduleTrigger,
    Where,
    Workflow,
    as_runtime,
    evaluate,
    lookup,
)
from shared.workflow.runtime import workflows as runtime_workflows

if TYPE_CHECKING:  # the authoring models are converted on the way in; never imported at run time
    from shared.workflow import model as authoring

__all__ = ["ResumeDeferred", "Routed", "Router", "UnknownContact", "outbox_to_event"]


@dataclass
class Routed:
    """One thing routing did for an event, for the timeline and the logs."""

    contact: str
    workflow: str
    action: str  # entered, not entered, resumed, goal
    why: str


class Router:
    """Routes events for one deployment's workflows. Per event: one read of the contact's partition (profile,
    waits, enrolments, recent activity, the message a status event names), one transaction for what the event
    writes (profile, identities, activity, the claims of the enrolments it makes), then the Step Functions calls.
    Only workflows the index says listen to the event's type are looked at."""

    def __init__(
        self,
        workflows: list[Workflow] | list[authoring.Workflow],
        store: ContactStore,
        enroller: Enroller,
        sfn: Any,
        *,
        index: RoutingIndex | None = None,
        activated_at: datetime | None = None,
    ) -> None:
        workflows = runtime_workflows(workflows)  # the run-time forms (authoring models converted)
        self.workflows = workflows
        self.store = store
        self.enroller = enroller
        self.sfn = sfn
        self.index = index or RoutingIndex.build(workflows)
        # stepwise.yaml's settings.forms: which form is which (a provider says only "typeform"), applied first.
        self.forms = deployment_forms(w.settings.forms for w in workflows)
        if activated_at is not None:
            enroller.activated_at = activated_at

    def handle(self, event: ContactEvent, *, internal: bool = False, archive_key: str = "") -> list[Routed]:
        """Route one event. `internal` events come from the step runner's outbox: already applied. Raises
        UnknownContact for a contact_id no contact has, ResumeDeferred when Step Functions throttled a resume
        (retry the event: what was done is not done twice)."""
        event = apply_form_types(event, self.forms)
        for attempt in range(3):
            try:
                # After a race, the identities are looked up rather than assumed from the contact's own partition.
                return self._handle(event, internal, None, look_up=attempt > 0, archive_key=archive_key)
            except IdentityRace:
                if attempt == 2:
                    raise
            except UnknownContact:
                # An outbox item, feedback or a late step naming a contact `stepwise erase` erased: dropped, so
                # nothing about it is retried, dead-lettered or written again.
                cid = event.contact.contact_id
                if cid and self.store.erased(cid):
                    return [Routed(cid, "", "dropped", "contact erased")]
                raise
        return []

    def _handle(
        self,
        event: ContactEvent,
        internal: bool,
        snap: Snapshot | None,
        *,
        look_up: bool = False,
        archive_key: str = "",
    ) -> list[Routed]:
        now = clock.now()
        at = event.occurred_at or now
        message_id = event.data.get("message_id") if event.type.split(".")[0] in MESSAGE_CHANNELS else None
        if snap is None:
            window = self.index.activity_window
            snap = self.store.load(
                event.contact,
                activity_since=now - window if window is not None else None,
                message_id=str(message_id) if message_id else None,
                look_up=look_up,
            )
        contact_id = snap.contact_id
        message = snap.message if message_id and snap.message else None
        if message is not None:
            event = _with_message(event, message)
        update = self.store.contact_update(
            snap,
            event.contact,
            event_id=event.digest(),
            at=at,
            etype="" if internal else event.type,
            data=event.data,
        )
        activity = activity_item(contact_id, event.digest(), event.type, event.data, at, archive_key)
        if message is not None and message.get("execution"):  # the funnel counts it for the entry that sent it
            execution = str(message["execution"])
            activity.update(
                message_event_keys(event.type, event.data, at.isoformat(), execution, contact_id=contact_id)
            )
        snap.activity.append(activity)
        entries = self._triggers(snap, event, now)
        claims = [e for e in entries if isinstance(e, _Pending)]
        more = [self.store.put(activity)]
        spans: list[tuple[_Pending, int]] = []
        for c in claims:
            spans.append((c, len(more)))
            more += c.claim.writes
        failed = self.store.apply(snap, update, more)
        if failed:
            # Claims whose condition failed (a race, a workflow not yet activated here): the rest is written
            # without them, and each is decided again on its own.
            for c, first in spans:
                local = [i - first for i in failed if first <= i < first + len(c.claim.writes)]
                if local:
                    c.failed = local
            keep = [self.store.put(activity)] + [w for c, _ in spans if not c.failed for w in c.claim.writes]
            if self.store.apply(snap, update, keep):
                raise IdentityRace(f"contact {contact_id}: an enrolment changed while the event was written")
        observe_checkout(self, contact_id, event, at)  # checkout updates and orders: pending abandonments
        out: list[Routed] = []
        if message is not None:
            self._message_engagement(contact_id, event, message, at)
        out += self._split_conversions(contact_id, event, now, message)
        out += self._resume_waits(snap, event, now)
        out += self._goals(snap, event, now)
        out += [self._launch(contact_id, e, event) if isinstance(e, _Pending) else e for e in entries]
        # Contact data the event brought (a form's first name...) is a change like a set_field step's: routed as
        # field.changed after the event itself, keyed to it, so "first name takes the value Mario" triggers.
        for name, (value, previous) in update.changes.items():
            changed = ContactEvent(
                id=f"{event.id}:field:{name}",
                type="field.changed",
                contact=ContactRef(contact_id=contact_id),
                data={"field": name, "value": value, "previous": previous},
                occurred_at=at,
            )
            out += self._handle(changed, True, snap)
        return out

    def _facts(self, snap: Snapshot, now: datetime, trigger: dict[str, Any] | None = None) -> Facts:
        return facts_from(snap.contact(), snap.activity, trigger or {}, now)

    def _message_engagement(self, contact_id: str, event: ContactEvent, message: dict[str, Any], at: datetime) -> None:
        """The first open or click of a message Stepwise sent: noted on the message, counted for its step."""
        found = {
            "email.opened": ("opened_at", C.METRIC_MESSAGE_OPENED),
            "email.clicked": ("clicked_at", C.METRIC_MESSAGE_CLICKED),
        }
        if event.type not in found or not message.get("workflow") or message.get(found[event.type][0]):
            return
        attribute, metric = found[event.type]
        if self.store.mark_message(contact_id, message["message_id"], attribute, at) and self.enroller.metrics:
            self.enroller.metrics(metric, message["workflow"], message.get("step", ""), {})

    def _split_conversions(
        self, contact_id: str, event: ContactEvent, now: datetime, message: dict[str, Any] | None
    ) -> list[Routed]:
        """An open or click of a message sent from a split path counts for that path's winner."""
        by = {"email.opened": "email_opened", "email.clicked": "email_clicked"}.get(event.type)
        if by is None or message is None:
            return []
        counted = SplitTests(self.store).convert(contact_id, by, now, message=message)
        return [Routed(contact_id, c.split("/")[0], "converted", f"split {c}: {event.type}") for c in counted]

    def _resume_waits(self, snap: Snapshot, event: ContactEvent, now: datetime) -> list[Routed]:
        out = []
        contact_facts: Facts | None = None
        for w in list(snap.waits):
            if w.get("event"):
                if w["event"] != event.type:
                    continue
                if w.get("where") and not Where(w["where"]).matches(event.data):
                    continue
                if any(lookup(event.data, k) != v for k, v in (w.get("same") or {}).items()):
                    continue
                why = f"event {event.type} arrived"
            elif w.get("condition"):
                contact_facts = contact_facts or self._facts(snap, now)
                cond = Condition.model_validate(w["condition"])
                # The event that started the run, as far as the condition reads it (`event_field`).
                facts = replace(contact_facts, trigger=w.get("trigger") or {})
                if not evaluate(cond, facts, []):
                    continue
                why = f"condition {cond.describe()} now holds"
            else:
                continue
            snap.waits.remove(w)  # resumed or stale: a field change routed next must not find it
            if resume_wait(self.store, self.sfn, w, why, now, self.enroller.metrics):
                out.append(Routed(snap.contact_id, w["workflow"], "resumed", f"{w['step']}: {why}"))
        return out

    def _goals(self, snap: Snapshot, event: ContactEvent, now: datetime) -> list[Routed]:
        """Goals of the workflows the contact is running that can be met by this event: an event goal on its
        type, or a goal on a condition. Nothing else is looked at, however many workflows have goals."""
        out = []
        contact_id = snap.contact_id
        listening = self.index.event_goals.get(event.type, set()) | self.index.condition_goals
        contact_facts: Facts | None = None
        for name in sorted(listening & set(snap.enrolments), key=self._order):
            record = confirmed(snap.enrolments[name])
            if record is None or record.get("status") != "running":
                continue
            reached = set(record.get("goals", []))
            for ref in self.index.goals.get(name, []):
                g = ref.goal
                if ref.id in reached:
                    continue
                if g.event is not None:
                    if g.event != event.type or (g.where is not None and not g.where.matches(event.data)):
                        continue
                    why = f"goal event {event.type}"
                else:
                    facts = contact_facts = contact_facts or self._facts(snap, now)
                    if g.condition.event_fields():  # read from the run's own triggering event
                        run_event = stored_trigger(self.store, contact_id, self._original_event(record))
                        facts = replace(facts, trigger=run_event.get("data", {}))
                    trail: list[Evaluation] = []
                    if not evaluate(g.condition, facts, trail):
                        continue
                    why = f"goal condition {g.condition.describe()}"
                if not self.enroller.is_running(record):
                    break
                self.enroller.stop(contact_id, name, f"goal {ref.id} met")
                current = self.enroller.current(contact_id, name) or record
                self.store.put_item({**current, "goals": sorted(reached | {ref.id})})
                original = self._original_event(record)
                self.enroller.enrol(
                    contact_id,
                    name,
                    original,
                    key=f"goal:{record['execution_arn']}",
                    resume_at=ref.id,
                    restart=True,
                )
                out.append(Routed(contact_id, name, "goal", f"jumped to {ref.id}: {why}"))
                break
        return out

    def _order(self, workflow: str) -> int:
        return next((i for i, wf in enumerate(self.workflows) if wf.name == workflow), len(self.workflows))

    def _goal_met_on_entry(self, snap: Snapshot, wf: Workflow, event: ContactEvent, now: datetime) -> tuple[str, str]:
        """The first goal (in file order) whose condition the contact already meets as it enters: the run starts
        there, skipping the steps before it, as it would jump there from any step. ("", "") when none is met."""
        goals = [g for g in self.index.goals.get(wf.name, []) if g.goal.condition is not None]
        if not goals:
            return "", ""
        facts = self._facts(snap, now, event.data)
        for ref in goals:
            cond = ref.goal.condition
            if evaluate(cond, facts, []):
                return ref.id, f"goal condition {cond.describe()} already met"
        return "", ""

    def _original_event(self, record: dict[str, Any]) -> dict[str, Any]:
        try:
            desc = self.sfn.describe_execution(executionArn=record["execution_arn"])
        except Exception:
            return {}

        return json.loads(desc.get("input", "{}")).get("event", {})

    def _triggers(self, snap: Snapshot, event: ContactEvent, now: datetime) -> list[Routed | _Pending]:
        """The enrolments this event makes, decided from the snapshot: refusals as they are, the rest as claims
        for the event's transaction. Only workflows with a trigger on the event's type are looked at."""
        out: list[Routed | _Pending] = []
        contact_id = snap.contact_id
        payload = event.model_dump(mode="json")
        for wf, triggers in self.index.triggers.get(event.type, []):
            for t in triggers:
                if t.where is not None and not t.where.matches(event.data):
                    failed = [
                        f"{k} {c.describe()}"
                        for k, c in t.where.comparisons().items()
                        if not Where({k: t.where.root[k]}).matches(event.data)
                    ]
                    out.append(Routed(contact_id, wf.name, "not entered", "filter failed: " + "; ".join(failed)))
                    continue
                goal, why = self._goal_met_on_entry(snap, wf, event, now)
                args: dict[str, Any] = {
                    "key": event.digest(),
                    "reentry": wf.reentry,
                    "start_delay": 0 if goal else t.delay or 0,
                    "resume_at": goal,
                    "occurred_at": event.occurred_at,
                }
                claim = self.enroller.prepare(contact_id, wf.name, payload, item=snap.enrolments.get(wf.name), **args)
                if isinstance(claim, Enrolment):
                    out.append(Routed(contact_id, wf.name, "not entered", claim.reason))
                else:
                    out.append(_Pending(wf.name, claim, goal, why, payload, args))
                break
        return out

    def _launch(self, contact_id: str, p: _Pending, event: ContactEvent) -> Routed:
        if p.failed:
            refused = self.enroller.refused(p.claim, p.failed)
            res = refused or self.enroller.enrol(contact_id, p.workflow, p.payload, **p.args)
        else:
            res = self.enroller.launch(p.claim)
        reason = f"{res.reason} at goal {p.goal}: {p.why}" if p.goal and res.started else res.reason
        return Routed(contact_id, p.workflow, "entered" if res.started else "not entered", reason)

    def execution_ended(self, execution_arn: str, status: str, run_input: dict[str, Any]) -> list[Routed]:
        """A run is over (in AWS: the execution status change EventBridge reports). When it was the run of a
        campaign the contact is subscribed to and it succeeded, the contact has completed the campaign: it
        leaves it, and campaign.completed is routed. A repeat of the report finds it gone and does nothing."""
        contact_id, workflow = run_input.get("contact_id"), run_input.get("workflow")
        if status not in ENDED_STATUS or not contact_id or not workflow:
            return []
        raw = self.store.get_item(contact_pk(contact_id), f"ENROLL#{workflow}")
        record = confirmed(raw)
        if status != "SUCCEEDED":
            self._mark_ended(contact_id, workflow, execution_arn, status, record)
            return []
        self._forget_trigger(contact_id, execution_arn, run_input.get("event"), raw)
        if record is None or record.get("execution_arn") != execution_arn:
            return []  # not the contact's current run of it (a goal restarted it, say)
        self._mark_ended(contact_id, workflow, execution_arn, status, record)
        profile = self.store.get_item(contact_pk(contact_id), "PROFILE") or {}
        if workflow not in (profile.get("campaigns") or {}):
            return []  # a workflow the contact did not subscribe to as a campaign
        completed = ContactEvent(
            id=f"completed:{execution_arn.rsplit(':', 1)[-1]}",
            type=C.EVENT_CAMPAIGN_COMPLETED,
            contact=ContactRef(contact_id=contact_id),
            data={"campaign": workflow},
            occurred_at=clock.now(),
        )
        out = [
            Routed(contact_id, workflow, "completed", "campaign completed: its run ended"),
            *self.handle(completed, internal=True),
        ]
        self.store.leave_campaign(contact_id, workflow)  # last: a repeat after a crash routes the event again
        return out

    def _mark_ended(
        self, contact_id: str, workflow: str, execution_arn: str, status: str, record: dict[str, Any] | None
    ) -> bool:
        """The ENROLL# record of the run that ended takes its final status (ENDED_STATUS), on the record and on
        the run index key, when it still names this run and reads running (a repeat, a report of an older run or
        of a run stopped by us changes nothing). A failed or timed-out run is first described: a redrive since the
        report wins (RUNNING again: nothing changes). One UpdateItem per ended run; a DescribeExecution too for
        FAILED and TIMED_OUT."""
        if record is None or record.get("execution_arn") != execution_arn or record.get("status") != "running":
            return False
        if status in ("FAILED", "TIMED_OUT"):
            try:
                now = self.sfn.describe_execution(executionArn=execution_arn).get("status")
            except ClientError as err:
                if err.response["Error"]["Code"] != "ExecutionDoesNotExist":
                    raise
                now = status
            if now == "RUNNING":
                return False  # redriven since the report
        return self.enroller.set_run_status(contact_id, workflow, record, ENDED_STATUS[status])

    def _forget_trigger(self, contact_id: str, execution_arn: str, event: Any, raw: dict[str, Any] | None) -> None:
        """A run that succeeded needs its trigger event (~TRIGGER#, shared/enrollment.py) no more: delete it, unless
        another run may go on with the same one (a restart of this entry by a goal's jump or a resume: the contact's
        current run, or an enrolment claimed and not yet confirmed). A failed, timed-out or stopped run keeps it, so
        resume can redrive or restart it. One DeleteItem per run; a DescribeExecution too when another run is the
        contact's current one."""
        key = stored_key(event)
        if key is None:
            return
        pending = ((raw or {}).get("claim") or {}).get("execution_arn")
        if pending and pending != execution_arn:
            return  # an enrolment under way: it may be a restart passing this run's reference on
        current = (raw or {}).get("execution_arn")
        if current and current != execution_arn:
            try:
                desc = self.sfn.describe_execution(executionArn=current)
            except ClientError as err:
                if err.response["Error"]["Code"] != "ExecutionDoesNotExist":
                    raise
                desc = {}
            if stored_key(json.loads(desc.get("input") or "{}").get("event")) == key:
                return
        self.store.delete_item(contact_pk(contact_id), key)

    def fire_schedule(
        self, wf: Workflow | authoring.Workflow, trigger: ScheduleTrigger | authoring.ScheduleTrigger
    ) -> list[Routed]:
        """A fixed-date trigger: every contact of the list enters once, through the broadcast (the list snapshot to
        S3, a Distributed Map of batches under the StartExecution quota, resumable: shared/runtime/broadcast.py)."""
        from shared.runtime.broadcast import start_broadcast  # the broadcast's batches call back into this router

        return start_broadcast(self, as_runtime(wf), as_runtime(trigger))


@dataclass
class _Pending:
    """An enrolment claimed in the event's transaction, started once the transaction is written."""

    workflow: str
    claim: Claim
    goal: str
    why: str
    payload: dict[str, Any]
    args: dict[str, Any]
    failed: list[int] = field(default_factory=list)


# The ENROLL# status a run takes when it ends, by its Step Functions status. ABORTED is a stop not by us
# (Enroller.stop writes "stopped" itself, and the record then no longer reads running).
ENDED_STATUS = {"SUCCEEDED": "completed", "FAILED": "failed", "TIMED_OUT": "timed_out", "ABORTED": "aborted"}

MESSAGE_CHANNELS = ("email", "sms")
# What a status event learns from the message it is about, unless the provider said it already.
MESSAGE_FIELDS = ("template", "campaign", "workflow", "step")


def _with_message(event: ContactEvent, message: dict[str, Any]) -> ContactEvent:
    """The event with the template, campaign, workflow and step of the message it reports on, so triggers
    and conditions can filter on them ("not delivered, in the spring-sale SMS campaign") whatever the
    provider echoes back."""
    known = {k: message[k] for k in MESSAGE_FIELDS if message.get(k) is not None and k not in event.data}
    return event.model_copy(update={"data": {**event.data, **known}}) if known else event


def outbox_to_event(item: dict[str, Any]) -> ContactEvent:
    return ContactEvent.model_validate(
        {
            "id": item["id"],
            "type": item["type"],
            "contact": {"contact_id": item["contact_id"]},
            "data": item.get("data", {}),
            "occurred_at": item["at"],
        }
    )
