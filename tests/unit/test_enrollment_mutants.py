"""The enroller (shared/enrollment.py) driven directly against moto's DynamoDB and Step Functions in-process:
execution names and ARNs, the execution input, re-entry, activation, the claim that makes an enrolment race-free,
the repeat of a start that stopped before recording it, restarts, runaway entry budgets, the passive steps a run
opens with, and stopping a run. Fast enough to run for every mutant of the module (docs/mutation.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shared import constants as C
from shared.enrollment import (
    BEING_ENTERED,
    CLAIM_GRACE,
    DUPLICATE,
    RACED,
    Enroller,
    Enrolment,
    confirmed,
    execution_arn,
    execution_input,
)
from shared.events import stable_hash
from shared.history import EntryPlan, visit_key
from shared.lifecycle import read_status, status_pk, write_status
from shared.store.contacts import ContactStore, contact_pk
from shared.store.run_index import shard_of
from shared.workflow.compiler import entry_plan
from shared.workflow.runtime import Reentry
from tests.unit.test_routing_mutants import ACCOUNT, REGION, TEMPLATE, Env, aws_fixture, env_fixture, wf  # noqa: F401

MACHINE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:stepwise-news"
EVENT = {"id": "e1", "type": "list.subscribed", "contact": {"email": "ada@example.com"}, "data": {"list": "weekly"}}


def _contact(env: Env, cid: str = "c-ada", **profile: Any) -> str:
    env.store.put_item({C.PK: contact_pk(cid), C.SK: "PROFILE", "contact_id": cid, "fields": {}, **profile})
    return cid


def _record(env: Env, cid: str, workflow: str = "news") -> dict[str, Any]:
    got = env.item(cid, f"ENROLL#{workflow}")
    assert got is not None
    return got


# ---- pure -----------------------------------------------------------------------------------------------------


def test_an_execution_arn_is_named_on_its_machine_whatever_qualifier_the_arn_has() -> None:
    exec_arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:stepwise-news:run-1"
    assert execution_arn(MACHINE, "run-1") == exec_arn
    assert execution_arn(MACHINE + ":live", "run-1") == exec_arn
    assert execution_arn(MACHINE + ":7", "run-1") == exec_arn


def test_the_execution_input_is_what_every_compiled_machine_expects() -> None:
    assert execution_input("c-1", "news", {"type": "x.y"}) == {
        "contact_id": "c-1",
        "workflow": "news",
        "event": {"type": "x.y"},
        "start_delay": 0,
        "run": {"loops": 0, "branch": "", "resume_at": ""},
    }
    got = execution_input("c-1", "news", {}, resume_at="goal", start_delay=60)
    assert got["start_delay"] == 60 and got["run"] == {"loops": 0, "branch": "", "resume_at": "goal"}


def test_a_confirmed_record_leaves_out_the_claim_bookkeeping() -> None:
    assert confirmed(None) is None
    assert confirmed({"claim": {"execution_arn": "x"}, "rev": 1}) is None
    assert confirmed({"execution_arn": "a", "status": "running", "claim": {}, "rev": 3}) == {
        "execution_arn": "a",
        "status": "running",
    }


# ---- entering -------------------------------------------------------------------------------------------------


def test_an_enrolment_starts_one_named_execution_and_records_it(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    got = enroller.enrol(cid, "news", EVENT, key="k1")
    assert got.started and got.reason == "started"
    assert got.execution_arn is not None and got.execution_arn.startswith(MACHINE.replace("stateMachine", "execution"))
    name = got.execution_arn.rsplit(":", 1)[-1]
    assert name.startswith("news-") and len(name) == len("news-") + 24
    desc = env.sfn.describe_execution(executionArn=got.execution_arn)
    assert json.loads(desc["input"])["contact_id"] == cid and json.loads(desc["input"])["workflow"] == "news"
    rec = _record(env, cid)
    assert rec["execution_arn"] == got.execution_arn and rec["status"] == "running"
    assert rec["entered_at"] == env.clock.at.isoformat() and rec["count"] == 1 and rec["goals"] == []
    assert rec["workflow"] == "news" and rec[C.GSI1_PK] == f"RUN#news#{shard_of(cid)}"
    assert rec[C.GSI1_SK].startswith("running#")
    assert rec[C.GSI1_SK].endswith(f"#{cid}")
    assert "claim" not in rec and rec["rev"] == 1 and "version_arn" not in rec
    assert enroller.current(cid, "news") == confirmed(rec)
    assert env.metrics == [(C.METRIC_ENTERED, "news", C.METRIC_ENTRY_STEP, {})]
    # The same key again (a redelivery) starts nothing.
    again = enroller.enrol(cid, "news", EVENT, key="k1")
    assert not again.started and again.reason == "already in this workflow"
    assert again.execution_arn == got.execution_arn
    assert len(env.executions("news")) == 1 and len(env.metrics) == 1


def test_execution_names_are_stable_per_contact_workflow_key_and_start_and_fit_the_limit(env: Env) -> None:
    long = "w" * 60
    env.machines("news", long)
    enroller = env.enroller()
    cid = _contact(env)
    a = enroller.prepare(cid, "news", EVENT, key="k1")
    b = enroller.prepare(cid, "news", EVENT, key="k1")
    c = enroller.prepare(cid, "news", EVENT, key="k2")
    d = enroller.prepare(cid, "news", EVENT, key="k1", resume_at="goal")
    e = enroller.prepare(_contact(env, "c-bob"), "news", EVENT, key="k1")
    names = [x.name for x in (a, b, c, d, e)]  # type: ignore[union-attr]
    assert names[0] == names[1] and len(set(names)) == 4
    got = enroller.enrol(cid, long, EVENT, key="k1")
    assert got.execution_arn is not None
    assert got.execution_arn.rsplit(":", 1)[-1].startswith("w" * 40 + "-")
    assert len(got.execution_arn.rsplit(":", 1)[-1]) == 65


def test_a_redelivery_after_the_run_ended_is_a_duplicate_and_clears_its_claim(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    first = enroller.enrol(cid, "news", EVENT, key="k1", reentry=Reentry(mode="always"))
    assert first.execution_arn is not None
    env.sfn.stop_execution(executionArn=first.execution_arn)
    again = enroller.enrol(cid, "news", EVENT, key="k1", reentry=Reentry(mode="always"))
    assert (again.started, again.execution_arn, again.reason) == (False, None, DUPLICATE)
    rec = _record(env, cid)
    assert "claim" not in rec and rec["execution_arn"] == first.execution_arn and rec["count"] == 1


def test_reentry_once_once_per_and_always(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)

    def enter(key: str, reentry: Reentry) -> Enrolment:
        got = enroller.enrol(cid, "news", EVENT, key=key, reentry=reentry)
        if got.execution_arn:
            env.sfn.stop_execution(executionArn=got.execution_arn)
        return got

    assert enter("k1", Reentry(mode="once")).started
    assert enter("k2", Reentry(mode="once")).reason == "entered before and re-entry is once"
    week = Reentry(mode="once_per", period=7 * 86400)
    refused = enter("k3", week)
    assert refused.reason == f"entered {env.clock.at.isoformat()}, within once_per period" and not refused.started
    env.clock.advance(days=7)
    assert enter("k4", week).started
    env.clock.advance(days=6, hours=23)
    assert not enter("k5", week).started
    assert enter("k6", Reentry(mode="always")).started
    assert enter("k7", Reentry(mode="always")).started
    assert _record(env, cid)["count"] == 4


def test_without_a_reentry_the_workflows_own_from_its_entry_plan_applies(env: Env) -> None:
    env.machines("news")
    plan = EntryPlan(version="v1", history_days=30, reentry=Reentry(mode="always"))
    enroller = env.enroller({"news": plan})
    cid = _contact(env)
    first = enroller.enrol(cid, "news", EVENT, key="k1")
    assert first.execution_arn is not None
    env.sfn.stop_execution(executionArn=first.execution_arn)
    assert enroller.enrol(cid, "news", EVENT, key="k2").started
    # No plan and no reentry: nothing refuses a second entry.
    plain = env.enroller()
    env.sfn.stop_execution(executionArn=_record(env, cid)["execution_arn"])
    assert plain.enrol(cid, "news", EVENT, key="k3").started
    # A reentry given wins over the plan's.
    env.sfn.stop_execution(executionArn=_record(env, cid)["execution_arn"])
    assert enroller.enrol(cid, "news", EVENT, key="k4", reentry=Reentry(mode="once")).reason == (
        "entered before and re-entry is once"
    )


# ---- activation -----------------------------------------------------------------------------------------------


def test_a_workflow_with_no_status_is_activated_at_the_given_time_once(env: Env) -> None:
    env.machines("news")
    at = env.clock.at - timedelta(hours=2)
    enroller = env.enroller(activated_at=at)
    cid = _contact(env)
    assert enroller.enrol(cid, "news", EVENT, key="k1", occurred_at=env.clock.at).started
    status = read_status(env.store, "news")
    assert status.active and status.since == at
    later = env.enroller(activated_at=env.clock.at + timedelta(days=1))
    env.sfn.stop_execution(executionArn=_record(env, cid)["execution_arn"])
    assert later.enrol(cid, "news", EVENT, key="k2", occurred_at=env.clock.at).started
    assert read_status(env.store, "news").since == at  # never moved


def test_without_an_activation_time_the_machines_creation_date_or_now_is_used(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller(activated_at=None)
    created = env.sfn.describe_state_machine(stateMachineArn=MACHINE)["creationDate"]
    # The machine is dated by the wall clock, which is ahead of the domain clock here: now is used.
    assert created > env.clock.at and enroller.deployed_at("news") == env.clock.at
    env.clock.at = created + timedelta(hours=1)
    assert enroller.deployed_at("news") == created
    assert enroller.deployed_at("never-deployed") == env.clock.at
    cid = _contact(env)
    assert enroller.enrol(cid, "news", EVENT, key="k1", occurred_at=env.clock.at).started
    assert read_status(env.store, "news").since == created


def test_an_inactive_workflow_or_an_event_before_activation_enters_nobody(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    since = env.clock.at - timedelta(hours=1)
    write_status(env.store, "news", active=True, since=since)
    got = enroller.enrol(cid, "news", EVENT, key="k1", occurred_at=since - timedelta(seconds=1))
    assert (got.started, got.reason) == (
        False,
        f"the event happened before the workflow was activated ({since.isoformat()})",
    )
    assert enroller.enrol(cid, "news", EVENT, key="k2", occurred_at=since).started
    env.sfn.stop_execution(executionArn=_record(env, cid)["execution_arn"])
    write_status(env.store, "news", active=False, since=env.clock.at)
    got = enroller.enrol(cid, "news", EVENT, key="k3", reentry=Reentry(mode="always"))
    assert not got.started and got.reason.startswith("workflow is not active")
    assert len(env.executions("news")) == 1


def test_a_status_written_before_since_ms_existed_is_brought_up_to_date(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    since = env.clock.at - timedelta(hours=1)
    env.store.put_item(
        {C.PK: status_pk("news"), C.SK: "STATUS", "workflow": "news", "active": True, "since": since.isoformat()}
    )
    assert enroller.enrol(cid, "news", EVENT, key="k1", occurred_at=env.clock.at).started
    item = env.store.get_item(status_pk("news"), "STATUS")
    assert item is not None and item["since_ms"] == int(since.timestamp() * 1000) and item["active"] is True


# ---- claims ---------------------------------------------------------------------------------------------------


def test_a_fresh_claim_of_another_key_is_respected_and_an_abandoned_one_taken_over(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    write_status(env.store, "news", active=True, since=env.clock.at - timedelta(days=1))
    other = enroller.prepare(cid, "news", EVENT, key="other")
    assert not isinstance(other, Enrolment)
    assert env.store.transact_failures(other.writes) is None  # its writer then dies before StartExecution
    got = enroller.enrol(cid, "news", EVENT, key="k1")
    assert (got.started, got.execution_arn, got.reason) == (False, None, BEING_ENTERED)
    env.clock.advance(seconds=CLAIM_GRACE.total_seconds() - 1)
    assert enroller.enrol(cid, "news", EVENT, key="k1").reason == BEING_ENTERED
    env.clock.advance(seconds=1)
    taken = enroller.enrol(cid, "news", EVENT, key="k1")
    assert taken.started and taken.execution_arn != other.execution_arn
    assert _record(env, cid)["rev"] == 2


def test_a_claim_whose_run_started_unrecorded_is_the_contacts_run(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    write_status(env.store, "news", active=True, since=env.clock.at - timedelta(days=1))
    other = enroller.prepare(cid, "news", EVENT, key="other", resume_at="later")
    assert not isinstance(other, Enrolment)
    assert env.store.transact_failures(other.writes) is None
    started = env.sfn.start_execution(stateMachineArn=other.machine, name=other.name, input="{}")
    got = enroller.enrol(cid, "news", EVENT, key="k1")
    assert (got.started, got.execution_arn, got.reason) == (False, started["executionArn"], "already in this workflow")
    rec = _record(env, cid)
    assert rec["execution_arn"] == started["executionArn"] and rec["status"] == "running" and rec["count"] == 1
    assert rec["entered_at"] == started["startDate"].isoformat() and rec["rev"] == 1
    assert "claim" not in rec


def test_a_claim_lost_to_a_racing_enrolment_is_decided_again(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    write_status(env.store, "news", active=True, since=env.clock.at - timedelta(days=1))
    mine = enroller.prepare(cid, "news", EVENT, key="k1")
    assert not isinstance(mine, Enrolment)
    rival = enroller.enrol(cid, "news", EVENT, key="rival")
    assert rival.started
    failed = env.store.transact_failures(mine.writes)
    assert failed == [1]
    assert enroller.refused(mine, failed) is None  # worth re-reading: the rival's run will show
    assert enroller.enrol(cid, "news", EVENT, key="k1").reason == "already in this workflow"


def test_an_enrolment_that_keeps_losing_its_claim_gives_up(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    write_status(env.store, "news", active=True, since=env.clock.at - timedelta(days=1))
    calls: list[int] = []

    def bump(params: dict[str, Any], **_: Any) -> None:
        # Before each transaction of ours, another enrolment moves the item's revision on.
        calls.append(1)
        item = env.item(cid, "ENROLL#news") or {C.PK: contact_pk(cid), C.SK: "ENROLL#news"}
        env.store.put_item({**item, "rev": int(item.get("rev", 0)) + 1})

    env.ddb.meta.events.register("before-call.dynamodb.TransactWriteItems", bump)
    try:
        got = enroller.enrol(cid, "news", EVENT, key="k1")
    finally:
        env.ddb.meta.events.unregister("before-call.dynamodb.TransactWriteItems", bump)
    assert (got.started, got.execution_arn, got.reason) == (False, None, RACED)
    assert len(calls) == 4 and env.executions("news") == []


# ---- the repeat of a start ------------------------------------------------------------------------------------


def _die(**_: Any) -> None:
    """The enroller's process dies right after StartExecution answered (a Lambda timeout), before any record."""
    raise TimeoutError("the invocation timed out")


def test_a_retry_after_a_crash_between_the_start_and_its_records_completes_the_enrolment(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    env.sfn.meta.events.register("after-call.sfn.StartExecution", _die)
    try:
        with pytest.raises(TimeoutError):
            enroller.enrol(cid, "news", EVENT, key="k1")
    finally:
        env.sfn.meta.events.unregister("after-call.sfn.StartExecution", _die)
    (only,) = env.executions("news")
    assert env.item(cid, "ENROLL#news") is not None and "execution_arn" not in _record(env, cid)
    # The retry, a moment later by the wall clock: StartExecution answers as the first time did.
    env.clock.at = datetime.now(UTC) + timedelta(minutes=1)
    got = enroller.enrol(cid, "news", EVENT, key="k1")
    assert got.started and got.execution_arn == only["executionArn"]
    assert got.reason == "started (recorded on a repeat: the first try stopped before recording)"
    rec = _record(env, cid)
    assert rec["entered_at"] == only["startDate"].isoformat()  # dated by the execution itself
    assert rec["count"] == 1 and "claim" not in rec
    # And once recorded, the same delivery again is a duplicate.
    again = enroller.enrol(cid, "news", EVENT, key="k1")
    assert not again.started


def test_a_repeat_of_a_recorded_running_start_is_a_duplicate(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    first = enroller.enrol(cid, "news", EVENT, key="k1")
    claim = enroller.prepare(cid, "news", EVENT, key="k1", restart=True)
    assert not isinstance(claim, Enrolment) and env.store.transact_failures(claim.writes) is None
    env.clock.at = datetime.now(UTC) + timedelta(minutes=1)
    got = enroller.launch(claim)
    assert (got.started, got.execution_arn, got.reason) == (False, None, DUPLICATE)
    rec = _record(env, cid)
    assert "claim" not in rec and rec["execution_arn"] == first.execution_arn


def test_an_old_delivery_of_a_run_the_contact_left_and_reentered_is_a_duplicate(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    first = enroller.enrol(cid, "news", EVENT, key="k1", reentry=Reentry(mode="always"))
    assert first.execution_arn is not None
    env.sfn.stop_execution(executionArn=first.execution_arn)
    env.clock.at = datetime.now(UTC) + timedelta(minutes=1)
    second = enroller.enrol(cid, "news", EVENT, key="k2", reentry=Reentry(mode="always"))
    assert second.started
    env.sfn.stop_execution(executionArn=_record(env, cid)["execution_arn"])
    old = enroller.enrol(cid, "news", EVENT, key="k1", reentry=Reentry(mode="always"))
    assert (old.started, old.reason) == (False, DUPLICATE)
    assert "claim" not in _record(env, cid)


def test_a_start_refused_for_another_reason_is_raised(env: Env) -> None:
    enroller = env.enroller()  # no machine deployed
    cid = _contact(env)
    with pytest.raises(ClientError) as err:
        enroller.enrol(cid, "news", EVENT, key="k1")
    assert err.value.response["Error"]["Code"] == "StateMachineDoesNotExist"


# ---- restarts (a goal's jump, stepwise resume) ----------------------------------------------------------------


def test_a_restart_is_the_same_entry_whatever_the_status(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    first = enroller.enrol(cid, "news", EVENT, key="k1")
    assert first.execution_arn is not None
    entered = _record(env, cid)["entered_at"]
    env.store.put_item({**_record(env, cid), "goals": ["g1"]})
    enroller.stop(cid, "news", "goal g1 met")
    write_status(env.store, "news", active=False, since=env.clock.at)
    env.clock.advance(hours=3)
    env.metrics.clear()
    got = enroller.enrol(cid, "news", EVENT, key="goal:x", resume_at="g1", restart=True)
    assert got.started
    rec = _record(env, cid)
    assert rec["entered_at"] == entered and rec["count"] == 1 and rec["goals"] == ["g1"]
    assert rec["execution_arn"] == got.execution_arn and rec["status"] == "running"
    assert env.metrics == []  # not counted as an entry again
    run = json.loads(env.sfn.describe_execution(executionArn=str(got.execution_arn))["input"])
    assert run["run"]["resume_at"] == "g1"


def test_a_restart_runs_the_version_the_run_entered_with(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    version = MACHINE + ":3"
    assert enroller.pinned_version(None) == ""
    assert enroller.pinned_version({"version_arn": version, "execution_arn": "x"}) == version
    first = enroller.enrol(cid, "news", EVENT, key="k1")
    rec = _record(env, cid)
    assert enroller.pinned_version(rec) == ""  # started through the unqualified machine
    assert enroller.pinned_version({"execution_arn": str(first.execution_arn) + "-gone"}) == ""
    env.store.put_item({**rec, "version_arn": version})
    claim = enroller.prepare(cid, "news", EVENT, key="goal:1", restart=True)
    assert not isinstance(claim, Enrolment) and claim.machine == version and claim.start.version_arn == version
    assert not claim.checks_status and not any("ConditionCheck" in w for w in claim.writes)  # no entry check
    given = MACHINE + ":9"
    claim = enroller.prepare(cid, "news", EVENT, key="goal:1", restart=True, version_arn=given)
    assert not isinstance(claim, Enrolment) and claim.machine == given
    fresh = enroller.prepare(cid, "news", EVENT, key="k2", reentry=Reentry(mode="always"))
    assert not isinstance(fresh, Enrolment) or fresh.reason == "already in this workflow"


# ---- runaway entry budgets ------------------------------------------------------------------------------------


def test_an_entry_budget_reached_pauses_the_workflow(env: Env) -> None:
    env.machines("news")
    plan = EntryPlan(version="v1", history_days=30, budgets={"entries_per_hour": 2, "alert": ["team@example.com"]})
    enroller = env.enroller({"news": plan})
    ids = [_contact(env, f"c-{i}") for i in range(3)]
    assert enroller.enrol(ids[0], "news", EVENT, key="k").started
    assert enroller.enrol(ids[1], "news", EVENT, key="k").started
    hour = env.clock.at.strftime("%Y-%m-%dT%H")
    got = enroller.enrol(ids[2], "news", EVENT, key="k")
    assert not got.started
    assert got.reason == f"runaway budget: 2 entries per hour reached ({hour}:00Z): workflow paused"
    status = read_status(env.store, "news")
    assert not status.active and "runaway budget" in status.reason
    assert env.item(ids[2], "ENROLL#news") is None or "execution_arn" not in _record(env, ids[2])
    # A restart is the same entry: not counted against the budget.
    claim = enroller.prepare(ids[0], "news", EVENT, key="goal:1", restart=True)
    assert not isinstance(claim, Enrolment) and claim.budget_at is None


def test_without_an_entry_budget_nothing_is_counted(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller({"news": EntryPlan(version="v1", history_days=30, budgets={"entries_per_hour": 0})})
    claim = enroller.prepare(_contact(env), "news", EVENT, key="k")
    assert not isinstance(claim, Enrolment) and claim.budget_at is None
    assert not any("ADD" in str(w.get("Update", {}).get("UpdateExpression", "")) for w in claim.writes)
    budgeted = env.enroller({"news": EntryPlan(version="v1", history_days=30, budgets={"entries_per_hour": 5})})
    claim = budgeted.prepare(_contact(env), "news", EVENT, key="k")
    # After the entry check and the claim: where refused() looks for it.
    assert not isinstance(claim, Enrolment) and claim.budget_at == 2


# ---- the passive steps a run opens with -----------------------------------------------------------------------

OPENS_WITH_WAIT = wf("""
name: news
triggers: [{event: list.subscribed, delay: 1h}]
steps:
  - id: first-pause
    wait: 1d
  - id: second-pause
    wait: 2h
  - id: hello
    send_email: {template: hello}
  - id: clicked
    goal: {event: email.clicked}
  - id: after-goal
    wait: 3h
  - id: bye
    send_email: {template: bye}
""")


def test_a_run_that_opens_with_waits_has_their_records_from_its_start(env: Env) -> None:
    env.machines("news")
    plan = entry_plan(OPENS_WITH_WAIT)
    enroller = env.enroller({"news": plan})
    cid = _contact(env)
    got = enroller.enrol(cid, "news", EVENT, key="k1", start_delay=3600)
    assert got.started
    hist = [h for h in env.history(cid) if h["workflow"] == "news"]
    assert [(h["step"], h["execution"]) for h in hist] == [
        ("first-pause", got.execution_arn),
        ("second-pause", got.execution_arn),
    ]
    start = env.clock.at + timedelta(hours=1)  # the trigger's delay comes first
    assert hist[0]["at"] == start.isoformat()
    names = [m[0] for m in env.metrics]
    assert names[0] == C.METRIC_ENTERED and len(names) == 3
    # A repeat writes nothing twice.
    again = enroller.prepare(cid, "news", EVENT, key="k1", restart=True)
    assert not isinstance(again, Enrolment)
    enroller._record_start(again.start, str(got.execution_arn), env.clock.at)
    assert len([h for h in env.history(cid) if h["workflow"] == "news"]) == 2
    assert len(env.metrics) == 3


def test_a_restart_at_a_goal_records_the_waits_after_it_from_its_own_start(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller({"news": entry_plan(OPENS_WITH_WAIT)})
    cid = _contact(env, campaigns={"news": None}, stages={})
    got = enroller.enrol(cid, "news", EVENT, key="g", resume_at="after-goal", start_delay=3600, restart=True)
    assert got.started
    (rec,) = [h for h in env.history(cid) if h["step"] == "after-goal"]
    assert rec["at"] == env.clock.at.isoformat()  # a resume_at wins over the start delay
    # The contact is in the campaign: its stage is the last passive step.
    profile = env.item(cid, "PROFILE")
    assert profile is not None and profile["campaigns"]["news"] == "after-goal"


def test_a_run_without_a_plan_or_passive_steps_records_nothing_at_its_start(env: Env) -> None:
    env.machines("news")
    plain = wf("""
name: news
triggers: [{event: list.subscribed}]
steps: [{id: hello, send_email: {template: hello}}]
""")
    cid = _contact(env)
    assert env.enroller({"news": entry_plan(plain)}).enrol(cid, "news", EVENT, key="k1").started
    assert env.enroller().enrol(_contact(env, "c-2"), "news", EVENT, key="k1").started
    assert [h for h in env.history(cid) + env.history("c-2") if h["workflow"] == "news"] == []


# ---- stopping -------------------------------------------------------------------------------------------------


def test_stopping_a_run_aborts_it_and_marks_the_record(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    assert enroller.stop(cid, "news", "why") is False  # no run
    got = enroller.enrol(cid, "news", EVENT, key="k1")
    assert enroller.is_running(_record(env, cid))
    reason = "goal reached " + "x" * 300
    assert enroller.stop(cid, "news", reason) is True
    desc = env.sfn.describe_execution(executionArn=str(got.execution_arn))
    assert desc["status"] == "ABORTED"
    rec = _record(env, cid)
    assert rec["status"] == "stopped" and rec["stopped_because"] == reason
    assert rec[C.GSI1_PK] == f"RUN#news#{shard_of(cid)}" and rec[C.GSI1_SK] == f"stopped#{rec['entered_at']}#{cid}"
    assert not enroller.is_running(rec)
    assert enroller.stop(cid, "news", "again") is False


def test_a_run_is_running_only_when_its_record_and_its_execution_say_so(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    enroller.enrol(cid, "news", EVENT, key="k1")
    rec = confirmed(_record(env, cid))
    assert rec is not None and enroller.is_running(rec)
    assert not enroller.is_running(None) and not enroller.is_running({})
    assert not enroller.is_running({**rec, "status": "stopped"})
    assert not enroller.is_running({**rec, "execution_arn": rec["execution_arn"] + "-gone"})
    env.sfn.stop_execution(executionArn=rec["execution_arn"])
    assert not enroller.is_running(rec)


# ---- killing the first run's survivors (docs/mutation.md) -----------------------------------------------------


def test_the_deployment_date_is_read_from_the_machine_behind_the_alias_the_template_names(env: Env) -> None:
    # As deployed, the template names the workflow's alias (infra/names.py alias_arn_template).
    env.machines("news")
    created = env.sfn.describe_state_machine(stateMachineArn=MACHINE)["creationDate"]
    env.clock.at = created + timedelta(days=1)
    enroller = Enroller(env.store, env.sfn, TEMPLATE + ":live", None)
    assert enroller.deployed_at("news") == created


def test_a_repeat_of_a_recorded_running_start_writes_its_opening_waits_once(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller({"news": entry_plan(OPENS_WITH_WAIT)})
    cid = _contact(env)
    first = enroller.enrol(cid, "news", EVENT, key="k1")

    def records() -> list[dict[str, Any]]:  # TTL aside: the clock is moved a month on below
        return env.store.query_prefix(contact_pk(cid), "HIST#", live_only=False)

    before = sorted(h[C.SK] for h in records())
    assert len(before) == 2
    claim = enroller.prepare(cid, "news", EVENT, key="k1", restart=True)
    assert not isinstance(claim, Enrolment) and env.store.transact_failures(claim.writes) is None
    env.clock.at = datetime.now(UTC) + timedelta(minutes=1)
    assert enroller.launch(claim).reason == DUPLICATE
    assert sorted(h[C.SK] for h in records()) == before
    assert {h["execution"] for h in records()} == {first.execution_arn}


def test_stopping_a_run_deletes_the_records_it_wrote_ahead_and_will_never_reach(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller({"news": entry_plan(OPENS_WITH_WAIT)})
    cid = _contact(env)
    enroller.enrol(cid, "news", EVENT, key="k1", start_delay=3600)  # its waits dated from an hour from now
    assert len(env.history(cid)) == 2
    assert enroller.stop(cid, "news", "goal met")
    assert env.history(cid) == []


def test_the_event_a_run_was_started_with_is_read_back_from_its_reference(env: Env) -> None:
    from shared.enrollment import stored_trigger

    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    got = enroller.enrol(cid, "news", EVENT, key="k1")
    carried = json.loads(env.sfn.describe_execution(executionArn=str(got.execution_arn))["input"])["event"]
    assert "contact" not in carried and carried["type"] == "list.subscribed"  # ids only in the execution
    assert stored_trigger(env.store, cid, carried) == EVENT
    # An input carrying the event itself is taken as it is.
    assert stored_trigger(env.store, cid, EVENT) == EVENT
    assert stored_trigger(env.store, cid, {"type": "x.y", "stored": "S", "contact": {"email": "a@b.c"}}) == {
        "type": "x.y",
        "stored": "S",
        "contact": {"email": "a@b.c"},
    }
    # Gone (erased, or older than it is kept): its type and no data.
    assert stored_trigger(env.store, cid, {"type": "list.subscribed", "stored": "TRIGGER#gone"}) == {
        "type": "list.subscribed",
        "data": {},
    }
    assert stored_trigger(env.store, cid, {"stored": "TRIGGER#gone"}) == {"type": "", "data": {}}
    assert stored_trigger(env.store, "c-other", carried) == {"type": "list.subscribed", "data": {}}


# ---- killing the full run's survivors in refused and launch (docs/mutation.md) --------------------------------


def test_an_entry_budget_trip_is_recorded_on_the_contact_that_hit_it_and_alerts_the_team(env: Env) -> None:
    env.machines("news")
    plan = EntryPlan(version="v1", history_days=7, budgets={"entries_per_hour": 1, "alert": ["team@example.com"]})
    enroller = env.enroller({"news": plan})
    first, second = _contact(env, "c-1"), _contact(env, "c-2")
    assert enroller.enrol(first, "news", EVENT, key="k").started
    assert not enroller.enrol(second, "news", EVENT, key="k").started
    (why,) = env.store.query_prefix(contact_pk(second), "HIST#budget#news#", live_only=False)
    assert why["contact_id"] == second and why["outcome"] == "paused"
    assert why[C.TTL_ATTRIBUTE] == int((env.clock.at + timedelta(days=7)).timestamp())  # the plan's history_days
    (alert,) = env.store.query_prefix(contact_pk(second), "MSG#", live_only=False)
    assert alert["channel"] == "alert" and alert["to"] == ["team@example.com"] and alert["about"] == second
    assert env.store.query_prefix(contact_pk(first), "HIST#budget#", live_only=False) == []


def test_a_status_brought_up_to_date_keeps_its_cancelled_count(env: Env) -> None:
    env.machines("news")
    since = env.clock.at - timedelta(hours=1)
    item = {C.PK: status_pk("news"), C.SK: "STATUS", "workflow": "news", "active": True, "since": since.isoformat()}
    env.store.put_item({**item, "cancelled": 3})
    assert env.enroller().enrol(_contact(env), "news", EVENT, key="k1", occurred_at=env.clock.at).started
    got = env.store.get_item(status_pk("news"), "STATUS")
    assert got is not None and got["cancelled"] == 3 and got["since_ms"] == int(since.timestamp() * 1000)


def test_the_execution_input_carries_the_start_delay_and_where_to_resume(env: Env) -> None:
    env.machines("news")
    got = env.enroller().enrol(_contact(env), "news", EVENT, key="k1", start_delay=3600, resume_at="hello")
    run = json.loads(env.sfn.describe_execution(executionArn=str(got.execution_arn))["input"])
    assert run["start_delay"] == 3600 and run["run"] == {"loops": 0, "branch": "", "resume_at": "hello"}


def test_a_redelivery_for_a_stopped_run_does_not_bring_back_the_waits_its_stop_deleted(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller({"news": entry_plan(OPENS_WITH_WAIT)})
    cid = _contact(env)
    first = enroller.enrol(cid, "news", EVENT, key="k1", start_delay=3600)
    assert enroller.stop(cid, "news", "goal met") and env.history(cid) == []
    again = enroller.enrol(cid, "news", EVENT, key="k1", reentry=Reentry(mode="always"))
    assert (again.started, again.reason) == (False, DUPLICATE)
    assert env.history(cid) == [] and "claim" not in _record(env, cid)
    assert _record(env, cid)["execution_arn"] == first.execution_arn
    # A run that did not succeed keeps its event (resume reads it): the duplicate does not delete it.
    carried = json.loads(env.sfn.describe_execution(executionArn=str(first.execution_arn))["input"])["event"]
    assert env.item(cid, carried["stored"]) is not None


def test_a_restart_carrying_its_runs_reference_renews_the_kept_event_for_another_year(env: Env) -> None:
    from shared.enrollment import TRIGGER_DAYS, stored_key

    assert stored_key(None) is None and stored_key(EVENT) is None and stored_key({"type": "x.y"}) is None
    assert stored_key({"type": "x.y", "stored": "~TRIGGER#a"}) == "~TRIGGER#a"
    assert stored_key({"type": "x.y", "stored": "~TRIGGER#a", "contact": {}}) is None
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    first = enroller.enrol(cid, "news", EVENT, key="k1")
    carried = json.loads(env.sfn.describe_execution(executionArn=str(first.execution_arn))["input"])["event"]
    sk = stored_key(carried)
    assert sk is not None
    env.clock.advance(days=100)
    got = enroller.enrol(cid, "news", carried, key="goal:1", resume_at="hello", restart=True)
    assert got.started
    kept = env.item(cid, sk)
    assert kept is not None and kept["event"] == EVENT
    assert kept[C.TTL_ATTRIBUTE] == int((env.clock.at + timedelta(days=TRIGGER_DAYS)).timestamp())
    again = json.loads(env.sfn.describe_execution(executionArn=str(got.execution_arn))["input"])["event"]
    assert again == carried  # passed on as it is: no second kept copy


def test_a_restart_whose_claim_was_lost_tries_again_whatever_the_status(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    assert enroller.enrol(cid, "news", EVENT, key="k1").started
    write_status(env.store, "news", active=False, since=env.clock.at)
    claim = enroller.prepare(cid, "news", EVENT, key="goal:1", resume_at="hello", restart=True)
    assert not isinstance(claim, Enrolment) and not claim.checks_status
    # A restart has no entry check: its first write is the claim, and losing it is no refusal.
    assert enroller.refused(claim, [0]) is None


def test_a_start_refused_as_existing_whose_execution_cannot_be_described_is_a_duplicate(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    first = enroller.enrol(cid, "news", EVENT, key="k1")
    env.sfn.stop_execution(executionArn=str(first.execution_arn))  # the name is taken by an execution that ended

    def no_describe(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "DescribeExecution")

    env.sfn.meta.events.register("before-call.sfn.DescribeExecution", no_describe)
    try:
        got = enroller.enrol(cid, "news", EVENT, key="k1", reentry=Reentry(mode="always"))
    finally:
        env.sfn.meta.events.unregister("before-call.sfn.DescribeExecution", no_describe)
    assert (got.started, got.execution_arn, got.reason) == (False, None, DUPLICATE)


# ---- killing the survivors of the run of d4bc36a (docs/mutation.md) ------------------------------------------


def test_a_restart_runs_the_version_describe_execution_names_when_the_record_has_none(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    first = enroller.enrol(cid, "news", EVENT, key="k1")
    version = MACHINE + ":4"

    def through_version(parsed: dict[str, Any], **_: Any) -> None:
        # What AWS answers for a run started through an alias or a version (moto never says: docs/moto_patches.md #11).
        if parsed.get("executionArn") == first.execution_arn:
            parsed["stateMachineVersionArn"] = version

    env.sfn.meta.events.register("after-call.sfn.DescribeExecution", through_version)
    try:
        assert enroller.pinned_version(_record(env, cid)) == version
        claim = enroller.prepare(cid, "news", EVENT, key="goal:1", restart=True)
    finally:
        env.sfn.meta.events.unregister("after-call.sfn.DescribeExecution", through_version)
    assert not isinstance(claim, Enrolment) and claim.machine == version and claim.start.version_arn == version


def test_stopping_a_run_tells_step_functions_why_in_at_most_200_characters(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    got = enroller.enrol(cid, "news", EVENT, key="k1")
    sent: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        sent.append(dict(params))  # moto drops error and cause; AWS keeps them on the aborted execution

    env.sfn.meta.events.register("provide-client-params.sfn.StopExecution", record)
    reason = "goal reached " + "x" * 300
    try:
        assert enroller.stop(cid, "news", reason)
    finally:
        env.sfn.meta.events.unregister("provide-client-params.sfn.StopExecution", record)
    assert sent == [{"executionArn": got.execution_arn, "error": "Stopped", "cause": reason[:200]}]
    assert len(sent[0]["cause"]) == 200


def test_an_enrolment_records_its_progress_and_its_entry_marker_exactly(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller({"news": EntryPlan(version="v7", history_days=9)})
    cid = _contact(env)
    got = enroller.enrol(cid, "news", EVENT, key="k1")
    arn = str(got.execution_arn)
    name, at, shard = arn.rsplit(":", 1)[-1], env.clock.at.isoformat(), shard_of(cid)
    progress = {"state": "entered", "step": "", "at": at, "until": "", "version": "v7", "execution": arn, "order": ""}
    assert _record(env, cid) == {
        C.PK: contact_pk(cid),
        C.SK: "ENROLL#news",
        "workflow": "news",
        "execution_arn": arn,
        "status": "running",
        "entered_at": at,
        C.GSI1_PK: f"RUN#news#{shard}",
        C.GSI1_SK: f"running#entered#-#{at}#-#v7#{cid}",
        "progress": progress,
        "count": 1,
        "goals": [],
        "rev": 1,
        "entry": name,
    }
    assert env.item(cid, f"ENTERED#news#{name}") == {
        C.PK: contact_pk(cid),
        C.SK: f"ENTERED#news#{name}",
        "workflow": "news",
        "execution_arn": arn,
        "entered_at": at,
        C.GSI1_PK: f"FUNNEL#news#{shard}",
        C.GSI1_SK: f"{at}#entered#-#-#{name}",
        C.TTL_ATTRIBUTE: int((env.clock.at + timedelta(days=9)).timestamp()),
    }
    # A restart (a goal's jump) is the same entry: the record keeps the entry's first name, and the new
    # execution's marker says it goes on with that entry.
    env.store.put_item({**_record(env, cid), "goals": ["g1"]})
    assert enroller.stop(cid, "news", "goal g1 met")
    first_at = at
    env.clock.advance(hours=2)
    again = enroller.enrol(cid, "news", EVENT, key="goal:1", resume_at="g1", restart=True)
    arn2 = str(again.execution_arn)
    name2, at2 = arn2.rsplit(":", 1)[-1], env.clock.at.isoformat()
    rec = _record(env, cid)
    assert (rec["entry"], rec["entered_at"], rec["count"], rec["goals"]) == (name, first_at, 1, ["g1"])
    assert rec["progress"] == {**progress, "at": at2, "execution": arn2}
    marker = env.item(cid, f"ENTERED#news#{name2}")
    assert marker is not None and marker[C.GSI1_SK] == f"{at2}#continued#{name}#-#{name2}"
    assert marker["entered_at"] == at2 and marker["execution_arn"] == arn2
    # A second restart still goes on with the entry's first name, not the last execution's.
    assert enroller.stop(cid, "news", "goal g1 met again")
    later = enroller.enrol(cid, "news", EVENT, key="goal:3", resume_at="g1", restart=True)
    name4 = str(later.execution_arn).rsplit(":", 1)[-1]
    assert _record(env, cid)["entry"] == name
    marker = env.item(cid, f"ENTERED#news#{name4}")
    assert marker is not None and marker[C.GSI1_SK] == f"{at2}#continued#{name}#-#{name4}"
    # A restart of a run whose record is gone is an entry of its own.
    env.store.delete_item(contact_pk(cid), "ENROLL#news")
    third = enroller.enrol(cid, "news", EVENT, key="goal:2", resume_at="g1", restart=True)
    name3 = str(third.execution_arn).rsplit(":", 1)[-1]
    assert _record(env, cid)["entry"] == name3 and _record(env, cid)["entered_at"] == at2
    assert _record(env, cid)["count"] == 0 and _record(env, cid)["goals"] == []
    marker = env.item(cid, f"ENTERED#news#{name3}")
    assert marker is not None and marker[C.GSI1_SK] == f"{at2}#entered#-#-#{name3}"


def test_without_a_plan_the_record_has_no_version_and_the_marker_lives_30_days(env: Env) -> None:
    env.machines("news")
    cid = _contact(env)
    got = env.enroller({"other": EntryPlan(version="v7", history_days=9)}).enrol(cid, "news", EVENT, key="k1")
    name = str(got.execution_arn).rsplit(":", 1)[-1]
    assert _record(env, cid)["progress"]["version"] == ""
    marker = env.item(cid, f"ENTERED#news#{name}")
    assert marker is not None and marker[C.TTL_ATTRIBUTE] == int((env.clock.at + timedelta(days=30)).timestamp())


def _described_as(env: Env, arn: str, status: str) -> Any:
    """DescribeExecution answering `status` for execution `arn` (moto runs no definition here, so a run never
    succeeds by itself): what AWS answers once the run has ended so."""

    def answer(parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("executionArn") == arn:
            parsed["status"] = status

    env.sfn.meta.events.register("after-call.sfn.DescribeExecution", answer)
    return answer


def test_a_repeat_of_an_entry_whose_run_succeeded_deletes_the_event_it_put_back(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid, bob = _contact(env), _contact(env, "c-bob")
    first = enroller.enrol(cid, "news", EVENT, key="k1")
    assert enroller.enrol(bob, "news", EVENT, key="k1").started
    carried = json.loads(env.sfn.describe_execution(executionArn=str(first.execution_arn))["input"])["event"]
    env.sfn.stop_execution(executionArn=str(first.execution_arn))  # ended (succeeded, as described below)
    env.store.delete_item(contact_pk(cid), carried["stored"])  # the router's execution_ended deleted it
    answer = _described_as(env, str(first.execution_arn), "SUCCEEDED")
    try:
        again = enroller.enrol(cid, "news", EVENT, key="k1", reentry=Reentry(mode="always"))
    finally:
        env.sfn.meta.events.unregister("after-call.sfn.DescribeExecution", answer)
    assert (again.started, again.execution_arn, again.reason) == (False, None, DUPLICATE)
    assert env.item(cid, carried["stored"]) is None  # put back by the claim, deleted again
    assert env.item(bob, carried["stored"]) is not None  # another contact's, of the same workflow and key
    assert "claim" not in _record(env, cid)


def _forget_opening_waits(env: Env, cid: str) -> None:
    """As if the first try had stopped before writing its opening waits' records."""
    for h in env.store.query_prefix(contact_pk(cid), "HIST#", live_only=False):
        env.store.delete_item(contact_pk(cid), h[C.SK])


def test_a_repeat_of_a_running_start_writes_the_opening_waits_the_first_try_did_not(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller({"news": entry_plan(OPENS_WITH_WAIT)})
    cid = _contact(env)
    first = enroller.enrol(cid, "news", EVENT, key="k1")
    steps = sorted(h["step"] for h in env.store.query_prefix(contact_pk(cid), "HIST#", live_only=False))
    assert steps == ["first-pause", "second-pause"]
    # StartExecution answering as the first time did (same name and input, still running).
    _forget_opening_waits(env, cid)
    claim = enroller.prepare(cid, "news", EVENT, key="k1", restart=True)
    assert not isinstance(claim, Enrolment) and env.store.transact_failures(claim.writes) is None
    env.clock.at = datetime.now(UTC) + timedelta(minutes=1)
    assert enroller.launch(claim).reason == DUPLICATE
    got = env.store.query_prefix(contact_pk(cid), "HIST#", live_only=False)
    assert sorted(h["step"] for h in got) == steps and {h["execution"] for h in got} == {first.execution_arn}
    # StartExecution refusing it as existing (another input: here the start delay), the run still running.
    _forget_opening_waits(env, cid)
    claim = enroller.prepare(cid, "news", EVENT, key="k1", restart=True, start_delay=60)
    assert not isinstance(claim, Enrolment) and env.store.transact_failures(claim.writes) is None
    assert enroller.launch(claim).reason == DUPLICATE
    got = env.store.query_prefix(contact_pk(cid), "HIST#", live_only=False)
    assert sorted(h["step"] for h in got) == steps and {h["execution"] for h in got} == {first.execution_arn}
    # Ended: nothing is written back.
    _forget_opening_waits(env, cid)
    env.sfn.stop_execution(executionArn=str(first.execution_arn))
    claim = enroller.prepare(cid, "news", EVENT, key="k1", restart=True)
    assert not isinstance(claim, Enrolment) and env.store.transact_failures(claim.writes) is None
    assert enroller.launch(claim).reason == DUPLICATE
    assert env.store.query_prefix(contact_pk(cid), "HIST#", live_only=False) == []


def _start_dated(env: Env, start_date: datetime) -> Any:
    def answer(parsed: dict[str, Any], **_: Any) -> None:
        parsed["startDate"] = start_date

    env.sfn.meta.events.register("after-call.sfn.StartExecution", answer)
    return answer


@pytest.mark.parametrize(
    ("started_us", "repeat"),
    [(500_000, False), (499_000, True)],
    ids=["in-the-millisecond-the-call-began", "a-millisecond-before"],
)
def test_a_start_dated_before_the_millisecond_the_call_began_is_a_repeat(
    env: Env, started_us: int, repeat: bool
) -> None:
    # AWS dates an execution to the millisecond: one dated in the millisecond this call began (or after) is the
    # run this call started; one dated before it was started by an earlier try.
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    env.clock.at = env.clock.at.replace(microsecond=500_499)
    answer = _start_dated(env, env.clock.at.replace(microsecond=started_us))
    try:
        got = enroller.enrol(cid, "news", EVENT, key="k1")
    finally:
        env.sfn.meta.events.unregister("after-call.sfn.StartExecution", answer)
    assert got.started
    entered = env.clock.at.replace(microsecond=started_us) if repeat else env.clock.at
    assert _record(env, cid)["entered_at"] == entered.isoformat()
    assert got.reason == (
        "started (recorded on a repeat: the first try stopped before recording)" if repeat else "started"
    )


def test_a_restart_of_a_record_written_before_entry_names_were_kept_goes_on_with_its_execution(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    first = enroller.enrol(cid, "news", EVENT, key="k1")
    name = str(first.execution_arn).rsplit(":", 1)[-1]
    old = {k: v for k, v in _record(env, cid).items() if k != "entry"}  # as recorded before `entry` existed
    env.store.put_item(old)
    assert enroller.stop(cid, "news", "goal g1 met")
    again = enroller.enrol(cid, "news", EVENT, key="goal:1", resume_at="g1", restart=True)
    name2 = str(again.execution_arn).rsplit(":", 1)[-1]
    assert _record(env, cid)["entry"] == name
    marker = env.item(cid, f"ENTERED#news#{name2}")
    assert marker is not None and marker[C.GSI1_SK] == f"{env.clock.at.isoformat()}#continued#{name}#-#{name2}"


def test_the_opening_waits_records_are_the_step_runners_and_a_campaigns_stage_moves_with_them(env: Env) -> None:
    env.machines("news")
    plan = entry_plan(OPENS_WITH_WAIT)
    enroller = env.enroller({"news": plan})
    cid, bob = _contact(env, campaigns={"news": None}, stages={}), _contact(env, "c-bob")
    got = enroller.enrol(cid, "news", EVENT, key="k1", start_delay=3600)
    arn, name, at = str(got.execution_arn), str(got.execution_arn).rsplit(":", 1)[-1], env.clock.at
    first, second = env.store.query_prefix(contact_pk(cid), "HIST#", live_only=False)
    assert {k: first[k] for k in ("contact_id", "workflow", "version", "execution", "step", "kind", "outcome")} == {
        "contact_id": cid,
        "workflow": "news",
        "version": plan.version,
        "execution": arn,
        "step": "first-pause",
        "kind": "wait",
        "outcome": "waiting",
    }
    assert first[C.SK] == f"HIST#{name}#0000#first-pause" and second[C.SK] == f"HIST#{name}#0000#second-pause"
    assert (
        first["at"] == (at + timedelta(hours=1)).isoformat()
        and second["at"] == (at + timedelta(days=1, hours=1)).isoformat()
    )
    assert first["entered"].startswith(f"{at.isoformat()}|") and second["entered"].startswith(f"{at.isoformat()}|")
    assert first[C.TTL_ATTRIBUTE] == int((at + timedelta(hours=1, days=plan.history_days)).timestamp())
    assert env.metrics[1:] == [("WaitStarted", "news", "first-pause", {}), ("WaitStarted", "news", "second-pause", {})]
    # In the campaign: a stage event per wait (keyed to its visit) and the contact's stage the last of them.
    stages = sorted(
        (e["contact_id"], e["data"]["stage"], e["at"])
        for e in env.store.scan_prefix("EVENT#")
        if e["type"] == C.EVENT_STAGE_ENTERED
    )
    assert stages == [(cid, "first-pause", at.isoformat()), (cid, "second-pause", at.isoformat())]
    assert all(e["data"]["campaign"] == "news" for e in env.store.scan_prefix("EVENT#"))
    profile = env.item(cid, "PROFILE")
    assert profile is not None and profile["campaigns"] == {"news": "second-pause"}
    # Not in the campaign: no stage, no stage events.
    assert enroller.enrol(bob, "news", EVENT, key="k1").started
    assert len(env.store.query_prefix(contact_pk(bob), "HIST#", live_only=False)) == 2
    assert [e for e in env.store.scan_prefix("EVENT#") if e["contact_id"] == bob] == []
    assert "campaigns" not in (env.item(bob, "PROFILE") or {})


def test_a_contact_in_a_campaign_entering_a_workflow_that_opens_with_a_task_keeps_its_stage(env: Env) -> None:
    env.machines("news")
    plain = wf("""
name: news
triggers: [{event: list.subscribed}]
steps: [{id: hello, send_email: {template: hello}}]
""")
    cid = _contact(env, campaigns={"news": "earlier"}, stages={})
    assert env.enroller({"news": entry_plan(plain)}).enrol(cid, "news", EVENT, key="k1").started
    profile = env.item(cid, "PROFILE")
    assert profile is not None and profile["campaigns"] == {"news": "earlier"}
    assert env.store.scan_prefix("EVENT#") == []


def test_a_reentry_starts_with_no_goals_and_a_pinned_restart_records_its_version(env: Env) -> None:
    from shared.enrollment import _Start

    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    first = enroller.enrol(cid, "news", EVENT, key="k1")
    env.store.put_item({**_record(env, cid), "goals": ["g1"]})
    env.sfn.stop_execution(executionArn=str(first.execution_arn))
    assert enroller.enrol(cid, "news", EVENT, key="k2", reentry=Reentry(mode="always")).started
    rec = _record(env, cid)
    assert rec["goals"] == [] and rec["count"] == 2 and "version_arn" not in rec
    # A restart through a version (moto cannot start one: the record is written as launch would, after the start).
    version = MACHINE + ":3"
    start = _Start(cid, "news", confirmed(rec), "g1", 0, True, int(rec["rev"]) + 1, version)
    enroller._record(start, execution_arn(version, "news-restarted"), env.clock.at)
    rec = _record(env, cid)
    assert rec["version_arn"] == version and rec["execution_arn"].endswith(":execution:stepwise-news:news-restarted")


def test_each_run_of_a_campaign_has_its_own_stage_events(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller({"news": entry_plan(OPENS_WITH_WAIT)})
    cid = _contact(env, campaigns={"news": None}, stages={})
    first = enroller.enrol(cid, "news", EVENT, key="k1")
    env.sfn.stop_execution(executionArn=str(first.execution_arn))
    assert enroller.enrol(cid, "news", EVENT, key="k2", reentry=Reentry(mode="always")).started
    stages = [e["data"]["stage"] for e in env.store.scan_prefix("EVENT#") if e["type"] == C.EVENT_STAGE_ENTERED]
    assert sorted(stages) == ["first-pause", "first-pause", "second-pause", "second-pause"]
    assert len(env.store.query_prefix(contact_pk(cid), "HIST#", live_only=False)) == 4


# ---- killing the survivors of the run of HEAD (session 8; docs/mutation.md) ------------------------------------


def _kept_triggers(env: Env, cid: str) -> dict[str, dict[str, Any]]:
    from shared.enrollment import TRIGGER_PREFIX

    got = env.ddb.query(
        TableName=env.store.table,
        KeyConditionExpression="#pk = :pk AND begins_with(#sk, :t)",
        ExpressionAttributeNames={"#pk": C.PK, "#sk": C.SK},
        ExpressionAttributeValues={":pk": {"S": contact_pk(cid)}, ":t": {"S": TRIGGER_PREFIX}},
    )["Items"]
    out = {}
    for raw in got:
        item = env.item(cid, raw[C.SK]["S"])
        assert item is not None
        out[str(item[C.SK])] = item
    return out


def test_each_workflow_and_entry_keeps_its_own_trigger_event_for_400_days(env: Env) -> None:
    from shared.enrollment import TRIGGER_DAYS

    env.machines("news", "promo")
    enroller = env.enroller()
    cid = _contact(env)
    news = enroller.enrol(cid, "news", EVENT, key="k1")
    promo = enroller.enrol(cid, "promo", EVENT, key="k1")  # the same event entering a second workflow
    env.sfn.stop_execution(executionArn=str(news.execution_arn))
    later = {**EVENT, "id": "e2"}
    news2 = enroller.enrol(cid, "news", later, key="k2", reentry=Reentry(mode="always"))
    assert news.started and promo.started and news2.started
    kept = _kept_triggers(env, cid)
    # One item per workflow and entry: a run that succeeds deletes its own (Router.execution_ended), never
    # another workflow's or another entry's.
    assert len(kept) == 3
    by_run = {}
    for arn in (news.execution_arn, promo.execution_arn, news2.execution_arn):
        ref = json.loads(env.sfn.describe_execution(executionArn=str(arn))["input"])["event"]
        assert set(ref) == {"type", "stored"} and ref["type"] == "list.subscribed"
        by_run[arn] = kept[ref["stored"]]
    assert [(i["workflow"], i["event"]) for i in by_run.values()] == [
        ("news", EVENT),
        ("promo", EVENT),
        ("news", later),
    ]
    ttl = int((env.clock.at + timedelta(days=TRIGGER_DAYS)).timestamp())
    assert {i[C.TTL_ATTRIBUTE] for i in kept.values()} == {ttl}


def test_an_event_without_a_contact_or_with_a_key_named_stored_is_kept_whole_too(env: Env) -> None:
    env.machines("news", "promo")
    enroller = env.enroller()
    cid = _contact(env)
    internal = {"id": "e3", "type": "schedule.fired", "data": {"list": "weekly"}}  # no contact: an internal event
    odd = {**EVENT, "stored": "~TRIGGER#not-a-reference"}  # a whole event (it has its contact)
    for workflow, event in (("news", internal), ("promo", odd)):
        got = enroller.enrol(cid, workflow, event, key="k1")
        ref = json.loads(env.sfn.describe_execution(executionArn=str(got.execution_arn))["input"])["event"]
        assert set(ref) == {"type", "stored"} and ref["stored"] != "~TRIGGER#not-a-reference"
        kept = env.item(cid, ref["stored"])
        assert kept is not None and kept["event"] == event and kept["workflow"] == workflow


def test_an_enrolment_has_no_start_delay_unless_given(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    claim = enroller.prepare(cid, "news", EVENT, key="k0")
    assert not isinstance(claim, Enrolment) and claim.start.start_delay == 0
    got = enroller.enrol(cid, "news", EVENT, key="k1")
    assert json.loads(env.sfn.describe_execution(executionArn=str(got.execution_arn))["input"])["start_delay"] == 0


def _enroll_reads(env: Env) -> tuple[list[str], Any]:
    reads: list[str] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        if params["Key"][C.SK]["S"].startswith("ENROLL#"):
            reads.append(params["Key"][C.SK]["S"])

    env.ddb.meta.events.register("before-parameter-build.dynamodb.GetItem", count)
    return reads, count


def test_the_enrolment_item_the_caller_read_saves_the_first_read_and_a_stale_one_is_read_again(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    write_status(env.store, "news", active=True, since=env.clock.at - timedelta(days=1))
    reads, hook = _enroll_reads(env)
    try:
        # A broadcast batch read the contact's item (none): no GetItem of it.
        fresh = _contact(env, "c-new")
        assert enroller.enrol(fresh, "news", EVENT, key="k1", item=None).started
        assert reads == []
        # The caller's read was stale (the contact has a record since): the claim fails, the second try reads.
        cid = _contact(env)
        first = enroller.enrol(cid, "news", EVENT, key="k1")
        env.sfn.stop_execution(executionArn=str(first.execution_arn))
        reads.clear()
        again = enroller.enrol(cid, "news", EVENT, key="k2", item=None, reentry=Reentry(mode="always"))
        assert again.started and again.execution_arn != first.execution_arn
        assert reads == ["ENROLL#news"]
        assert _record(env, cid)["count"] == 2 and _record(env, cid)["rev"] == 2
    finally:
        env.ddb.meta.events.unregister("before-parameter-build.dynamodb.GetItem", hook)


def test_the_workflows_own_reentry_once_refuses_a_second_entry(env: Env) -> None:
    env.machines("news")
    plan = EntryPlan(version="v1", history_days=30, reentry=Reentry(mode="once"))
    enroller = env.enroller({"news": plan})
    cid = _contact(env)
    first = enroller.enrol(cid, "news", EVENT, key="k1")
    env.sfn.stop_execution(executionArn=str(first.execution_arn))
    got = enroller.enrol(cid, "news", EVENT, key="k2")
    assert (got.started, got.execution_arn, got.reason) == (False, None, "entered before and re-entry is once")
    assert len(env.executions("news")) == 1


def test_a_new_entry_after_a_pinned_run_starts_the_newest_version(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    first = enroller.enrol(cid, "news", EVENT, key="k1")
    env.store.put_item({**_record(env, cid), "version_arn": MACHINE + ":3"})  # its run was pinned to version 3
    env.sfn.stop_execution(executionArn=str(first.execution_arn))
    fresh = enroller.prepare(cid, "news", EVENT, key="k2", reentry=Reentry(mode="always"))
    assert not isinstance(fresh, Enrolment)
    assert fresh.machine == enroller.machine_arn("news") and fresh.start.version_arn == ""


def test_a_claim_left_on_the_records_own_run_is_not_recorded_again(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    first = enroller.enrol(cid, "news", EVENT, key="k1")
    rec = _record(env, cid)
    claim = {"key": "k1", "execution_arn": first.execution_arn, "resume_at": "", "at": env.clock.at.isoformat()}
    env.store.put_item({**rec, "claim": claim})
    env.clock.advance(hours=1)
    got = enroller.enrol(cid, "news", EVENT, key="k2")
    assert (got.started, got.execution_arn, got.reason) == (False, first.execution_arn, "already in this workflow")
    after = _record(env, cid)
    assert after["count"] == 1 and after["entered_at"] == rec["entered_at"]
    assert [m[0] for m in env.metrics] == [C.METRIC_ENTERED]


def test_another_keys_started_run_is_recorded_as_the_contacts_next_entry_with_its_opening_waits(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller({"news": entry_plan(OPENS_WITH_WAIT)})
    always = Reentry(mode="always")
    write_status(env.store, "news", active=True, since=env.clock.at - timedelta(days=1))
    for cid, resume_at, step in (("c-ada", "after-goal", "after-goal"), ("c-bob", "", "first-pause")):
        _contact(env, cid)
        earlier = enroller.enrol(cid, "news", EVENT, key="k0", reentry=always)
        env.sfn.stop_execution(executionArn=str(earlier.execution_arn))
        other = enroller.prepare(cid, "news", EVENT, key="other", resume_at=resume_at, reentry=always)
        assert not isinstance(other, Enrolment)
        assert env.store.transact_failures(other.writes) is None  # its writer then stops before recording
        started = env.sfn.start_execution(stateMachineArn=other.machine, name=other.name, input="{}")
        got = enroller.enrol(cid, "news", EVENT, key="k1", reentry=always)
        assert (got.started, got.execution_arn) == (False, started["executionArn"])
        assert got.reason == "already in this workflow"
        rec = _record(env, cid)
        assert rec["execution_arn"] == started["executionArn"] and rec["count"] == 2 and "claim" not in rec
        # Its opening waits, from where its claim said it resumes, dated by its own start (no start delay known).
        opened = [h for h in env.history(cid) if h["execution"] == started["executionArn"]]
        assert opened[0]["step"] == step and opened[0]["at"] == started["startDate"].isoformat()
        assert len(env.executions("news")) == 2 * (1 if cid == "c-ada" else 2)


# set_run_status: an ended run's record and its run index key, one conditional UpdateItem.


def test_an_ended_runs_record_and_index_key_take_its_status(env: Env) -> None:
    from shared.store.run_index import progress_sk, run_index_pk, run_index_sk

    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    first = enroller.enrol(cid, "news", EVENT, key="k1")
    rec = _record(env, cid)
    assert enroller.set_run_status(cid, "news", rec, "completed")
    after = _record(env, cid)
    assert after["status"] == "completed" and after[C.GSI1_PK] == run_index_pk("news", cid)
    assert after[C.GSI1_SK] == progress_sk("completed", rec["progress"], cid)
    assert after["execution_arn"] == first.execution_arn
    # A record written before runs had a progress (none, or an empty one): keyed by its entry time.
    legacy: tuple[dict[str, Any] | None, ...] = (None, {})
    for progress in legacy:
        old = {k: v for k, v in rec.items() if k != "progress"}
        env.store.put_item({**old, **({} if progress is None else {"progress": progress})})
        assert enroller.set_run_status(cid, "news", _record(env, cid), "failed")
        assert _record(env, cid)[C.GSI1_SK] == run_index_sk("failed", rec["entered_at"], cid)
        assert _record(env, cid)[C.GSI1_SK] == f"failed#{rec['entered_at']}#{cid}"
        env.store.put_item(old)


def test_an_ended_status_for_another_run_or_a_record_not_running_changes_nothing(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller()
    cid = _contact(env)
    enroller.enrol(cid, "news", EVENT, key="k1")
    rec = _record(env, cid)
    older = {**rec, "execution_arn": str(rec["execution_arn"]) + "-older"}
    assert enroller.set_run_status(cid, "news", older, "completed") is False
    assert _record(env, cid) == rec
    assert enroller.set_run_status(cid, "news", rec, "completed", expect="stopped") is False
    assert _record(env, cid) == rec
    # Any other error is raised, not read as "not this run".
    broken = Enroller(ContactStore("no-such-table", env.ddb), env.sfn, TEMPLATE)
    with pytest.raises(ClientError) as err:
        broken.set_run_status(cid, "news", rec, "completed")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


def _transactions(env: Env) -> tuple[list[int], Any]:
    calls: list[int] = []

    def count(**_: Any) -> None:
        calls.append(1)

    env.ddb.meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", count)
    return calls, count


def test_another_keys_started_run_once_recorded_decides_the_enrolment_without_a_failed_claim(env: Env) -> None:
    # The item is read again after the other key's run is recorded (one transaction: its record and entry marker):
    # policy then reads that run (still running: refused with no claim written; ended: the claim names the item's
    # revision and goes through at the first try, then the new run's record: three).
    env.machines("news")
    enroller = env.enroller()
    always = Reentry(mode="always")
    write_status(env.store, "news", active=True, since=env.clock.at - timedelta(days=1))
    calls, hook = _transactions(env)
    try:
        for cid, ended in (("c-ada", False), ("c-bob", True)):
            _contact(env, cid)
            other = enroller.prepare(cid, "news", EVENT, key="other", reentry=always)
            assert not isinstance(other, Enrolment)
            assert env.store.transact_failures(other.writes) is None  # its writer then stops before recording
            started = env.sfn.start_execution(stateMachineArn=other.machine, name=other.name, input="{}")
            if ended:
                env.sfn.stop_execution(executionArn=started["executionArn"])
            calls.clear()
            got = enroller.enrol(cid, "news", EVENT, key="k1", reentry=always)
            if ended:
                assert got.started and got.execution_arn != started["executionArn"] and len(calls) == 3
                assert _record(env, cid)["rev"] == 2 and _record(env, cid)["count"] == 2
            else:
                assert (got.started, got.execution_arn) == (False, started["executionArn"]) and len(calls) == 1
    finally:
        env.ddb.meta.events.unregister("before-parameter-build.dynamodb.TransactWriteItems", hook)


def test_the_opening_waits_stage_events_are_keyed_to_the_first_visit_of_each_wait(env: Env) -> None:
    # The same ids as the step runner's for the visit (loop 0 of the execution): a repeat writes none again.
    env.machines("news")
    enroller = env.enroller({"news": entry_plan(OPENS_WITH_WAIT)})
    cid = _contact(env, campaigns={"news": None}, stages={})
    arn = str(enroller.enrol(cid, "news", EVENT, key="k1").execution_arn)
    got = sorted(e["id"] for e in env.store.scan_prefix("EVENT#") if e["type"] == C.EVENT_STAGE_ENTERED)
    want = sorted(
        stable_hash(visit_key(arn, 0, step), C.EVENT_STAGE_ENTERED, json.dumps({"campaign": "news", "stage": step}))
        for step in ("first-pause", "second-pause")
    )
    assert got == want
