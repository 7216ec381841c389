"""Behaviours of issue 2 on the local stack, as a user sees them: go-to loops end by their bound, event waits
resume or time out (keyed to the same checkout), splits share contacts out, goals jump ahead, resume_at starts
at a step, and a retried step does its side effects once."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from moto.awslambda.models import LambdaFunction
from moto.core.exceptions import JsonRESTError

from shared import constants as C
from shared.events import ContactEvent, ContactRef
from shared.store.contacts import contact_pk
from shared.workflow.compiler import compile_workflow
from shared.workflow.cost import analyse
from stepwise.simulate import Simulation
from tests.integration.support import NAG as SUPPORT_NAG
from tests.integration.support import (
    advance,
    assert_history_ttl,
    at,
    contact,
    event,
    executions,
    history,
    messages,
    run_in_order,
    states_entered,
    steps,
    timed,
    workflow,
)

# ---- go-to loops -------------------------------------------------------------------------------

NAG = SUPPORT_NAG % 3


def test_goto_loop_ends_cleanly_at_the_bound_with_the_reason_recorded() -> None:
    with Simulation([workflow(NAG)]) as sim:
        run_in_order(
            sim,
            [
                timed(timedelta(0), "s1", "list.subscribed", {"list": "trial"}, email="ana@example.com"),
                timed(timedelta(0), "s2", "list.subscribed", {"list": "trial"}, email="bo@example.com"),
                timed(timedelta(days=1, hours=12), "t1", "tag.added", {"tag": "Purchased"}, email="bo@example.com"),
                timed(timedelta(0), "s3", "list.subscribed", {"list": "trial"}, email="cy@example.com"),
                timed(timedelta(days=3, hours=12), "t2", "tag.added", {"tag": "Purchased"}, email="cy@example.com"),
            ],
        )
        # Ana never buys: the first email and one per jump the bound allows (3), a day apart, then the run ends.
        assert messages(sim, email="ana@example.com") == [(at(days=d), "email", "come-back") for d in range(4)]
        ana = steps(sim, email="ana@example.com")
        assert [s for _, s, _ in ana].count("bought") == 4
        assert ana[-2:] == [(at(days=4), "bought", "branch else"), (at(days=4), "loop-limit", "ended")]
        (limit,) = [h for h in history(sim, email="ana@example.com") if h["step"] == "loop-limit"]
        assert limit["why"] == "go-to jumped 3 times (settings.max_loops)"
        (run,) = [e for e in executions(sim, "nag") if e["contact_id"] == contact(sim, email="ana@example.com")["id"]]
        assert run["status"] == "SUCCEEDED"
        assert states_entered(sim, run["executionArn"])[-1] == "LoopLimitReached"
        assert json.loads(run["output"])["error"]["Error"] == "LoopLimitReached"
        # Bo bought during the second day: the loop is left through the other branch, well within the bound.
        assert messages(sim, email="bo@example.com") == [(at(days=d), "email", "come-back") for d in range(2)]
        assert steps(sim, email="bo@example.com")[-2:] == [
            (at(days=2), "bought", "branch then"),
            (at(days=2), "stop", "ended"),
        ]
        assert "loop-limit" not in [s for _, s, _ in steps(sim, email="bo@example.com")]
        assert_history_ttl(history(sim, email="ana@example.com") + history(sim, email="bo@example.com"))
        # `stepwise cost`'s ceiling is what the dearest contact pays: Cy, who buys in the last turn the bound
        # allows. Ana, stopped by the bound, pays less.
        report = analyse(compile_workflow(workflow(NAG), "arn:aws:lambda:::function:x"), max_loops=3)
        by_contact = {e["contact_id"]: len(states_entered(sim, e["executionArn"])) for e in executions(sim, "nag")}
        cost_of = {who: by_contact[contact(sim, email=f"{who}@example.com")["id"]] for who in ("ana", "bo", "cy")}
        assert report.ceiling == 18 == cost_of["cy"]
        assert cost_of["ana"] == 17 and cost_of["bo"] == 10


def test_the_loop_bound_defaults_to_100() -> None:
    assert workflow(NAG.replace("settings: {max_loops: 3}\n", "")).settings.max_loops == 100


# ---- wait until an event ------------------------------------------------------------------------

CART = """
name: cart
triggers: [{event: checkout.abandoned}]
reentry: always
steps:
  - id: remind
    send_email: {template: cart-reminder}
  - id: wait-for-order
    wait_until:
      event: checkout.completed
      same: [checkout_id]
      timeout: 2d
      on_timeout:
        - id: last-chance
          send_email: {template: last-chance}
        - id: gave-up
          end: no order in two days
  - id: thanks
    send_email: {template: thanks}
"""


def test_wait_until_event_resumes_on_the_event_for_the_same_checkout_only() -> None:
    with Simulation([workflow(CART)]) as sim:
        sim.send(event("a1", "checkout.abandoned", {"checkout_id": "k1"}, email="ana@example.com"))
        advance(sim, hours=5)
        # An order for another checkout of Ana's does not end the wait for this one.
        sim.send(event("a2", "checkout.completed", {"checkout_id": "k9"}, email="ana@example.com"))
        assert steps(sim, email="ana@example.com") == [
            (at(), "remind", "done"),
            (at(), "wait-for-order", "waiting"),
        ]
        advance(sim, hours=6)
        sim.send(event("a3", "checkout.completed", {"checkout_id": "k1"}, email="ana@example.com"))
        sim.finish()
        assert steps(sim, email="ana@example.com") == [
            (at(), "remind", "done"),
            (at(), "wait-for-order", "waiting"),
            (at(hours=6), "wait-for-order", "resumed"),
            (at(hours=6), "thanks", "done"),
        ]
        assert messages(sim, email="ana@example.com") == [
            (at(), "email", "cart-reminder"),
            (at(hours=6), "email", "thanks"),
        ]
        (run,) = executions(sim, "cart")
        assert run["status"] == "SUCCEEDED"
        assert sim.store.query_prefix(contact_pk(run["contact_id"]), "WAIT#", live_only=False) == []
        assert_history_ttl(history(sim, email="ana@example.com"))


def test_wait_until_event_times_out_at_exactly_the_timeout_into_its_branch() -> None:
    with Simulation([workflow(CART)]) as sim:
        run_in_order(
            sim,
            [
                timed(timedelta(0), "b1", "checkout.abandoned", {"checkout_id": "k2"}, email="bo@example.com"),
                # Another contact's order with the same checkout id is not Bo's.
                timed(timedelta(hours=1), "c1", "checkout.completed", {"checkout_id": "k2"}, email="cy@example.com"),
            ],
        )
        assert steps(sim, email="bo@example.com") == [
            (at(), "remind", "done"),
            (at(), "wait-for-order", "waiting"),
            (at(days=2), "wait-for-order", "timed out"),
            (at(days=2), "last-chance", "done"),
            (at(days=2), "gave-up", "ended"),
        ]
        (timed_out,) = [h for h in history(sim, email="bo@example.com") if h["outcome"] == "timed out"]
        assert "checkout.completed" in timed_out["why"]
        assert messages(sim, email="bo@example.com") == [
            (at(), "email", "cart-reminder"),
            (at(days=2), "email", "last-chance"),
        ]
        (run,) = executions(sim, "cart")
        assert run["status"] == "SUCCEEDED"
        (timeout,) = [e for e in sim.stack.history(run["executionArn"]) if e["type"] == "TaskTimedOut"]
        assert timeout["timestamp"].isoformat() == at(days=2)
        assert_history_ttl(history(sim, email="bo@example.com"))


def test_wait_until_event_keyed_to_a_nested_field_of_the_trigger() -> None:
    keyed = CART.replace("name: cart", "name: cart-nested").replace("same: [checkout_id]", "same: [cart.id]")
    with Simulation([workflow(keyed)]) as sim:
        sim.send(event("a1", "checkout.abandoned", {"cart": {"id": "k1", "value": 80}}, email="ana@example.com"))
        advance(sim, hours=1)
        sim.send(event("a2", "checkout.completed", {"cart": {"id": "k9"}}, email="ana@example.com"))
        advance(sim, hours=2)
        sim.send(event("a3", "checkout.completed", {"cart": {"id": "k1"}}, email="ana@example.com"))
        sim.finish()
        assert steps(sim, email="ana@example.com")[2:] == [
            (at(hours=2), "wait-for-order", "resumed"),
            (at(hours=2), "thanks", "done"),
        ]


UNTIL_BOUGHT = """
name: until-bought
triggers: [{event: checkout.abandoned}]
steps:
  - id: hold
    wait_until:
      condition: {has_tag: Purchased}
      timeout: 2d
      on_timeout:
        - id: last-chance
          send_email: {template: last-chance}
  - id: thanks
    send_email: {template: thanks}
"""


def test_wait_until_a_condition_resumes_when_it_holds_already_later_or_times_out() -> None:
    with Simulation([workflow(UNTIL_BOUGHT)]) as sim:
        cart = {"checkout_id": "k1"}
        run_in_order(
            sim,
            [
                timed(timedelta(0), "a0", "tag.added", {"tag": "Purchased"}, email="ana@example.com"),
                timed(timedelta(0), "a1", "checkout.abandoned", cart, email="ana@example.com"),
                timed(timedelta(0), "b1", "checkout.abandoned", cart, email="bo@example.com"),
                timed(timedelta(hours=5), "b2", "tag.added", {"tag": "Purchased"}, email="bo@example.com"),
                timed(timedelta(0), "c1", "checkout.abandoned", cart, email="cy@example.com"),
            ],
        )
        assert steps(sim, email="ana@example.com") == [
            (at(), "hold", "waiting"),
            (at(), "hold", "resumed"),
            (at(), "thanks", "done"),
        ]
        assert steps(sim, email="bo@example.com") == [
            (at(), "hold", "waiting"),
            (at(hours=5), "hold", "resumed"),
            (at(hours=5), "thanks", "done"),
        ]
        assert steps(sim, email="cy@example.com") == [
            (at(), "hold", "waiting"),
            (at(days=2), "hold", "timed out"),
            (at(days=2), "last-chance", "done"),
            (at(days=2), "thanks", "done"),
        ]
        assert_history_ttl(history(sim, email="ana@example.com") + history(sim, email="bo@example.com"))


# ---- split --------------------------------------------------------------------------------------

SPLIT = """
name: subject-test
triggers: [{event: list.subscribed}]
reentry: always
steps:
  - id: test
    split:
      - name: short
        percent: 30
        steps:
          - id: offer-short
            send_email: {template: offer, subject: 20% off}
      - name: long
        percent: 70
        steps:
          - id: offer-long
            send_email: {template: offer, subject: Your 20% discount is waiting}
"""
CONTACTS = 100


def test_split_sends_about_the_stated_share_down_each_path_and_a_contact_always_the_same_way() -> None:
    with Simulation([workflow(SPLIT)]) as sim:
        for i in range(CONTACTS):
            sim.send(event(f"s{i}", "list.subscribed", {"list": "news"}, email=f"c{i}@example.com"))
        contacts = sim.summary()["contacts"]
        subjects = Counter(tuple(m["subject"] for m in c["messages"]) for c in contacts)
        # Every contact got exactly one of the two emails; 30% of 100 is 30 give or take two standard deviations.
        assert set(subjects) == {("20% off",), ("Your 20% discount is waiting",)}
        assert subjects[("20% off",)] + subjects[("Your 20% discount is waiting",)] == CONTACTS
        assert 21 <= subjects[("20% off",)] <= 39
        # Entering again, a contact goes down the path it went down before: the split is a hash, not a dice.
        again = contacts[::10]
        for c in again:
            sim.send(event(f"again-{c['id']}", "list.subscribed", {"list": "news"}, email=c["email"]))
        for c in again:
            path = "offer-short" if c["messages"][0]["subject"] == "20% off" else "offer-long"
            decisions = [h["branch"] for h in sim.store.history(c["id"]) if h["step"] == "test"]
            assert decisions == [path.removeprefix("offer-")] * 2
            assert [m["step"] for m in sim.store.messages(c["id"])] == [path, path]
        assert len(sim.execution_arns("subject-test")) == CONTACTS + len(again)


# ---- goal ---------------------------------------------------------------------------------------

ONBOARDING = """
name: onboarding
triggers: [{event: list.subscribed, where: {list: trial}}]
steps:
  - id: hello
    send_email: {template: hello}
  - id: three-days
    wait: 3d
  - id: tips
    send_email: {template: tips}
  - id: two-more-days
    wait: 2d
  - id: bought
    goal: {event: order.paid, otherwise: end}
  - id: thanks
    send_email: {template: thanks}
  - id: mark-customer
    add_tag: customer
"""


def test_goal_met_during_a_wait_jumps_straight_to_the_goal_skipping_the_steps_between() -> None:
    with Simulation([workflow(ONBOARDING)]) as sim:
        run_in_order(
            sim,
            [
                timed(timedelta(0), "a1", "list.subscribed", {"list": "trial"}, email="ana@example.com"),
                timed(timedelta(0), "b1", "list.subscribed", {"list": "trial"}, email="bo@example.com"),
                timed(timedelta(days=1), "a2", "order.paid", {"order_id": "o1", "total": 30}, email="ana@example.com"),
            ],
        )
        # Ana paid on day 1 of the 3-day wait: at that moment she is at the goal and carries on after it.
        assert steps(sim, email="ana@example.com") == [
            (at(), "hello", "done"),
            (at(), "three-days", "waiting"),
            (at(days=1), "bought", "reached"),
            (at(days=1), "thanks", "done"),
            (at(days=1), "mark-customer", "done"),
        ]
        assert messages(sim, email="ana@example.com") == [(at(), "email", "hello"), (at(days=1), "email", "thanks")]
        assert contact(sim, email="ana@example.com")["tags"] == ["customer"]
        ana = contact(sim, email="ana@example.com")["id"]
        runs = sorted((e["status"], states_entered(sim, e["executionArn"])) for e in executions(sim, "onboarding")
                      if e["contact_id"] == ana)  # fmt: skip
        # The waiting run was stopped; the goal's run entered at the goal: no tips, no second wait.
        assert runs == [
            ("ABORTED", ["Entry", "hello", "three-days"]),
            ("SUCCEEDED", ["Entry", "bought", "bought.branch", "thanks"]),
        ]
        # Bo never paid: the whole way through, and the goal's `otherwise: end` ends his run there.
        assert steps(sim, email="bo@example.com") == [
            (at(), "hello", "done"),
            (at(), "three-days", "waiting"),
            (at(days=3), "tips", "done"),
            (at(days=3), "two-more-days", "waiting"),
            (at(days=5), "bought", "not reached"),
        ]
        assert [t for _, _, t in messages(sim, email="bo@example.com")] == ["hello", "tips"]
        assert_history_ttl(history(sim, email="ana@example.com") + history(sim, email="bo@example.com"))


WAIT_FOR_VISIT = """
name: browse-then-buy
triggers: [{event: checkout.abandoned}]
steps:
  - id: remind
    send_email: {template: cart-reminder}
  - id: wait-for-visit
    wait_until: {event: page.visited, timeout: 3d}
  - id: nudge
    send_email: {template: nudge}
  - id: bought
    goal: {event: order.paid}
  - id: thanks
    send_email: {template: thanks}
"""


def test_goal_met_during_an_event_wait_leaves_nothing_behind_for_that_event() -> None:
    with Simulation([workflow(WAIT_FOR_VISIT)]) as sim:
        sim.send(event("a1", "checkout.abandoned", {"checkout_id": "k1"}, email="ana@example.com"))
        advance(sim, hours=2)
        sim.send(event("a2", "order.paid", {"order_id": "o1"}, email="ana@example.com"))
        advance(sim, hours=3)
        # The event the stopped run waited for comes after all: nothing waits for it any more.
        visit = event("a3", "page.visited", {"url": "https://shop.example.com/"}, email="ana@example.com")
        assert sim.send(visit) == []
        sim.finish()
        assert steps(sim, email="ana@example.com") == [
            (at(), "remind", "done"),
            (at(), "wait-for-visit", "waiting"),
            (at(hours=2), "bought", "reached"),
            (at(hours=2), "thanks", "done"),
        ]
        assert [t for _, _, t in messages(sim, email="ana@example.com")] == ["cart-reminder", "thanks"]
        assert sorted(e["status"] for e in executions(sim, "browse-then-buy")) == ["ABORTED", "SUCCEEDED"]


# ---- resume_at ----------------------------------------------------------------------------------

SERIES = """
name: series
steps:
  - id: part-1
    send_email: {template: part-1}
  - id: tag-1
    add_tag: saw-1
  - id: part-2
    send_email: {template: part-2}
  - id: part-3
    send_email: {template: part-3}
  - id: tag-3
    add_tag: saw-3
  - id: pause
    wait: 1d
  - id: part-4
    send_email: {template: part-4}
"""
HANDOVER = """
name: handover
triggers: [{event: form.submitted}]
steps:
  - id: note
    add_tag: handed-over
  - id: go
    start_workflow: {workflow: series, at: part-3}
"""


def test_start_workflow_at_a_step_runs_none_of_the_steps_before_it() -> None:
    # part-1 to tag-3 are one Task state (consecutive actions merge): the start is inside it.
    with Simulation([workflow(SERIES), workflow(HANDOVER)]) as sim:
        sim.send(event("f1", "form.submitted", {"form": "demo"}, email="cy@example.com"))
        sim.finish()
        assert steps(sim, "series", email="cy@example.com") == [
            (at(), "part-3", "done"),
            (at(), "tag-3", "done"),
            (at(), "pause", "waiting"),
            (at(days=1), "part-4", "done"),
        ]
        assert messages(sim, email="cy@example.com") == [(at(), "email", "part-3"), (at(days=1), "email", "part-4")]
        assert contact(sim, email="cy@example.com")["tags"] == ["handed-over", "saw-3"]
        (run,) = executions(sim, "series")
        assert json.loads(run["input"])["run"]["resume_at"] == "part-3"
        assert_history_ttl(history(sim, email="cy@example.com"))


def test_enrol_with_resume_at_a_wait_starts_with_that_wait() -> None:
    with Simulation([workflow(SERIES)]) as sim:
        dee = sim.store.upsert(ContactRef(email="dee@example.com"))
        started = sim.enroller.enrol(dee, "series", {}, key="restart-1", resume_at="pause")
        assert started.started
        sim.finish()
        assert steps(sim, email="dee@example.com") == [(at(), "pause", "waiting"), (at(days=1), "part-4", "done")]
        assert messages(sim, email="dee@example.com") == [(at(days=1), "email", "part-4")]
        assert contact(sim, email="dee@example.com")["tags"] == []


# ---- retries ------------------------------------------------------------------------------------

SIGNUP = """
name: signup
triggers: [{event: form.submitted}]
steps:
  - id: welcome
    send_email: {template: welcome}
  - id: engaged
    adjust_score: 10
  - id: mark
    add_tag: signed-up
  - id: hot
    if: {score: {gte: 10}}
    then:
      - id: alert
        notify: {to: [sales@example.com], subject: New hot sign-up}
"""


def side_effects(sim: Simulation, email: str) -> dict[str, Any]:
    c = contact(sim, email=email)
    return {
        "score": c["score"],
        "tags": c["tags"],
        "messages": sorted(t for _, _, t in messages(sim, email=email)),
        "records": Counter(h["step"] for h in history(sim, email=email)),
    }


ONCE = {
    "score": 10,
    "tags": ["signed-up"],
    "messages": ["New hot sign-up", "welcome"],
    "records": Counter({"welcome": 1, "engaged": 1, "mark": 1, "hot": 1, "alert": 1}),
}


def test_a_step_invoked_again_with_the_same_payload_does_nothing_twice() -> None:
    with Simulation([workflow(SIGNUP)]) as sim:
        sim.send(event("f1", "form.submitted", {"form": "demo"}, email="eve@example.com"))
        assert side_effects(sim, "eve@example.com") == ONCE
        (run,) = executions(sim, "signup")
        scheduled = [
            json.loads(e["taskScheduledEventDetails"]["parameters"])
            for e in sim.stack.history(run["executionArn"])
            if e["type"] == "TaskScheduled"
        ]
        assert [len(p["Payload"].get("steps") or [p["Payload"]["step"]]) for p in scheduled] == [3, 1, 1]
        # What a redelivered invocation or a retry after a lost response does: the exact payload, again.
        for params in scheduled:
            for _ in range(2):
                payload = json.dumps(params["Payload"])
                answer = sim.stack.lambda_.invoke(FunctionName=params["FunctionName"], Payload=payload)
                assert "FunctionError" not in answer
        assert side_effects(sim, "eve@example.com") == ONCE


class LambdaServiceException(JsonRESTError):
    code = 500

    def __init__(self) -> None:
        super().__init__("ServiceException", "the function ran but its response was lost")


@contextmanager
def response_lost_once(step_id: str) -> Iterator[list[str]]:
    """Lambda fails the first invocation of the Task that performs `step_id` after the function has run (AWS
    reports it as Lambda.ServiceException); later invocations answer normally. Yields the failures injected."""
    current = LambdaFunction.invoke  # the local stack's in-process invoke
    failed: list[str] = []

    def invoke(self: LambdaFunction, body: Any, request_headers: Any, response_headers: Any) -> Any:
        answer = current(self, body, request_headers, response_headers)
        request = json.loads(body)
        ids = [s["id"] for s in request.get("steps") or [request.get("step") or {}]]
        if step_id in ids and not failed:
            failed.append(step_id)
            raise LambdaServiceException()
        return answer

    LambdaFunction.invoke = invoke  # type: ignore[method-assign]
    try:
        yield failed
    finally:
        LambdaFunction.invoke = current  # type: ignore[method-assign]


def test_a_step_retried_by_the_state_machine_after_a_lambda_error_does_its_side_effects_once() -> None:
    with Simulation([workflow(SIGNUP)]) as sim:
        with response_lost_once("engaged") as failed:
            sim.send(event("f1", "form.submitted", {"form": "demo"}, email="fay@example.com"))
            sim.finish()
        assert failed == ["engaged"]
        (run,) = executions(sim, "signup")
        assert run["status"] == "SUCCEEDED"
        events = sim.stack.history(run["executionArn"])
        errors = [e["taskFailedEventDetails"]["error"] for e in events if e["type"] == "TaskFailed"]
        assert errors == ["Lambda.ServiceException"]
        # The Task holding welcome, engaged and mark ran twice; everything it does happened once.
        assert len([e for e in events if e["type"] == "TaskScheduled"]) == 3 + 1
        assert states_entered(sim, run["executionArn"]) == ["Entry", "welcome", "hot", "hot.branch", "alert"]
        assert side_effects(sim, "fay@example.com") == ONCE


VIP = """
name: vip
triggers: [{event: form.submitted}]
steps:
  - id: is-vip
    if: {has_tag: VIP}
    then:
      - id: vip-offer
        send_email: {template: vip-offer}
    else:
      - id: standard-offer
        send_email: {template: standard-offer}
"""


def test_a_decision_invoked_again_after_the_contact_changed_keeps_the_branch_it_recorded() -> None:
    with Simulation([workflow(VIP)]) as sim:
        sim.send(event("f1", "form.submitted", {"form": "demo"}, email="gil@example.com"))
        sim.send(event("t1", "tag.added", {"tag": "VIP"}, email="gil@example.com"))
        (run,) = executions(sim, "vip")
        (decide, *_) = [
            json.loads(e["taskScheduledEventDetails"]["parameters"])
            for e in sim.stack.history(run["executionArn"])
            if e["type"] == "TaskScheduled"
        ]
        answer = sim.stack.lambda_.invoke(FunctionName=decide["FunctionName"], Payload=json.dumps(decide["Payload"]))
        # Gil is a VIP now, but the decision was made (and recorded) before: a retry goes the recorded way.
        assert json.loads(answer["Payload"].read())["branch"] == "else"
        assert steps(sim, email="gil@example.com") == [
            (at(), "is-vip", "branch else"),
            (at(), "standard-offer", "done"),
        ]


# ---- a crash between a step's commit and what it does outside the table ----------------------------

CAMPAIGN = """
name: drip
triggers: [{event: campaign.subscribed}]
steps:
  - id: drip-1
    send_email: {template: drip-1}
"""

JOIN = """
name: join
triggers: [{event: form.submitted}]
steps:
  - id: join-drip
    start_workflow: {workflow: drip}
  - id: hold
    wait_until: {event: order.paid, timeout: 2d}
"""


class ExecutionLimitExceeded(JsonRESTError):
    """Too many open executions in the account: transient, and not an error boto3 retries by itself."""

    code = 400

    def __init__(self) -> None:
        super().__init__("ExecutionLimitExceeded", "The maximum number of running executions has been reached")


@contextmanager
def start_execution_refused_once(workflow_name: str) -> Iterator[list[str]]:
    """Step Functions refuses the first StartExecution of `workflow_name`'s machine (the local stack's own
    start_execution, which it patches, runs for the rest)."""
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    current = StepFunctionsParserBackend.start_execution
    refused: list[str] = []

    def start_execution(self: Any, state_machine_arn: str, *args: Any, **kwargs: Any) -> Any:
        if state_machine_arn.endswith(f"-{workflow_name}") and not refused:
            refused.append(state_machine_arn)
            raise ExecutionLimitExceeded()
        return current(self, state_machine_arn, *args, **kwargs)

    StepFunctionsParserBackend.start_execution = start_execution  # type: ignore[method-assign]
    try:
        yield refused
    finally:
        StepFunctionsParserBackend.start_execution = current  # type: ignore[method-assign]


def test_a_start_refused_after_the_step_committed_is_made_good_by_the_retry() -> None:
    with Simulation([workflow(JOIN), workflow(CAMPAIGN)]) as sim:
        with start_execution_refused_once("drip") as refused:
            sim.send(event("f1", "form.submitted", {"form": "demo"}, email="hal@example.com"))
            advance(sim, minutes=1)  # the retry comes after a few seconds' backoff
        assert len(refused) == 1
        (run,) = executions(sim, "join")
        errors = [
            e["taskFailedEventDetails"]["error"]
            for e in sim.stack.history(run["executionArn"])
            if e["type"] == "TaskFailed"
        ]
        assert errors == ["ExecutionLimitExceeded"]  # the function raised; the machine retried it
        assert len(executions(sim, "drip")) == 1
        ((sent_at, channel, template),) = messages(sim, email="hal@example.com")
        assert (channel, template) == ("email", "drip-1") and at() <= sent_at < at(seconds=30)
        assert [s[1:] for s in steps(sim, "join", email="hal@example.com")] == [
            ("join-drip", "done"),
            ("hold", "waiting"),
        ]


def test_a_retried_wait_keeps_the_token_of_the_attempt_that_is_waiting() -> None:
    with Simulation([workflow(JOIN), workflow(CAMPAIGN)]) as sim:
        sim.send(event("f1", "form.submitted", {"form": "demo"}, email="ivy@example.com"))
        (run,) = executions(sim, "join")
        (wait,) = [
            json.loads(e["taskScheduledEventDetails"]["parameters"])
            for e in sim.stack.history(run["executionArn"])
            if e["type"] == "TaskScheduled" and "waitForTaskToken" in e["taskScheduledEventDetails"]["resource"]
        ]
        cid = contact(sim, email="ivy@example.com")["id"]
        (item,) = sim.store.query_prefix(contact_pk(cid), "WAIT#")
        # A second attempt of the same Task comes with a token of its own: the wait item must follow it.
        again = {**wait["Payload"], "task_token": "token-of-attempt-2"}
        sim.stack.lambda_.invoke(FunctionName=wait["FunctionName"], Payload=json.dumps(again))
        (after,) = sim.store.query_prefix(contact_pk(cid), "WAIT#")
        assert item["token"] != after["token"] == "token-of-attempt-2"
        assert [s for s in steps(sim, "join", email="ivy@example.com") if s[1] == "hold"] == [(at(), "hold", "waiting")]


# ---- message order ------------------------------------------------------------------------------

DRIP = """
name: drip
triggers: [{event: form.submitted}]
steps:
""" + "".join(f"  - id: m{n}\n    send_email: {{template: t{n}}}\n" for n in (5, 3, 9, 1, 7, 2))


def test_messages_of_one_instant_list_in_the_order_the_workflow_sent_them() -> None:
    with Simulation([workflow(DRIP)]) as sim:
        sim.send(event("f1", "form.submitted", {}, email="flo@example.com"))
        sim.finish()
        sent = contact(sim, email="flo@example.com")["messages"]
        assert [m["template"] for m in sent] == ["t5", "t3", "t9", "t1", "t7", "t2"]
        assert {m["at"] for m in sent} == {at()}
        assert sorted(m["message_id"] for m in sent) != [m["message_id"] for m in sent]  # ids alone would not do


# ---- the triggering event, read by conditions evaluated later -------------------------------------

BIG_CART = """
name: big-cart
triggers: [{event: checkout.abandoned}]
steps:
  - id: hold
    wait_until:
      condition: {all: [{event_field: cart.value, gt: 50}, {has_tag: Purchased}]}
      timeout: 2d
      on_timeout:
        - id: nudge
          send_email: {template: nudge}
  - id: thanks
    send_email: {template: big-thanks}
"""


def test_a_wait_condition_on_the_triggering_event_holds_when_the_contact_data_changes_later() -> None:
    with Simulation([workflow(BIG_CART)]) as sim:
        run_in_order(
            sim,
            [
                timed(timedelta(0), "c1", "checkout.abandoned", {"cart": {"value": 80}}, email="big@example.com"),
                timed(timedelta(0), "c2", "checkout.abandoned", {"cart": {"value": 30}}, email="small@example.com"),
                timed(timedelta(hours=3), "t1", "tag.added", {"tag": "Purchased"}, email="big@example.com"),
                timed(timedelta(hours=3), "t2", "tag.added", {"tag": "Purchased"}, email="small@example.com"),
            ],
        )
        # The wait kept cart.value of the checkout that started it: 80 passes, 30 does not.
        assert messages(sim, email="big@example.com") == [(at(hours=3), "email", "big-thanks")]
        assert messages(sim, email="small@example.com") == [
            (at(days=2), "email", "nudge"),
            (at(days=2), "email", "big-thanks"),
        ]


GOAL_BY_CART = """
name: upsell
triggers: [{event: order.paid}]
steps:
  - id: pitch
    send_email: {template: pitch}
  - id: pause
    wait: 3d
  - id: pitch-again
    send_email: {template: pitch-2}
  - id: bought-big
    goal: {condition: {all: [{event_field: total, gte: 100}, {has_tag: upgraded}]}, otherwise: end}
  - id: welcome-pro
    send_email: {template: welcome-pro}
"""


def test_a_goal_condition_reads_the_runs_own_triggering_event() -> None:
    with Simulation([workflow(GOAL_BY_CART)]) as sim:
        run_in_order(
            sim,
            [
                timed(timedelta(0), "o1", "order.paid", {"order_id": "1", "total": 120}, email="pro@example.com"),
                timed(timedelta(0), "o2", "order.paid", {"order_id": "2", "total": 40}, email="lite@example.com"),
                timed(timedelta(days=1), "u1", "tag.added", {"tag": "upgraded"}, email="pro@example.com"),
                timed(timedelta(days=1), "u2", "tag.added", {"tag": "upgraded"}, email="lite@example.com"),
            ],
        )
        assert [t for _, _, t in messages(sim, email="pro@example.com")] == ["pitch", "welcome-pro"]
        assert [t for _, _, t in messages(sim, email="lite@example.com")] == ["pitch", "pitch-2"]


# ---- provider status events learn what the message was --------------------------------------------

PROMO = """
name: promo
triggers: [{event: list.subscribed}]
steps:
  - id: spring-sms
    send_sms: {template: spring-offer, campaign: spring-sale}
"""
FALLBACK = """
name: fallback
triggers: [{event: sms.not_delivered, where: {campaign: spring-sale, step: spring-sms}}]
steps:
  - id: by-email
    send_email: {template: spring-offer-email}
"""


def test_a_delivery_report_naming_only_the_message_id_matches_a_trigger_on_its_campaign() -> None:
    with Simulation([workflow(PROMO), workflow(FALLBACK)]) as sim:
        sim.send(event("s1", "list.subscribed", {"list": "news"}, email="ivo@example.com", phone="+393471234567"))
        (sms,) = contact(sim, email="ivo@example.com")["messages"]
        # The SMS provider's report carries its own reason and our message id, nothing about the campaign.
        report = {"message_id": sms["message_id"], "reason": "unreachable"}
        routed = sim.send(event("dlr-1", "sms.not_delivered", report, phone="+393471234567"))
        assert [(r.workflow, r.action) for r in routed] == [("fallback", "entered")]
        sim.finish()
        assert [t for _, _, t in messages(sim, email="ivo@example.com")] == ["spring-offer", "spring-offer-email"]
        (act,) = [
            a
            for a in sim.store.activity(contact(sim, email="ivo@example.com")["id"])
            if a["type"] == "sms.not_delivered"
        ]
        assert act["data"] == {
            **report,
            "template": "spring-offer",
            "campaign": "spring-sale",
            "workflow": "promo",
            "step": "spring-sms",
        }
        # A report on a message we never sent is routed as it came.
        routed = sim.send(event("dlr-2", "sms.not_delivered", {"message_id": "m-unknown"}, phone="+393471234567"))
        assert [(r.workflow, r.action) for r in routed] == [("fallback", "not entered")]


# ---- a start by another workflow keeps to the target's re-entry policy ---------------------------------

ONE_TIME_COURSE = """
name: course
reentry: once
steps:
  - id: lesson-1
    send_email: {template: lesson-1}
"""
MONTHLY_DIGEST = """
name: digest
reentry: {once_per: 30d}
steps:
  - id: digest
    send_email: {template: digest}
"""
ENROLLER = """
name: sign-up
triggers: [{event: form.submitted}]
reentry: always
steps:
  - id: join
    subscribe: {campaign: course}
  - id: digest-too
    start_workflow: {workflow: digest}
"""


def test_subscribe_and_start_workflow_keep_to_the_target_workflows_reentry() -> None:
    with Simulation([workflow(ONE_TIME_COURSE), workflow(MONTHLY_DIGEST), workflow(ENROLLER)]) as sim:
        run_in_order(
            sim,
            [
                timed(timedelta(0), "f1", "form.submitted", {"form": "a"}, email="jo@example.com"),
                timed(timedelta(days=2), "f2", "form.submitted", {"form": "b"}, email="jo@example.com"),
                timed(timedelta(days=40), "f3", "form.submitted", {"form": "c"}, email="jo@example.com"),
            ],
        )
        # The course once only; the digest again once its 30 days have passed. (The day-0 emails' records are
        # past their 30-day TTL by day 40: the executions tell.)
        starts = {
            wf: sorted(e["startDate"].date().isoformat() for e in executions(sim, wf)) for wf in ("course", "digest")
        }
        assert starts == {"course": ["2026-11-30"], "digest": ["2026-11-30", "2027-01-09"]}
        assert messages(sim, email="jo@example.com") == [(at(days=40), "email", "digest")]
        assert len(executions(sim, "sign-up")) == 3


# ---- a goal already met ---------------------------------------------------------------------------

ONBOARD = """
name: onboard
triggers: [{event: form.submitted}]
steps:
  - id: intro
    send_email: {template: intro}
  - id: pause
    wait: 1d
  - id: case-study
    send_email: {template: case-study}
  - id: customer
    goal: {condition: {has_tag: customer}}
  - id: thanks
    send_email: {template: thanks}
  - id: later
    wait: 7d
  - id: review
    send_email: {template: review}
"""


def test_a_contact_meeting_the_goal_on_entry_starts_at_the_goal() -> None:
    with Simulation([workflow(ONBOARD)]) as sim:
        run_in_order(
            sim,
            [
                timed(timedelta(0), "t1", "tag.added", {"tag": "customer"}, email="kim@example.com"),
                timed(timedelta(hours=1), "f1", "form.submitted", {"form": "demo"}, email="kim@example.com"),
            ],
        )
        assert [t for _, _, t in messages(sim, email="kim@example.com")] == ["thanks", "review"]
        assert steps(sim, email="kim@example.com")[0] == (at(hours=1), "customer", "reached")
        (entered,) = [r for _, r, _ in sim.routed if r.workflow == "onboard"]
        assert entered.why == "started at goal customer: goal condition has tag 'customer' already met"


def test_a_goal_reached_in_the_flow_is_not_jumped_to_again_by_later_events() -> None:
    with Simulation([workflow(ONBOARD)]) as sim:
        run_in_order(
            sim,
            [
                timed(timedelta(0), "f1", "form.submitted", {"form": "demo"}, email="lee@example.com"),
                timed(timedelta(hours=2), "t1", "tag.added", {"tag": "customer"}, email="lee@example.com"),
                # In the 7-day wait after the goal, more events arrive; the goal still holds.
                timed(timedelta(days=3), "t2", "tag.added", {"tag": "fan"}, email="lee@example.com"),
                timed(timedelta(days=4), "f2", "form.submitted", {"form": "survey"}, email="lee@example.com"),
            ],
        )
        # The tag jumped the run to the goal once (from the wait); nothing after repeats.
        assert [t for _, _, t in messages(sim, email="lee@example.com")] == ["intro", "thanks", "review"]
        assert [r.action for _, r, _ in sim.routed if r.workflow == "onboard"].count("goal") == 1


# ONBOARD from its goal on, with a step before it that tags the contact itself.
SELF_TAG = """
name: self-tag
triggers: [{event: form.submitted}]
steps:
  - id: tag-it
    add_tag: customer
""" + ONBOARD[ONBOARD.index("  - id: customer") :]


def test_a_goal_met_where_the_flow_reaches_it_is_recorded_on_the_run() -> None:
    with Simulation([workflow(SELF_TAG)]) as sim:
        sim.send(event("f1", "form.submitted", {"form": "demo"}, email="max@example.com"))
        # The run's own tag.added reaches the router after the run has passed the goal: no jump back to it.
        sim.finish()
        assert [t for _, _, t in messages(sim, email="max@example.com")] == ["thanks", "review"]
        mx = contact(sim, email="max@example.com")["id"]
        record = sim.enroller.current(mx, "self-tag")
        assert record is not None and record["goals"] == ["customer"]


# ---- contact data an event brings is a field change -------------------------------------------------

MARIO = """
name: ciao-mario
triggers: [{event: field.changed, where: {field: first_name, value: Mario}}]
reentry: always
steps:
  - id: ciao
    send_email: {template: ciao-mario}
"""


def test_a_form_that_sets_first_name_to_mario_triggers_the_field_value_workflow_once() -> None:
    def form(eid: str, first_name: str) -> Any:
        return ContactEvent.model_validate(
            {
                "id": eid,
                "type": "form.submitted",
                "contact": {"email": "mario@example.com", "first_name": first_name},
                "data": {"form": "newsletter"},
            }
        )

    with Simulation([workflow(MARIO)]) as sim:
        routed = sim.send(form("f1", "Mario"))
        assert [(r.workflow, r.action) for r in routed] == [("ciao-mario", "entered")]
        assert sim.send(form("f1", "Mario")) == []  # redelivered: nothing changed
        assert sim.send(form("f2", "Mario")) == []  # the same name again is no change
        routed = sim.send(form("f3", "Luigi"))
        assert [(r.workflow, r.action, r.why) for r in routed] == [
            ("ciao-mario", "not entered", "filter failed: value eq 'Mario'")
        ]
        sim.finish()
        assert [t for _, _, t in messages(sim, email="mario@example.com")] == ["ciao-mario"]
        changes = [
            a["data"]
            for a in sim.store.activity(contact(sim, email="mario@example.com")["id"])
            if a["type"] == "field.changed"
        ]
        assert sorted(changes, key=lambda d: d["value"]) == [
            {"field": "first_name", "value": "Luigi", "previous": "Mario"},
            {"field": "first_name", "value": "Mario", "previous": None},
        ]


# ---- consent ---------------------------------------------------------------------------------------

NEWS = """
name: news
triggers: [{event: form.submitted}]
reentry: always
steps:
  - id: news-email
    send_email: {template: news}
  - id: news-sms
    send_sms: {template: news-sms}
"""


def test_consent_withdrawn_by_an_unsubscribe_or_a_stop_reply_skips_that_channel_until_given_again() -> None:
    who = {"email": "nina@example.com", "phone": "+393471234567"}
    with Simulation([workflow(NEWS)]) as sim:
        run_in_order(
            sim,
            [
                timed(timedelta(0), "f1", "form.submitted", {"form": "a"}, **who),
                timed(timedelta(hours=1), "u1", "email.unsubscribed", {}, email=who["email"]),
                timed(timedelta(hours=1), "s1", "sms.opted_out", {"keyword": "STOP"}, phone=who["phone"]),
                timed(timedelta(hours=2), "f2", "form.submitted", {"form": "b"}, **who),
                timed(timedelta(hours=3), "c1", "consent.given", {"channel": "sms", "source": "prefs"}, **who),
                timed(timedelta(hours=4), "f3", "form.submitted", {"form": "c"}, **who),
            ],
        )
        assert messages(sim, email=who["email"]) == [
            (at(), "email", "news"),
            (at(), "sms", "news-sms"),
            (at(hours=4), "sms", "news-sms"),
        ]
        nina = contact(sim, email=who["email"])["id"]
        skipped = [(h["at"], h["step"], h["why"]) for h in sim.store.history(nina) if h["outcome"] == "skipped"]
        assert skipped == [
            (at(hours=2), "news-email", "contact withdrew email consent"),
            (at(hours=2), "news-sms", "contact withdrew SMS consent"),
            (at(hours=4), "news-email", "contact withdrew email consent"),
        ]
        assert sim.store.get(nina).consent == {"email": False, "sms": True}


# ---- campaigns: the stage a subscriber is at, and completing it -------------------------------------------

COURSE = """
name: course
steps:
  - id: day-0
    wait: 1d
  - id: lesson-1
    send_email: {template: lesson-1}
  - id: day-2
    wait: 1d
  - id: lesson-2
    send_email: {template: lesson-2}
"""
JOIN_COURSE = """
name: join-course
triggers: [{event: form.submitted}]
steps:
  - id: join
    subscribe: {campaign: course}
  - id: one-day-in
    wait: 25h
  - id: where
    if: {in_campaign: course, at_stage: day-2}
    then:
      - id: on-track
        add_tag: on-track
"""
AT_LESSON_1 = """
name: lesson-1-followup
triggers: [{event: campaign.stage_entered, where: {campaign: course, stage: lesson-1}}]
steps:
  - id: poll
    send_sms: {template: how-was-lesson-1}
"""
GRADUATE = """
name: graduate
triggers: [{event: campaign.completed, where: {campaign: course}}]
steps:
  - id: certificate
    send_email: {template: certificate}
"""


def test_a_campaign_tracks_the_subscribers_stage_and_completing_it_triggers_and_ends_the_membership() -> None:
    flows = [workflow(t) for t in (COURSE, JOIN_COURSE, AT_LESSON_1, GRADUATE)]
    with Simulation(flows) as sim:
        sim.send(event("f1", "form.submitted", {"form": "course"}, email="ola@example.com", phone="+393471234567"))
        ola = contact(sim, email="ola@example.com")["id"]
        # The course opens with a wait: the enroller sets the stage as it records it.
        assert sim.store.get(ola).campaigns == {"course": "day-0"}
        advance(sim, days=1, hours=1)
        assert sim.store.get(ola).campaigns == {"course": "day-2"}
        sim.finish()
        assert messages(sim, email="ola@example.com") == [
            (at(days=1), "email", "lesson-1"),
            (at(days=1), "sms", "how-was-lesson-1"),
            (at(days=2), "email", "lesson-2"),
            (at(days=2), "email", "certificate"),
        ]
        assert "on-track" in contact(sim, email="ola@example.com")["tags"]  # the decision saw stage day-2
        assert sim.store.get(ola).campaigns == {}  # completed: no longer in the campaign
        entered = [a["data"]["stage"] for a in sim.store.activity(ola) if a["type"] == "campaign.stage_entered"]
        assert sorted(entered) == sorted(["day-0", "lesson-1", "day-2", "lesson-2"])
        assert [r.why for _, r, _ in sim.routed if r.action == "completed"] == ["campaign completed: its run ended"]


def test_a_workflow_run_without_subscribing_has_no_stage_and_completes_no_campaign() -> None:
    with Simulation([workflow(COURSE), workflow(GRADUATE)]) as sim:
        pia = sim.store.upsert(ContactRef(email="pia@example.com"))
        assert sim.enroller.enrol(pia, "course", {}, key="direct").started
        sim.finish()
        assert [t for _, _, t in messages(sim, email="pia@example.com")] == ["lesson-1", "lesson-2"]
        assert sim.store.get(pia).campaigns == {}
        assert [a for a in sim.store.activity(pia) if a["type"].startswith("campaign.")] == []


# ---- analytics: what the dashboards count -----------------------------------------------------------------

NEWSLETTER = """
name: newsletter
triggers: [{event: list.subscribed}]
steps:
  - id: settle
    wait: 10m
  - id: issue-1
    send_email: {template: issue-1}
  - id: text
    send_sms: {template: issue-1-sms}
"""


def test_metrics_count_waits_reached_messages_sent_and_first_opens_and_clicks_per_step() -> None:
    with Simulation([workflow(NEWSLETTER)]) as sim:
        sim.send(event("s1", "list.subscribed", {"list": "news"}, email="pat@example.com"))  # no phone: SMS skipped
        sim.send(event("s2", "list.subscribed", {"list": "news"}, email="quin@example.com", phone="+447700900123"))
        sim.finish()
        mid = contact(sim, email="pat@example.com")["messages"][0]["message_id"]
        for n, etype in enumerate(["email.opened", "email.opened", "email.clicked", "email.clicked"]):
            sim.send(event(f"o{n}", etype, {"message_id": mid}, email="pat@example.com"))
        counted = {(name, step): n for (name, wf, step), n in sim.metrics.items() if wf == "newsletter"}
        assert counted == {
            (C.METRIC_ENTERED, C.METRIC_ENTRY_STEP): 2,
            (C.METRIC_WAIT_STARTED, "settle"): 2,
            (C.METRIC_STEP_COMPLETED, "issue-1"): 2,
            (C.METRIC_STEP_COMPLETED, "text"): 2,  # skipped for Pat, still completed
            (C.METRIC_MESSAGE_SENT, "issue-1"): 2,
            (C.METRIC_MESSAGE_SENT, "text"): 1,
            (C.METRIC_MESSAGE_OPENED, "issue-1"): 1,  # opened twice, counted once
            (C.METRIC_MESSAGE_CLICKED, "issue-1"): 1,
        }
        (msg,) = [m for m in sim.store.query_prefix(contact_pk(contact(sim, email="pat@example.com")["id"]), "MSG#")]
        assert (msg["opened_at"], msg["clicked_at"]) == (at(minutes=10), at(minutes=10))


# ---- an event in the middle of the flow: "continue when the contact clicks this email" ----------------

WEBINAR = """
name: webinar
triggers: [{event: form.submitted}]
steps:
  - id: invite
    send_email: {template: webinar-invite}
  - id: clicked-invite
    wait_until:
      event: email.clicked
      where: {workflow: webinar, step: invite}
      timeout: 2d
      on_timeout:
        - id: invite-again
          send_email: {template: webinar-invite-reminder}
  - id: see-you
    send_email: {template: see-you}
"""


def test_a_wait_continues_when_the_contact_clicks_the_email_the_workflow_sent() -> None:
    with Simulation([workflow(WEBINAR)]) as sim:
        sim.send(event("f1", "form.submitted", {}, email="rae@example.com"))
        sim.send(event("f2", "form.submitted", {}, email="sol@example.com"))
        rae = contact(sim, email="rae@example.com")
        (invite,) = rae["messages"]
        advance(sim, hours=5)
        # The click report names only the message; a click on some other email does not count.
        sim.send(event("c0", "email.clicked", {"message_id": "not-ours", "link": "x"}, email="rae@example.com"))
        sim.send(
            event("c1", "email.clicked", {"message_id": invite["message_id"], "link": "x"}, email="rae@example.com")
        )
        sim.finish()
        assert messages(sim, email="rae@example.com") == [
            (at(), "email", "webinar-invite"),
            (at(hours=5), "email", "see-you"),
        ]
        assert [t for _, _, t in messages(sim, email="sol@example.com")] == [
            "webinar-invite",
            "webinar-invite-reminder",
            "see-you",
        ]
