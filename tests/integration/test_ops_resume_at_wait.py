"""`stepwise resume --at STEP` where STEP is a wait: the restarted run's wait is recorded as a run reaching it
normally records it (same history record, run index running), so history, stuck and the timeouts see it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.enrollment import Enroller
from shared.store.contacts import contact_pk
from shared.store.operations import OperationsStore
from shared.workflow.compiler import compile_workflow, entry_plan
from stepwise.ops.resume import restart_plan, resume
from stepwise.ops.stuck import find_stuck
from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import TRIAL_ONBOARDING as ONBOARDING
from tests.integration.support import contact, event, history, messages, workflow

# A wait after the wait: the plan of a restart at three-days holds both, as the compiler's does.
WAITS_IN_A_ROW = ONBOARDING.replace(
    "  - id: tips", '  - id: fixed\n    wait_until: {at: "2026-12-31T09:00:00Z"}\n  - id: tips'
)
OPENS_WITH_A_WAIT = """
name: slow-start
triggers: [{event: list.subscribed}]
steps:
  - id: first-pause
    wait: 1d
  - id: second-pause
    wait: 2h
  - id: hello
    send_email: {template: hello}
  - id: loop
    goto: first-pause
"""
SHARED = ("step", "kind", "outcome", "version", "workflow", "contact_id")


def test_the_plan_read_from_the_deployed_definition_is_the_compilers_entry_plan() -> None:
    """Both ways restart_plan reads a definition (a Task's ahead; the Wait states a workflow opens with) give
    what the compiler's entry plan says for every place a run can start at a wait."""
    checked = 0
    for text in (ONBOARDING, WAITS_IN_A_ROW, OPENS_WITH_A_WAIT):
        wf = workflow(text)
        plan = entry_plan(wf)
        definition = compile_workflow(wf, "arn:aws:lambda:us-east-1:123456789012:function:runner")
        assert plan.ahead  # something to compare
        for sid, ahead in plan.ahead.items():
            if not sid:
                continue
            got = restart_plan(definition, sid)
            assert got is not None, sid
            assert (got.passive(sid), got.version, got.history_days) == (ahead, plan.version, plan.history_days)
            checked += 1
        assert restart_plan(definition, "hello") is None  # a Task: it records itself
    assert checked == 5  # three-days; three-days and fixed; first-pause and second-pause


def _waiting(records: list[dict[str, Any]], execution: str) -> dict[str, Any]:
    return next(r for r in records if r["execution"] == execution and r["step"] == "three-days")


def test_a_run_restarted_at_a_wait_looks_like_one_that_reached_it() -> None:
    with Simulation([workflow(ONBOARDING)]) as sim:
        sim.send(event("a1", "list.subscribed", {"list": "trial"}, email="ana@example.com"))
        ana = contact(sim, email="ana@example.com")["id"]
        profile = sim.store.get_item(contact_pk(ana), "PROFILE")
        assert profile is not None
        sim.store.delete_item(contact_pk(ana), "PROFILE")  # her run fails after its wait (ContactNotFound)
        sim.advance(DEFAULT_START + timedelta(days=3, hours=1))
        sim.store.put_item(profile)
        sim.send(event("b1", "list.subscribed", {"list": "trial"}, email="bo@example.com"))
        bo = contact(sim, email="bo@example.com")["id"]
        sim.advance(sim.now + timedelta(minutes=5))

        ops = OperationsStore(sim.store, sfn=sim.stack.sfn, workers=1)
        enroller = Enroller(sim.store, sim.stack.sfn, sim.arn_template)  # as the CLI builds it: no entry plans
        done = resume(ops, enroller, ana, "onboarding", at="three-days")
        assert done.action == "restarted", done.message
        sim.advance(sim.now + timedelta(minutes=5))

        bo_rec = sim.store.get_item(contact_pk(bo), "ENROLL#onboarding")
        ana_rec = sim.store.get_item(contact_pk(ana), "ENROLL#onboarding")
        assert bo_rec is not None and ana_rec is not None and ana_rec["execution_arn"] == done.execution_arn
        normal = _waiting(history(sim, email="bo@example.com"), bo_rec["execution_arn"])
        restarted = _waiting(history(sim, email="ana@example.com"), done.execution_arn)
        # The same record, field for field, but for who, when and which run.
        assert set(restarted) == set(normal)
        assert {k: restarted[k] for k in SHARED if k != "contact_id"} == {
            k: normal[k] for k in SHARED if k != "contact_id"
        }
        assert restarted["why"].startswith("for 259200s until ") and normal["why"].startswith("for 259200s until ")
        # The run index says running, as for Bo.
        assert ana_rec["gsi1sk"].startswith("running#") and bo_rec["gsi1sk"].startswith("running#")
        # stuck sees both waits: four days on, both are overdue at three-days.
        report = find_stuck(ops, "onboarding", sim.machines["onboarding"], now=sim.now + timedelta(days=4))
        found = {(s.contact_id, s.problem, s.step) for s in report.stuck}
        assert {(ana, "overdue", "three-days"), (bo, "overdue", "three-days")} <= found
        sim.finish()
        assert [m[2] for m in messages(sim, email="ana@example.com")] == ["hello", "tips"]
