"""Exactly once under races and failures: two events for one contact at the same moment, a crash between the
enrolment's claim and StartExecution, a throttled resume, and a burst of events for many contacts."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shared.events import ContactEvent
from shared.routing import ResumeDeferred
from shared.store.contacts import contact_pk
from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import at, contact, event, executions, messages, steps, workflow

ONCE = """
name: once
triggers: [{event: order.paid}]
reentry: once
steps:
  - id: thanks
    send_email: {template: thanks}
"""

WAITER = """
name: waiter
triggers: [{event: checkout.abandoned}]
steps:
  - id: remind
    send_email: {template: cart-reminder}
  - id: wait-for-order
    wait_until:
      event: checkout.completed
      timeout: 2d
      on_timeout:
        - id: gave-up
          end: no order in two days
  - id: thanks
    send_email: {template: thanks}
"""

NEWS = """
name: news
triggers: [{event: list.subscribed}]
steps:
  - id: hello
    send_email: {template: hello}
"""


@contextmanager
def before_call(client: Any, operation: str, action: Any) -> Iterator[list[int]]:
    """Run `action(params)` once, just before the client's next call of `operation` (botocore's event system)."""
    calls: list[int] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        if not calls:
            calls.append(1)
            action(params)

    name = f"before-call.{client.meta.service_model.service_id.hyphenize()}.{operation}"
    client.meta.events.register(name, hook)
    try:
        yield calls
    finally:
        client.meta.events.unregister(name, hook)


def error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, operation)


def test_two_events_for_one_contact_at_the_same_moment_start_one_run_when_reentry_is_once() -> None:
    with Simulation([workflow(ONCE)]) as sim:
        first = event("o1", "order.paid", {"order_id": "1"}, email="ida@example.com")
        second = event("o2", "order.paid", {"order_id": "2"}, email="ida@example.com")
        sim.send(event("s0", "list.subscribed", {"list": "x"}, email="ida@example.com"))  # the contact exists
        inner: list[Any] = []

        # The second event is routed whole between the first's read and its write: both passed the re-entry
        # checks on the same snapshot, and both claim the enrolment.
        with before_call(sim.stack.dynamodb, "TransactWriteItems", lambda _: inner.extend(sim.router.handle(second))):
            outer = sim.router.handle(first)
        sim.finish()
        assert [(r.action, r.why) for r in inner] == [("entered", "started")]
        assert [r.action for r in outer] == ["not entered"]
        assert len(executions(sim, "once")) == 1
        assert [t for _, _, t in messages(sim, email="ida@example.com")] == ["thanks"]


def test_two_threads_routing_events_for_one_contact_start_one_run() -> None:
    with Simulation([workflow(ONCE)]) as sim:
        sim.send(event("s0", "list.subscribed", {"list": "x"}, email="jo@example.com"))
        results: list[str] = []
        barrier = threading.Barrier(2)

        def route(eid: str) -> None:
            barrier.wait()
            results.extend(r.action for r in sim.router.handle(event(eid, "order.paid", {}, email="jo@example.com")))

        threads = [threading.Thread(target=route, args=(f"o{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        sim.finish()
        assert sorted(results) == ["entered", "not entered"]
        assert len(executions(sim, "once")) == 1
        assert len(messages(sim, email="jo@example.com")) == 1


def test_a_crash_between_the_claim_and_start_execution_is_completed_by_the_retry_and_blocks_nobody() -> None:
    with Simulation([workflow(NEWS)]) as sim:
        joined = event("s1", "list.subscribed", {"list": "news"}, email="kim@example.com")

        def crash(_: Any) -> None:
            raise error("ServiceUnavailable", "StartExecution")

        with before_call(sim.stack.sfn, "StartExecution", crash), pytest.raises(ClientError):
            sim.router.handle(joined)
        kim = contact(sim, email="kim@example.com")["id"]
        assert executions(sim, "news") == []
        assert sim.enroller.current(kim, "news") is None  # claimed, not started: no run recorded
        raw = sim.store.get_item(contact_pk(kim), "ENROLL#news")
        assert raw is not None and raw["claim"]["key"] == joined.digest()
        # Another event while the claim is fresh: the enrolment under way is respected.
        other = sim.send(event("s2", "list.subscribed", {"list": "news"}, email="kim@example.com"))
        assert [r.why for r in other] == ["already in this workflow (being entered by another event)"]
        routed = sim.send(joined)  # the queue delivers the first event again
        assert [(r.action, r.why) for r in routed] == [("entered", "started")]
        sim.finish()
        assert len(executions(sim, "news")) == 1
        record = sim.enroller.current(kim, "news")
        assert record is not None and "claim" not in sim.store.get_item(contact_pk(kim), "ENROLL#news")


def test_a_stale_claim_whose_run_never_started_is_taken_over_by_another_event() -> None:
    with Simulation([workflow(NEWS)]) as sim:
        with (
            before_call(sim.stack.sfn, "StartExecution", lambda _: (_ for _ in ()).throw(error("Boom", "Start"))),
            pytest.raises(ClientError),
        ):
            sim.router.handle(event("s1", "list.subscribed", {"list": "news"}, email="lu@example.com"))
        sim.advance(DEFAULT_START + timedelta(hours=1))  # the claim's writer is long gone
        routed = sim.send(event("s2", "list.subscribed", {"list": "news"}, email="lu@example.com"))
        assert [(r.action, r.why) for r in routed] == [("entered", "started")]
        sim.finish()
        assert steps(sim, email="lu@example.com") == [(at(hours=1), "hello", "done")]


def test_a_throttled_resume_records_nothing_and_the_retried_event_resumes_the_run() -> None:
    with Simulation([workflow(WAITER)]) as sim:
        sim.send(event("a1", "checkout.abandoned", {"checkout_id": "k1"}, email="mo@example.com"))
        sim.advance(DEFAULT_START + timedelta(hours=1))
        done = event("c1", "checkout.completed", {"checkout_id": "k1"}, email="mo@example.com")

        def throttle(_: Any) -> None:
            raise error("ThrottlingException", "SendTaskSuccess")

        with before_call(sim.stack.sfn, "SendTaskSuccess", throttle) as calls, pytest.raises(ResumeDeferred):
            sim.router.handle(done)
        assert calls == [1]
        mo = contact(sim, email="mo@example.com")["id"]
        assert len(sim.store.query_prefix(contact_pk(mo), "WAIT#")) == 1  # the wait is intact
        assert [o for _, _, o in steps(sim, email="mo@example.com")] == ["done", "waiting"]  # no "resumed"
        routed = sim.send(done)  # the batch is retried
        assert [(r.action, r.why) for r in routed] == [("resumed", "wait-for-order: event checkout.completed arrived")]
        sim.finish()
        assert steps(sim, email="mo@example.com") == [
            (at(), "remind", "done"),
            (at(), "wait-for-order", "waiting"),
            (at(hours=1), "wait-for-order", "resumed"),
            (at(hours=1), "thanks", "done"),
        ]
        assert sim.store.query_prefix(contact_pk(mo), "WAIT#") == []
        sim.send(done)  # and a late redelivery resumes nothing
        assert [t for _, _, t in messages(sim, email="mo@example.com")] == ["cart-reminder", "thanks"]


def test_a_burst_of_200_events_for_50_contacts_enters_each_contact_in_each_workflow_exactly_once() -> None:
    with Simulation([workflow(ONCE), workflow(NEWS)]) as sim:
        burst: list[ContactEvent] = []
        for i in range(50):
            email = f"p{i}@example.com"
            paid = event(f"o{i}", "order.paid", {"order_id": str(i)}, email=email)
            burst += [
                paid,
                event(f"s{i}", "list.subscribed", {"list": "news"}, email=email),
                paid,  # redelivered
                event(f"o{i}b", "order.paid", {"order_id": f"{i}b"}, email=email),  # a second order: reentry once
            ]
        # All routed before any run moves: every one sees the others' claims, none their runs' ends.
        outcomes = Counter()
        for e in burst:
            outcomes.update(r.action for r in sim.router.handle(e))
        sim.finish()
        assert outcomes == Counter({"entered": 100, "not entered": 100})
        for name in ("once", "news"):
            runs = Counter(e["contact_id"] for e in executions(sim, name))
            assert len(runs) == 50 and set(runs.values()) == {1}, name
        assert sim.summary()["messages_sent"] == 100
