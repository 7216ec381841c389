"""A run that starts at a passive step (a first step that waits, a start-at on a wait or an end): no Task runs
before it, so the enroller records it from the workflow's entry plan, at the time the contact reaches it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shared import constants as C
from shared.events import ContactRef
from shared.store.contacts import contact_pk
from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import (
    assert_history_ttl,
    at,
    contact,
    event,
    executions,
    history,
    messages,
    steps,
    workflow,
)

COOL_OFF = f"""
name: cool-off
triggers: [{{event: order.paid, delay: 1h}}]
reentry: {{once_per: 7d}}
steps:
  - id: first-day
    wait: 1d
  - id: until-monday
    wait_until: {{at: "{(DEFAULT_START + timedelta(days=7)).isoformat()}"}}
  - id: review
    send_email: {{template: review-request}}
"""


def test_a_run_that_opens_with_waits_records_each_when_the_contact_reaches_it() -> None:
    with Simulation([workflow(COOL_OFF)]) as sim:
        sim.send(event("o1", "order.paid", {"order_id": "1"}, email="ida@example.com"))
        sim.finish()
        # The trigger's hour of delay comes first; the day's wait starts after it, the date wait after that.
        assert steps(sim, email="ida@example.com") == [
            (at(hours=1), "first-day", "waiting"),
            (at(hours=25), "until-monday", "waiting"),
            (at(days=7), "review", "done"),
        ]
        first, second, _ = history(sim, email="ida@example.com")
        assert first["why"] == f"for 86400s until {at(hours=25)}"
        assert second["why"] == f"until {at(days=7)}"
        (run,) = executions(sim, "cool-off")
        assert {h["execution"] for h in history(sim, email="ida@example.com")} == {run["executionArn"]}
        assert {h["version"] for h in history(sim, email="ida@example.com")} == {sim.enroller.plans["cool-off"].version}
        assert_history_ttl(history(sim, email="ida@example.com"))


def test_a_redelivered_event_records_the_opening_wait_once_and_a_re_entry_records_its_own() -> None:
    with Simulation([workflow(COOL_OFF)]) as sim:
        paid = event("o1", "order.paid", {"order_id": "1"}, email="ida@example.com")
        sim.send(paid)
        sim.send(paid)  # the shop's retry of the same delivery
        sim.advance(DEFAULT_START + timedelta(days=8))
        sim.send(event("o2", "order.paid", {"order_id": "2"}, email="ida@example.com"))
        sim.finish()
        opening = [h for h in history(sim, email="ida@example.com") if h["step"] == "first-day"]
        assert [h["at"] for h in opening] == [at(hours=1), at(days=8, hours=1)]
        assert len({h["execution"] for h in opening}) == 2
        assert [t for _, _, t in messages(sim, email="ida@example.com")] == ["review-request", "review-request"]


SERIES = """
name: series
steps:
  - id: part-1
    send_email: {template: part-1}
  - id: pause
    wait: 1d
  - id: part-2
    send_email: {template: part-2}
  - id: check
    if: {has_tag: vip}
    then:
      - id: vip-offer
        send_email: {template: vip-offer}
    else:
      - id: not-vip
        end: not a VIP
"""
HANDOVER = """
name: handover
triggers: [{event: form.submitted}]
steps:
  - id: go
    start_workflow: {workflow: series, at: pause}
"""


def test_start_workflow_at_a_wait_records_the_wait_from_the_step_runner() -> None:
    # The step runner's enroller reads the entry plans file the build puts beside its code.
    with Simulation([workflow(SERIES), workflow(HANDOVER)]) as sim:
        sim.send(event("f1", "form.submitted", {"form": "demo"}, email="cy@example.com"))
        sim.finish()
        assert steps(sim, "series", email="cy@example.com") == [
            (at(), "pause", "waiting"),
            (at(days=1), "part-2", "done"),
            (at(days=1), "check", "branch else"),
            (at(days=1), "not-vip", "ended"),
        ]
        assert [t for _, _, t in messages(sim, email="cy@example.com")] == ["part-2"]


def test_a_start_at_an_end_step_records_the_end_and_counts_it() -> None:
    with Simulation([workflow(SERIES)]) as sim:
        dee = sim.store.upsert(ContactRef(email="dee@example.com"))
        assert sim.enroller.enrol(dee, "series", {}, key="restart-1", resume_at="not-vip").started
        sim.finish()
        assert steps(sim, email="dee@example.com") == [(at(), "not-vip", "ended")]
        assert history(sim, email="dee@example.com")[0]["why"] == "not a VIP"
        assert sim.metrics[(C.METRIC_ENDED, "series", "not-vip")] == 1
        (run,) = executions(sim, "series")
        assert run["status"] == "SUCCEEDED"
        # Started at a Task, nothing is recorded ahead: the Task records its own step.
        ed = sim.store.upsert(ContactRef(email="ed@example.com"))
        assert sim.enroller.enrol(ed, "series", {}, key="restart-2", resume_at="part-2").started
        sim.finish()
        assert [s for _, s, _ in steps(sim, email="ed@example.com")] == ["part-2", "check", "not-vip"]
        assert len(sim.store.query_prefix(contact_pk(ed), "HIST#")) == 3


WELCOME = """
name: welcome
triggers: [{event: list.subscribed}]
reentry: always
steps:
  - id: settle-in
    wait: 10m
  - id: hello
    send_email: {template: hello}
"""


@contextmanager
def enrolment_write_fails_once(sim: Simulation) -> Iterator[list[str]]:
    """DynamoDB refuses the first write of an enrolment record (throttled), as a Lambda dying right after
    StartExecution would leave it: the run started, nothing recorded it."""
    refused: list[str] = []

    def confirm_of(params: dict[str, Any]) -> str | None:
        """The ENROLL# key a PutItem, or a transaction's Put, writes whole: the confirm (the claim is an update)."""
        puts = [params] if "Item" in params else [w["Put"] for w in params.get("TransactItems", []) if "Put" in w]
        keys = [p["Item"]["sk"]["S"] for p in puts if p["Item"]["sk"]["S"].startswith("ENROLL#")]
        return keys[0] if keys else None

    def throttle(params: dict[str, Any], model: Any, **_: Any) -> None:
        key = confirm_of(params)
        if not refused and key is not None:
            refused.append(key)
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "throttled"}}, model.name
            )

    events = sim.stack.dynamodb.meta.events
    for op in ("PutItem", "TransactWriteItems"):
        events.register(f"before-parameter-build.dynamodb.{op}", throttle)
    try:
        yield refused
    finally:
        for op in ("PutItem", "TransactWriteItems"):
            events.unregister(f"before-parameter-build.dynamodb.{op}", throttle)


def test_a_delivery_retried_after_the_run_started_but_was_not_recorded_completes_the_enrolment() -> None:
    with Simulation([workflow(WELCOME)]) as sim:
        joined = event("s1", "list.subscribed", {"list": "news"}, email="gil@example.com")
        with enrolment_write_fails_once(sim) as refused, pytest.raises(ClientError, match="throttled"):
            sim.router.handle(joined)
        assert refused == ["ENROLL#welcome"]
        (run,) = executions(sim, "welcome")  # the run is under way, with no enrolment and no history record
        gil = contact(sim, email="gil@example.com")["id"]
        assert sim.enroller.current(gil, "welcome") is None
        sim.advance(DEFAULT_START + timedelta(minutes=2))
        routed = sim.send(joined)  # the provider delivers again
        assert [(r.action, r.why) for r in routed] == [
            ("entered", "started (recorded on a repeat: the first try stopped before recording)")
        ]
        record = sim.enroller.current(gil, "welcome")
        assert record is not None
        assert (record["execution_arn"], record["entered_at"]) == (run["executionArn"], at())
        assert sim.metrics[(C.METRIC_ENTERED, "welcome", C.METRIC_ENTRY_STEP)] == 1
        sim.send(joined)  # and once more, while the run waits: a plain duplicate
        sim.finish()
        assert steps(sim, email="gil@example.com") == [
            (at(), "settle-in", "waiting"),
            (at(minutes=10), "hello", "done"),
        ]
        assert len(executions(sim, "welcome")) == 1
        assert sim.metrics[(C.METRIC_ENTERED, "welcome", C.METRIC_ENTRY_STEP)] == 1
        assert [r.why for _, r, _ in sim.routed if r.workflow == "welcome"][-1] == "already in this workflow"


def test_an_old_delivery_of_a_run_left_long_ago_changes_nothing() -> None:
    with Simulation([workflow(WELCOME)]) as sim:
        first = event("s1", "list.subscribed", {"list": "news"}, email="hal@example.com")
        sim.send(first)
        sim.advance(DEFAULT_START + timedelta(days=1))
        sim.send(event("s2", "list.subscribed", {"list": "news"}, email="hal@example.com"))  # re-entry: always
        sim.advance(DEFAULT_START + timedelta(days=2))  # both runs are over
        hal = contact(sim, email="hal@example.com")["id"]
        latest = sim.enroller.current(hal, "welcome")
        assert latest is not None and latest["entered_at"] == at(days=1)
        routed = sim.send(first)  # two days late, the first delivery again
        assert [r.why for r in routed] == ["duplicate delivery: this execution already exists"]
        assert sim.enroller.current(hal, "welcome") == latest
        sim.finish()
        assert [s for _, s, _ in steps(sim, email="hal@example.com")] == ["settle-in", "hello"] * 2
