"""Routes one normalised contact event: resumes waits, jumps to goals, enrols contacts whose triggers match."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared import clock
from shared import constants as C
from shared.enrollment import Enroller
from shared.events import ContactEvent, ContactRef
from shared.facts import facts_for
from shared.runtime.abandonment import observe as observe_checkout
from shared.splits import SplitTests
from shared.store.contacts import ContactStore, contact_pk
from shared.waits import resume_wait
from shared.workflow.conditions import Condition, Evaluation, Facts, Where, evaluate, lookup
from shared.workflow.model import GoalStep, ScheduleTrigger, Trigger, Workflow


@dataclass
class Routed:
    """One thing routing did for an event, for the timeline and the logs."""

    contact: str
    workflow: str
    action: str  # entered, not entered, resumed, goal
    why: str


class Router:
    def __init__(self, workflows: list[Workflow], store: ContactStore, enroller: Enroller, sfn: Any) -> None:
        self.workflows = workflows
        self.store = store
        self.enroller = enroller
        self.sfn = sfn

    def handle(self, event: ContactEvent, *, internal: bool = False) -> list[Routed]:
        """Route one event. `internal` events come from the step runner's outbox: already applied."""
        now = clock.now()
        at = event.occurred_at or now
        changes: dict[str, tuple[Any, Any]] = {}
        if event.contact.contact_id:
            contact_id = event.contact.contact_id
        else:
            contact_id, changes = self.store.upsert_with_changes(event.contact)
        message = self._message(contact_id, event)
        if message is not None:
            event = _with_message(event, message)
        self.store.record_activity(contact_id, event.digest(), event.type, event.data, at)
        if not internal:
            self.store.apply_event(contact_id, event.type, event.data, at)
        observe_checkout(self, contact_id, event, at)  # checkout updates and orders: pending abandonments
        out: list[Routed] = []
        if message is not None:
            self._message_engagement(contact_id, event, message, at)
        out += self._split_conversions(contact_id, event, now, message)
        out += self._resume_waits(contact_id, event, now)
        out += self._goals(contact_id, event, now)
        out += self._triggers(contact_id, event)
        # Contact data the event brought (a form's first name...) is a change like a set_field step's: routed as
        # field.changed after the event itself, keyed to it, so "first name takes the value Mario" triggers.
        for name, (value, previous) in changes.items():
            changed = ContactEvent(
                id=f"{event.id}:field:{name}",
                type="field.changed",
                contact=ContactRef(contact_id=contact_id),
                data={"field": name, "value": value, "previous": previous},
                occurred_at=at,
            )
            out += self.handle(changed, internal=True)
        return out

    def _message(self, contact_id: str, event: ContactEvent) -> dict[str, Any] | None:
        """The message a provider's status event is about (email.opened, sms.not_delivered...), by its id."""
        message_id = event.data.get("message_id")
        if not message_id or event.type.split(".")[0] not in MESSAGE_CHANNELS:
            return None
        return self.store.get_item(contact_pk(contact_id), f"MSG#{message_id}")

    def _message_engagement(self, contact_id: str, event: ContactEvent, message: dict[str, Any], at: datetime) -> None:
        """The first open or click of a message Stepwise sent: noted on the message, counted for its step."""
        found = {
            "email.opened": ("opened_at", C.METRIC_MESSAGE_OPENED),
            "email.clicked": ("clicked_at", C.METRIC_MESSAGE_CLICKED),
        }
        if event.type not in found or not message.get("workflow"):
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

    def _contact_facts(self, contact_id: str, now: datetime) -> Facts:
        return facts_for(self.store, self.store.get(contact_id), {}, now)

    def _resume_waits(self, contact_id: str, event: ContactEvent, now: datetime) -> list[Routed]:
        out = []
        contact_facts: Facts | None = None
        for w in self.store.query_prefix(contact_pk(contact_id), "WAIT#"):
            if w.get("event"):
                if w["event"] != event.type:
                    continue
                if w.get("where") and not Where(w["where"]).matches(event.data):
                    continue
                if any(lookup(event.data, k) != v for k, v in (w.get("same") or {}).items()):
                    continue
                why = f"event {event.type} arrived"
            else:
                contact_facts = contact_facts or self._contact_facts(contact_id, now)
                cond = Condition.model_validate(w["condition"])
                # The event that started the run, as far as the condition reads it (`event_field`).
                facts = replace(contact_facts, trigger=w.get("trigger") or {})
                if not evaluate(cond, facts, []):
                    continue
                why = f"condition {cond.describe()} now holds"
            if resume_wait(self.store, self.sfn, w, why, now):
                out.append(Routed(contact_id, w["workflow"], "resumed", f"{w['step']}: {why}"))
        return out

    def _goals(self, contact_id: str, event: ContactEvent, now: datetime) -> list[Routed]:
        out = []
        contact_facts: Facts | None = None
        for wf in self.workflows:
            goals = [s for s, _ in wf.walk() if isinstance(s.root, GoalStep)]
            if not goals:
                continue
            record = self.enroller.current(contact_id, wf.name)
            if not self.enroller.is_running(record):
                continue
            assert record is not None
            reached = set(record.get("goals", []))
            for step in goals:
                g = step.root.goal  # type: ignore[union-attr]
                if step.id in reached:
                    continue
                if g.event is not None:
                    if g.event != event.type or (g.where is not None and not g.where.matches(event.data)):
                        continue
                    why = f"goal event {event.type}"
                else:
                    facts = contact_facts = contact_facts or self._contact_facts(contact_id, now)
                    if g.condition.event_fields():  # read from the run's own triggering event
                        facts = replace(facts, trigger=self._original_event(record).get("data", {}))
                    trail: list[Evaluation] = []
                    if not evaluate(g.condition, facts, trail):
                        continue
                    why = f"goal condition {g.condition.describe()}"
                self.enroller.stop(contact_id, wf.name, f"goal {step.id} met")
                self.store.put_item({**record, "goals": sorted(reached | {step.id})})
                original = self._original_event(record)
                self.enroller.enrol(
                    contact_id,
                    wf.name,
                    original,
                    key=f"goal:{record['execution_arn']}",
                    resume_at=step.id or "",
                    restart=True,
                )
                out.append(Routed(contact_id, wf.name, "goal", f"jumped to {step.id}: {why}"))
                break
        return out

    def _goal_met_on_entry(self, contact_id: str, wf: Workflow, event: ContactEvent) -> tuple[str, str]:
        """The first goal (in file order) whose condition the contact already meets as it enters: the run starts
        there, skipping the steps before it, as it would jump there from any step. ("", "") when none is met."""
        goals = [s for s, _ in wf.walk() if isinstance(s.root, GoalStep) and s.root.goal.condition is not None]
        if not goals:
            return "", ""
        facts = replace(self._contact_facts(contact_id, clock.now()), trigger=event.data)
        for step in goals:
            cond = step.root.goal.condition  # type: ignore[union-attr]
            if evaluate(cond, facts, []):
                return step.id or "", f"goal condition {cond.describe()} already met"
        return "", ""

    def _original_event(self, record: dict[str, Any]) -> dict[str, Any]:
        try:
            desc = self.sfn.describe_execution(executionArn=record["execution_arn"])
        except Exception:
            return {}

        return json.loads(desc.get("input", "{}")).get("event", {})

    def _triggers(self, contact_id: str, event: ContactEvent) -> list[Routed]:
        out = []
        payload = event.model_dump(mode="json")
        for wf in self.workflows:
            for entry in wf.triggers:
                t = entry.root
                if not isinstance(t, Trigger) or t.event != event.type:
                    continue
                if t.where is not None and not t.where.matches(event.data):
                    failed = [
                        f"{k} {c.describe()}"
                        for k, c in t.where.comparisons().items()
                        if not Where({k: t.where.root[k]}).matches(event.data)
                    ]
                    out.append(Routed(contact_id, wf.name, "not entered", "filter failed: " + "; ".join(failed)))
                    continue
                goal, why = self._goal_met_on_entry(contact_id, wf, event)
                res = self.enroller.enrol(
                    contact_id,
                    wf.name,
                    payload,
                    key=event.digest(),
                    reentry=wf.reentry,
                    start_delay=0 if goal else t.delay or 0,
                    resume_at=goal,
                    occurred_at=event.occurred_at,
                )
                reason = f"{res.reason} at goal {goal}: {why}" if goal and res.started else res.reason
                out.append(Routed(contact_id, wf.name, "entered" if res.started else "not entered", reason))
                break
        return out

    def execution_ended(self, execution_arn: str, status: str, run_input: dict[str, Any]) -> list[Routed]:
        """A run is over (in AWS: the execution status change EventBridge reports). When it was the run of a
        campaign the contact is subscribed to and it succeeded, the contact has completed the campaign: it
        leaves it, and campaign.completed is routed. A repeat of the report finds it gone and does nothing."""
        contact_id, workflow = run_input.get("contact_id"), run_input.get("workflow")
        if status != "SUCCEEDED" or not contact_id or not workflow:
            return []
        record = self.enroller.current(contact_id, workflow)
        if record is None or record.get("execution_arn") != execution_arn:
            return []  # not the contact's current run of it (a goal restarted it, say)
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

    def fire_schedule(self, wf: Workflow, trigger: ScheduleTrigger) -> list[Routed]:
        """A fixed-date trigger: every contact of the list enters once, through the broadcast (the list snapshot to
        S3, a Distributed Map of batches under the StartExecution quota, resumable: shared/runtime/broadcast.py)."""
        from shared.runtime.broadcast import start_broadcast  # the broadcast's batches call back into this router

        return start_broadcast(self, wf, trigger)


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
