"""What the integration tests share: events, inline workflows, and what a user sees of a simulation."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import yaml

from shared.events import ContactEvent
from shared.workflow.model import Workflow, parse_workflow
from stepwise.simulate import DEFAULT_START, Simulation, TimedEvent

HISTORY_TTL = timedelta(days=30)
ANA, BO = "ana@example.com", "bo@example.com"


def event(eid: str, etype: str, data: dict[str, Any], **contact: str) -> ContactEvent:
    """A normalised event about the contact named by `contact` (email=..., phone=...)."""
    return ContactEvent.model_validate({"id": eid, "type": etype, "contact": contact, "data": data})


def timed(offset: timedelta, eid: str, etype: str, data: dict[str, Any], **contact: str) -> TimedEvent:
    return TimedEvent(DEFAULT_START + offset, event(eid, etype, data, **contact))


def subscribe(sim: Simulation, email: str = ANA, eid: str = "s1", list_name: str = "news") -> None:
    """The contact joins a list now (what starts most test workflows)."""
    sim.send(event(eid, "list.subscribed", {"list": list_name}, email=email))


def pay(sim: Simulation, email: str = ANA, eid: str = "o1", order_id: str = "1", total: float = 5) -> None:
    """The contact pays an order now (what meets most test goals)."""
    sim.send(event(eid, "order.paid", {"order_id": order_id, "total": total}, email=email))


def advance(sim: Simulation, **delta: float) -> None:
    """Move the simulation's clock to DEFAULT_START plus `delta` (at() names the same instant)."""
    sim.advance(DEFAULT_START + timedelta(**delta))


def run_in_order(sim: Simulation, events: list[TimedEvent]) -> None:
    """Simulation.run feeds events in list order; a test lists them as it reads best."""
    sim.run(sorted(events, key=lambda e: e.at))


def workflow(text: str) -> Workflow:
    return parse_workflow(yaml.safe_load(text), "<test workflow>")


def tagging(name: str, event_type: str) -> Workflow:
    """A one-step workflow: `event_type` enters the contact, which is tagged with the workflow's name."""
    return workflow(f"name: {name}\ntriggers: [{{event: {event_type}}}]\nsteps:\n  - {{id: mark, add_tag: {name}}}\n")


def at(**delta: float) -> str:
    """DEFAULT_START plus `delta`, as history records and messages show times."""
    return (DEFAULT_START + timedelta(**delta)).isoformat()


def contact(sim: Simulation, **identity: str) -> dict[str, Any]:
    """The summary of the one contact whose email (or phone) is given: data and messages."""
    (key, value), *_ = identity.items()
    matches = [c for c in sim.summary()["contacts"] if c.get(key) == value]
    assert len(matches) == 1, f"{len(matches)} contacts with {key} {value}"
    return matches[0]


def history(sim: Simulation, workflow_name: str | None = None, **identity: str) -> list[dict[str, Any]]:
    """The contact's history records in the order they happened (of one workflow when named)."""
    rows = sim.store.history(contact(sim, **identity)["id"])
    return [h for h in rows if workflow_name is None or h["workflow"] == workflow_name]


def steps(sim: Simulation, workflow_name: str | None = None, **identity: str) -> list[tuple[str, str, str]]:
    """(time, step, outcome) of each history record: the path a user sees in the timeline."""
    return [(h["at"], h["step"], h["outcome"]) for h in history(sim, workflow_name, **identity)]


def messages(sim: Simulation, **identity: str) -> list[tuple[str, str, str]]:
    """(time, channel, template or subject) of each message sent to or about the contact."""
    return [
        (m["at"], m["channel"], m.get("template") or m.get("subject", "")) for m in contact(sim, **identity)["messages"]
    ]


def assert_history_ttl(records: list[dict[str, Any]]) -> None:
    """Every record is deleted by DynamoDB's TTL 30 days after it was written."""
    assert records
    for h in records:
        assert h["expires_at"] == int((datetime.fromisoformat(h["at"]) + HISTORY_TTL).timestamp()), h


def executions(sim: Simulation, workflow_name: str) -> list[dict[str, Any]]:
    """describe_execution of every run of a workflow, with the contact it ran for under `contact_id`."""
    out = []
    for arn in sim.execution_arns(workflow_name):
        desc = sim.stack.sfn.describe_execution(executionArn=arn)
        out.append({**desc, "contact_id": json.loads(desc["input"])["contact_id"]})
    return out


def states_entered(sim: Simulation, execution_arn: str) -> list[str]:
    """The states an execution entered, in order: one billed transition each."""
    return [
        e["stateEnteredEventDetails"]["name"]
        for e in sim.stack.history(execution_arn)
        if e["type"].endswith("StateEntered")
    ]


# A go-to loop: an email a day until the contact buys, at most `max_loops` jumps.
NAG = """
name: nag
triggers: [{event: list.subscribed}]
settings: {max_loops: %d}
steps:
  - id: nag
    send_email: {template: come-back}
  - id: pause
    wait: 1d
  - id: bought
    if: {has_tag: Purchased}
    then:
      - id: stop
        end: bought
    else:
      - goto: nag
"""


# ---- workflows more than one test file runs ---------------------------------------------------------------------

# A go-to in on_timeout: a reminder a day until the order is paid, at most max_loops jumps.
TIMEOUT_LOOP = """
name: timeout-loop
triggers: [{event: list.subscribed}]
settings: {max_loops: 2}
steps:
  - id: remind
    send_email: {template: pay-now}
  - id: wait-pay
    wait_until: {event: order.paid, timeout: 1d, on_timeout: [{goto: remind}]}
  - id: thanks
    send_email: {template: thanks}
"""
# Enrols the contact in the campaign promo, then takes it out a day later (the promo workflow is each test's own).
JOIN_AND_LEAVE = """
name: join-and-leave
triggers: [{event: form.submitted}]
steps:
  - id: join
    subscribe: {campaign: promo}
  - id: a-day
    wait: 1d
  - id: stop-promo
    remove_from_campaign: promo
"""


# A trial onboarding any contact may re-enter: a send, a 3-day wait, a send (the ops tests stop, find and resume it).
TRIAL_ONBOARDING = """
name: onboarding
triggers: [{event: list.subscribed, where: {list: trial}}]
reentry: always
steps:
  - id: hello
    send_email: {template: hello}
  - id: three-days
    wait: 3d
  - id: tips
    send_email: {template: tips}
"""
