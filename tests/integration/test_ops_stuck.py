"""`stepwise stuck` and `stepwise resume` on the local stack: a failed run and a run past its wait are found (through
the run index and ListExecutions, no Scan); resume says moto cannot redrive, then restarts the run at a step and
the contact carries on from there."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.enrollment import Enroller
from shared.store.contacts import contact_pk
from shared.store.operations import OperationsStore
from shared.store.run_index import SHARDS
from stepwise.ops.resume import resume
from stepwise.ops.stuck import find_stuck
from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import TRIAL_ONBOARDING as ONBOARDING
from tests.integration.support import contact, event, messages, steps, workflow


def _ops(sim: Simulation, calls: list[str]) -> OperationsStore:
    """The operations store over the simulation's clients, with every DynamoDB operation it makes noted."""
    ops = OperationsStore(sim.store, sfn=sim.stack.sfn, workers=1)

    def note(**kw: Any) -> None:
        calls.append(kw["event_name"].rsplit(".", 1)[-1])

    sim.store.client.meta.events.register("before-call.dynamodb.*", note)
    return ops


def test_stuck_finds_a_failed_run_and_a_run_past_its_wait_and_resume_continues_it() -> None:
    with Simulation([workflow(ONBOARDING)]) as sim:
        sim.send(event("a1", "list.subscribed", {"list": "trial"}, email="ana@example.com"))
        sim.send(event("c1", "list.subscribed", {"list": "trial"}, email="cy@example.com"))
        ana = contact(sim, email="ana@example.com")["id"]
        # Ana's profile goes missing during her wait: the step after it fails her run (ContactNotFound).
        profile = sim.store.get_item(contact_pk(ana), "PROFILE")
        assert profile is not None
        sim.store.delete_item(contact_pk(ana), "PROFILE")
        sim.advance(DEFAULT_START + timedelta(days=3, hours=1))
        sim.store.put_item(profile)  # the cause fixed; her run stays failed
        sim.send(event("b1", "list.subscribed", {"list": "trial"}, email="bo@example.com"))
        bo = contact(sim, email="bo@example.com")["id"]
        cy = contact(sim, email="cy@example.com")["id"]

        calls: list[str] = []
        ops = _ops(sim, calls)
        machine = sim.machines["onboarding"]
        # Four days later by the report's clock, Bo's 3-day wait is a day overdue; Cy finished on time.
        report = find_stuck(ops, "onboarding", machine, now=sim.now + timedelta(days=4))
        found = {(s.contact_id, s.problem, s.step) for s in report.stuck}
        assert found == {(ana, "failed", "three-days"), (bo, "overdue", "three-days")}
        assert "ContactNotFound" in next(s.detail for s in report.stuck if s.problem == "failed")
        assert "Scan" not in calls and "Query" in calls
        # The run index's page on each shard and on the unsharded key, and one BatchGetItem of the stuck runs'
        # records: no Query per contact.
        assert sorted(calls) == ["BatchGetItem"] + ["Query"] * (SHARDS + 1)
        # Now, nobody's wait is late: only Ana's failed run.
        assert {s.contact_id for s in find_stuck(ops, "onboarding", machine).stuck} == {ana}
        assert cy not in found

        enroller = Enroller(sim.store, sim.stack.sfn, sim.arn_template)
        # moto has no RedriveExecution: resume says so and offers the restart at the step the run stopped after.
        tried = resume(ops, enroller, "ana@example.com", "onboarding")
        assert tried.action == "not-redriven"
        assert "not available" in tried.message and "--at three-days" in tried.message
        done = resume(ops, enroller, "ana@example.com", "onboarding", at="tips")
        assert done.action == "restarted" and "restarted at tips" in done.message
        sim.finish()
        assert [m[2] for m in messages(sim, email="ana@example.com")] == ["hello", "tips"]
        assert steps(sim, email="ana@example.com")[-1][1:] == ("tips", "done")
        # The restart is the same entry: one entry counted, the run index says running no more once it ended.
        assert {s.contact_id for s in find_stuck(ops, "onboarding", machine).stuck} == set()
        # The same resume again finds the restart's run ended normally: nothing is sent twice.
        again = resume(ops, enroller, "ana@example.com", "onboarding", at="tips")
        sim.finish()
        assert again.action == "nothing" and "SUCCEEDED" in again.message
        assert [m[2] for m in messages(sim, email="ana@example.com")] == ["hello", "tips"]
