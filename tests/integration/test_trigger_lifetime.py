"""A run's trigger event (the ~TRIGGER# item its execution input references: executions hold ids only) goes when
the run succeeds, and stays while anything may still read it: a failed run (resume restarts it), a goal's jump (the
restarted run goes on with the same reference), an enrolment being claimed. Erase removes whatever is left."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from shared.enrollment import DUPLICATE, STORED, TRIGGER_PREFIX, Enroller, stored_key
from shared.events import stable_hash
from shared.store.contacts import ERASED_SK, contact_pk
from shared.store.operations import OperationsStore
from stepwise.ops.erase import erase
from stepwise.ops.resume import resume
from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import TRIAL_ONBOARDING as ONBOARDING
from tests.integration.support import contact, event, messages, workflow

# The decision after the goal reads the run's own triggering event: a restarted run that lost it would say "welcome".
UPSELL = """
name: upsell
triggers: [{event: order.paid}]
steps:
  - id: pitch
    send_email: {template: pitch}
  - id: pause
    wait: 3d
  - id: pitch-again
    send_email: {template: pitch-2}
  - id: upgraded
    goal: {event: tag.added}
  - id: settle-in
    wait: 1d
  - id: big
    if: {event_field: total, gte: 100}
    then:
      - id: pro
        send_email: {template: welcome-pro}
    else:
      - id: lite
        send_email: {template: welcome}
"""
ANA = "ana@example.com"


def triggers(sim: Simulation, contact_id: str) -> list[dict[str, Any]]:
    return sim.store.query_prefix(contact_pk(contact_id), TRIGGER_PREFIX, live_only=False)


def run_input(sim: Simulation, arn: str) -> dict[str, Any]:
    got: dict[str, Any] = json.loads(sim.stack.sfn.describe_execution(executionArn=arn)["input"])
    return got


def enrolment(sim: Simulation, contact_id: str, wf: str) -> dict[str, Any]:
    item = sim.store.get_item(contact_pk(contact_id), f"ENROLL#{wf}")
    assert item is not None
    return item


def test_the_trigger_of_a_run_that_succeeds_is_deleted_and_a_new_entry_keeps_its_own() -> None:
    with Simulation([workflow(ONBOARDING)]) as sim:
        sim.send(event("a1", "list.subscribed", {"list": "trial"}, email=ANA))
        ana = contact(sim, email=ANA)["id"]
        first = enrolment(sim, ana, "onboarding")["execution_arn"]
        (item,) = triggers(sim, ana)
        assert stored_key(run_input(sim, first)["event"]) == item["sk"]  # the input references it
        assert item["event"]["data"] == {"list": "trial"}
        sim.advance(DEFAULT_START + timedelta(days=3, hours=1))  # past the wait: the run ends (SUCCEEDED)
        assert sim.stack.sfn.describe_execution(executionArn=first)["status"] == "SUCCEEDED"
        assert triggers(sim, ana) == []
        # Re-entry (reentry: always): the new run's event is kept, and goes when that run ends in turn.
        sim.send(event("a2", "list.subscribed", {"list": "trial"}, email=ANA))
        (again,) = triggers(sim, ana)
        assert again["sk"] != item["sk"]
        # The first run's end reported late, once the contact re-entered: the current run references another item,
        # so the first one's goes (put back here as it was before its run ended).
        sim.store.put_item(item)
        sim.router.execution_ended(first, "SUCCEEDED", run_input(sim, first))
        assert triggers(sim, ana) == [again]
        sim.finish()
        assert triggers(sim, ana) == []
        assert [m[2] for m in messages(sim, email=ANA)] == ["hello", "tips", "hello", "tips"]


def test_a_failed_run_keeps_its_trigger_and_a_resume_restart_goes_on_with_it() -> None:
    with Simulation([workflow(ONBOARDING)]) as sim:
        sim.send(event("a1", "list.subscribed", {"list": "trial"}, email=ANA))
        ana = contact(sim, email=ANA)["id"]
        failed = enrolment(sim, ana, "onboarding")["execution_arn"]
        profile = sim.store.get_item(contact_pk(ana), "PROFILE")
        assert profile is not None
        sim.store.delete_item(contact_pk(ana), "PROFILE")  # her run fails after its wait (ContactNotFound)
        sim.advance(DEFAULT_START + timedelta(days=3, hours=1))
        assert sim.stack.sfn.describe_execution(executionArn=failed)["status"] == "FAILED"
        sim.store.put_item(profile)
        (kept,) = triggers(sim, ana)  # a failed run keeps it: resume needs it
        # The event again (as the router enrols it; its partition's restored profile aside): a duplicate, kept.
        again = Enroller(sim.store, sim.stack.sfn, sim.arn_template).enrol(
            ana, "onboarding", kept["event"], key=stable_hash("list.subscribed", "a1")
        )
        assert again.reason == DUPLICATE
        assert [(t["sk"], t["event"]) for t in triggers(sim, ana)] == [(kept["sk"], kept["event"])]

        ops = OperationsStore(sim.store, sfn=sim.stack.sfn, workers=1)
        done = resume(ops, Enroller(sim.store, sim.stack.sfn, sim.arn_template), ana, "onboarding", at="tips")
        assert done.action == "restarted", done.message
        # The restart passes the failed run's reference on: no second item.
        assert run_input(sim, done.execution_arn)["event"] == run_input(sim, failed)["event"]
        assert {STORED, "type"} == set(run_input(sim, done.execution_arn)["event"])
        (refreshed,) = triggers(sim, ana)
        assert refreshed["event"] == kept["event"]
        assert refreshed["expires_at"] > kept["expires_at"]  # a year from the restart
        sim.finish()
        assert sim.stack.sfn.describe_execution(executionArn=done.execution_arn)["status"] == "SUCCEEDED"
        assert kept["sk"] and triggers(sim, ana) == []  # the restarted run succeeded: gone
        assert [m[2] for m in messages(sim, email=ANA)] == ["hello", "tips"]


def test_a_goal_jump_restart_reads_the_trigger_and_it_goes_when_the_restarted_run_ends() -> None:
    with Simulation([workflow(UPSELL)]) as sim:
        sim.send(event("o1", "order.paid", {"order_id": "1", "total": 120}, email=ANA))
        ana = contact(sim, email=ANA)["id"]
        first = enrolment(sim, ana, "upsell")["execution_arn"]
        (item,) = triggers(sim, ana)
        sim.advance(DEFAULT_START + timedelta(days=1))
        sim.send(event("t1", "tag.added", {"tag": "upgraded"}, email=ANA))  # the goal: the run jumps to it
        restarted = enrolment(sim, ana, "upsell")["execution_arn"]
        assert restarted != first
        assert sim.stack.sfn.describe_execution(executionArn=first)["status"] == "ABORTED"
        assert stored_key(run_input(sim, restarted)["event"]) == item["sk"]
        (kept,) = triggers(sim, ana)  # the jumped-from run was stopped: the item stays for the new run
        assert (kept["sk"], kept["event"]) == (item["sk"], item["event"])
        # ... and lives as long as the restarted run may (a year from the jump, not from the entry).
        assert kept["expires_at"] == item["expires_at"] + 86400
        item = kept
        # Its end reported again as if it had succeeded (a late or odd report): the current run still uses the item.
        sim.router.execution_ended(first, "SUCCEEDED", run_input(sim, first))
        assert triggers(sim, ana) == [item]
        sim.finish()
        # The restarted run read the order's total after the jump (a lost event would have sent "welcome").
        assert [m[2] for m in messages(sim, email=ANA)] == ["pitch", "welcome-pro"]
        assert sim.stack.sfn.describe_execution(executionArn=restarted)["status"] == "SUCCEEDED"
        assert triggers(sim, ana) == []


def test_an_enrolment_being_claimed_keeps_the_trigger_and_a_repeat_report_changes_nothing() -> None:
    with Simulation([workflow(ONBOARDING)]) as sim:
        sim.send(event("a1", "list.subscribed", {"list": "trial"}, email=ANA))
        ana = contact(sim, email=ANA)["id"]
        arn = enrolment(sim, ana, "onboarding")["execution_arn"]
        (item,) = triggers(sim, ana)
        record = enrolment(sim, ana, "onboarding")
        # A restart claimed and not yet started (its writer between the claim and StartExecution).
        claim = {"key": "goal:x", "execution_arn": arn + "-next", "resume_at": "tips", "at": sim.now.isoformat()}
        sim.store.put_item({**record, "claim": claim})
        sim.router.execution_ended(arn, "SUCCEEDED", run_input(sim, arn))
        assert triggers(sim, ana) == [item]
        sim.store.put_item(record)  # the claim gone: this run's end deletes it, a repeat of the report is a no-op
        sim.router.execution_ended(arn, "FAILED", run_input(sim, arn))
        assert triggers(sim, ana) == [item]  # a failed run keeps it
        sim.router.execution_ended(arn, "SUCCEEDED", run_input(sim, arn))
        assert triggers(sim, ana) == []
        sim.router.execution_ended(arn, "SUCCEEDED", run_input(sim, arn))
        assert triggers(sim, ana) == []


def test_erase_removes_the_trigger_a_failed_run_kept() -> None:
    with Simulation([workflow(ONBOARDING)]) as sim:
        sim.send(event("a1", "list.subscribed", {"list": "trial"}, email=ANA))
        ana = contact(sim, email=ANA)["id"]
        profile = sim.store.get_item(contact_pk(ana), "PROFILE")
        assert profile is not None
        sim.store.delete_item(contact_pk(ana), "PROFILE")
        sim.advance(DEFAULT_START + timedelta(days=3, hours=1))  # failed: the trigger is kept
        sim.store.put_item(profile)
        assert len(triggers(sim, ana)) == 1
        ops = OperationsStore(sim.store, sfn=sim.stack.sfn, workers=1)
        receipt = erase(ops, ANA, settle_seconds=0)
        assert receipt.items["trigger events"] == 1
        assert [i["sk"] for i in ops.partition(ana).items] == [ERASED_SK]  # the tombstone (its time) only


def test_a_redelivered_event_of_a_run_that_succeeded_leaves_no_trigger_behind() -> None:
    with Simulation([workflow(ONBOARDING)]) as sim:
        sim.send(event("a1", "list.subscribed", {"list": "trial"}, email=ANA))
        ana = contact(sim, email=ANA)["id"]
        sim.finish()
        assert triggers(sim, ana) == []
        # The same event again (a stream retry, a provider's resend past the intake's dedupe): reentry is always,
        # so it is claimed again, its execution exists and has ended: a duplicate, refused.
        routed = sim.send(event("a1", "list.subscribed", {"list": "trial"}, email=ANA))
        assert [r.action for r in routed] == ["not entered"]
        assert triggers(sim, ana) == []
