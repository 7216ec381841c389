"""One differential case run both ways: the compiled machine on the local stack and the reference interpreter."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from shared.events import ContactEvent
from shared.store.contacts import new_contact_id
from shared.workflow import reference as ref
from shared.workflow.model import Workflow
from stepwise.simulate import DEFAULT_START, Simulation

TRIGGER = "custom.start"
HORIZON = timedelta(days=20)  # how long after the trigger both sides are observed


@dataclass
class Case:
    """A workflow, a contact's starting data (set by events at the start) and timed events after the trigger."""

    workflow: Workflow
    email: str = "ana@example.com"
    phone: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    lists: list[str] = field(default_factory=list)
    score: int | None = None
    email_consent: bool = True
    trigger_data: dict[str, Any] = field(default_factory=dict)
    trigger_offset: int = 60  # seconds after the start
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)  # (seconds after start, type, data)

    def timed(self) -> list[tuple[int, str, dict[str, Any]]]:
        """Every event in time order: the setup ones at 0, the trigger, then the others."""
        setup: list[tuple[int, str, dict[str, Any]]] = [(0, "tag.added", {"tag": t}) for t in self.tags]
        setup += [(0, "list.subscribed", {"list": x}) for x in self.lists]
        if self.score is not None:
            setup.append((0, "score.changed", {"score": self.score}))
        if not self.email_consent:
            setup.append((0, "consent.withdrawn", {"channel": "email"}))
        later = sorted(self.events, key=lambda e: e[0])
        return [*setup, (self.trigger_offset, TRIGGER, self.trigger_data), *later]


@dataclass
class Outcome:
    records: list[tuple[str, str, str]]
    messages: list[tuple[str, str, str, str]]
    contact: dict[str, Any]

    def lines(self) -> list[str]:
        return [*(" ".join(r) for r in self.records), *("msg " + " ".join(x) for x in self.messages), str(self.contact)]


def _contact_view(tags: Any, lists: Any, fields: dict[str, Any], score: Any, stages: dict[str, Any]) -> dict[str, Any]:
    return {
        "tags": sorted(tags),
        "lists": sorted(lists),
        "fields": {
            k: (float(v) if isinstance(v, int | float) or hasattr(v, "as_tuple") else v) for k, v in fields.items()
        },
        "score": float(score),
        "stages": dict(stages),
    }


def run_reference(case: Case) -> Outcome:
    contact = ref.Contact(id=new_contact_id(("email", case.email)), email=case.email, phone=case.phone, fields={})
    events = [
        ref.Event(DEFAULT_START + timedelta(seconds=s), t, d, fields=case.fields if i == 0 else {})
        for i, (s, t, d) in enumerate(case.timed())
    ]
    if not events or events[0].at != DEFAULT_START or events[0].type == TRIGGER:
        # The contact's own data comes with its first event (the ContactRef's fields).
        events[0] = ref.Event(events[0].at, events[0].type, events[0].data, fields=case.fields)
    trace = ref.interpret(case.workflow, contact, events, horizon=HORIZON)
    c = trace.contact
    assert c is not None
    return Outcome(
        records=[(r.at.isoformat(), r.step, r.outcome) for r in trace.records],
        messages=[(x.at.isoformat(), x.channel, x.template, x.step) for x in trace.messages],
        contact=_contact_view(c.tags, c.lists, c.fields, c.score, c.stages),
    )


def _event(n: int, etype: str, data: dict[str, Any], case: Case, first: bool) -> ContactEvent:
    contact: dict[str, Any] = {"email": case.email}
    if case.phone:
        contact["phone"] = case.phone
    if first and case.fields:
        contact["fields"] = case.fields
    return ContactEvent.model_validate({"id": f"e{n}", "type": etype, "contact": contact, "data": data})


def run_machine(case: Case) -> Outcome:
    with Simulation([case.workflow]) as sim:
        end = DEFAULT_START + timedelta(seconds=case.trigger_offset) + HORIZON
        for n, (s, etype, data) in enumerate(case.timed()):
            sim.advance(DEFAULT_START + timedelta(seconds=s))
            sim.send(_event(n, etype, data, case, n == 0))
        sim.finish(end - sim.now)
        cid = new_contact_id(("email", case.email))
        hist = [h for h in sim.store.history(cid) if h["workflow"] == case.workflow.name]
        failed = [r for r in sim.timeline() if r["outcome"] == "FAILED"]
        records = [(h["at"], h["step"], h["outcome"]) for h in hist]
        records += [(r["at"], "(execution)", f"FAILED {r['why']}") for r in failed]
        msgs = [
            (x["at"], x["channel"], x.get("template") or x.get("subject", ""), x["step"])
            for x in sim.store.messages(cid)
        ]
        c = sim.store.get(cid)
        return Outcome(records, msgs, _contact_view(c.tags, c.lists, c.fields, c.score, c.stages))
