"""The ENROLL# status across a run's end and a resume: a run that failed after its wait reads failed (off the
running range of the run index, still found by stuck); resume sets it running again before RedriveExecution (moto
has none: a before-call hook answers that one call), and back to failed when the redrive is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.awsrequest import AWSResponse

from shared import constants as C
from shared.enrollment import Enroller
from shared.store.contacts import contact_pk
from shared.store.operations import OperationsStore
from stepwise.ops.resume import resume
from stepwise.ops.stuck import find_stuck
from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import TRIAL_ONBOARDING as ONBOARDING
from tests.integration.support import contact, event, workflow


def _record(sim: Simulation, cid: str) -> tuple[str, str]:
    item = sim.store.get_item(contact_pk(cid), "ENROLL#onboarding")
    assert item is not None
    return str(item["status"]), str(item[C.GSI1_SK])


def test_a_failed_run_reads_failed_and_resume_sets_running_before_the_redrive() -> None:
    with Simulation([workflow(ONBOARDING)]) as sim:
        sim.send(event("a1", "list.subscribed", {"list": "trial"}, email="ana@example.com"))
        ana = contact(sim, email="ana@example.com")["id"]
        profile = sim.store.get_item(contact_pk(ana), "PROFILE")
        assert profile is not None
        sim.store.delete_item(contact_pk(ana), "PROFILE")  # the step after her wait fails her run
        sim.advance(DEFAULT_START + timedelta(days=3, hours=1))
        sim.store.put_item(profile)
        ops = OperationsStore(sim.store, sfn=sim.stack.sfn, workers=1)
        status, sk = _record(sim, ana)
        assert status == "failed" and sk.startswith("failed#") and sk.endswith(f"#{ana}")
        assert ana not in {r.contact_id for r in ops.runs("onboarding", status="running")}  # not waiting (stats)
        machine = sim.machines["onboarding"]
        assert {(s.contact_id, s.problem) for s in find_stuck(ops, "onboarding", machine).stuck} == {(ana, "failed")}

        enroller = Enroller(sim.store, sim.stack.sfn, sim.arn_template)
        # moto refuses the redrive: the record takes its failed status back.
        assert resume(ops, enroller, "ana@example.com", "onboarding").action == "not-redriven"
        assert _record(sim, ana) == (status, sk)

        seen: list[tuple[str, str]] = []

        def redrive(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
            seen.append(_record(sim, ana))  # what the step runner would find once the run goes on
            return AWSResponse("https://states", 200, {}, None), {"redriveDate": datetime.now(UTC)}

        sim.stack.sfn.meta.events.register("before-call.sfn.RedriveExecution", redrive, unique_id="test-redrive")
        try:
            assert resume(ops, enroller, "ana@example.com", "onboarding").action == "redriven"
        finally:
            sim.stack.sfn.meta.events.unregister("before-call.sfn.RedriveExecution", unique_id="test-redrive")
        assert len(seen) == 1 and seen[0][0] == "running" and seen[0][1].startswith("running#")
        assert ana in {r.contact_id for r in ops.runs("onboarding", status="running")}


def test_a_restart_at_a_step_reads_running_then_completed() -> None:
    with Simulation([workflow(ONBOARDING)]) as sim:
        sim.send(event("a1", "list.subscribed", {"list": "trial"}, email="ana@example.com"))
        ana = contact(sim, email="ana@example.com")["id"]
        profile = sim.store.get_item(contact_pk(ana), "PROFILE")
        assert profile is not None
        sim.store.delete_item(contact_pk(ana), "PROFILE")
        sim.advance(DEFAULT_START + timedelta(days=3, hours=1))
        sim.store.put_item(profile)
        ops = OperationsStore(sim.store, sfn=sim.stack.sfn, workers=1)
        enroller = Enroller(sim.store, sim.stack.sfn, sim.arn_template)
        assert resume(ops, enroller, "ana@example.com", "onboarding", at="tips").action == "restarted"
        assert _record(sim, ana)[0] == "running"
        sim.finish()
        status, sk = _record(sim, ana)
        assert status == "completed" and sk.startswith("completed#")
