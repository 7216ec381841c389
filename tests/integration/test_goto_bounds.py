"""Regression tests for what the differential run found about runs that stop or loop: records written ahead of a
stop, go-tos reached through a wait and go-tos in on_timeout against settings.max_loops, on the local stack.

Each test names the one-line change (mutation) it was checked to fail on."""

from __future__ import annotations

from datetime import timedelta

from shared.workflow.compiler import compile_workflow
from shared.workflow.cost import analyse
from stepwise.simulate import Simulation
from tests.integration.support import (
    ANA,
    JOIN_AND_LEAVE,
    TIMEOUT_LOOP,
    advance,
    at,
    event,
    executions,
    messages,
    pay,
    states_entered,
    steps,
    subscribe,
)
from tests.integration.support import workflow as wf

# ---- a stop that is not a goal's jump drops the records written ahead too ---------------------------------------

PROMO = """
name: promo
steps:
  - id: promo-hello
    send_email: {template: promo-hello}
  - id: promo-wait
    wait: 2d
  - id: promo-done
    end: {reason: promo over}
"""


def test_a_run_stopped_during_a_wait_keeps_no_record_of_the_end_after_it() -> None:
    # Kills: shared/history.py drop_unreached, `> now` made `> now + timedelta(days=2)` (promo-hello's Task wrote
    # promo-done's record ahead at +2d; the stop at +1d must drop it, and keep what the contact reached).
    with Simulation([wf(PROMO), wf(JOIN_AND_LEAVE)]) as sim:
        sim.send(event("f1", "form.submitted", {"form": "x"}, email=ANA))
        sim.finish()
        assert steps(sim, "promo", email=ANA) == [(at(), "promo-hello", "done"), (at(), "promo-wait", "waiting")]


# ---- a go-to met after a wait ends the run when the wait is over, at the cost `stepwise cost` gives ------------

LOOP_THROUGH_A_WAIT = """
name: loop-wait
triggers: [{event: list.subscribed}]
settings: {max_loops: 2}
steps:
  - id: nag
    send_email: {template: come-back}
  - id: check
    if: {has_tag: never}
    then:
      - id: bought
        goal: {event: order.paid}
    else:
      - id: pause
        wait: 1d
      - goto: nag
"""


def test_a_goto_after_a_wait_one_too_many_ends_the_run_when_the_wait_is_over() -> None:
    # Kills: functions/step_runner/logic.py run(), the `if ctx.loops > req.max_loops` check removed (the run would
    # go on past the bound, a fourth email on day 3); and shared/workflow/cost.py ceiling without `bound_end`
    # (13, two short of what the run entered).
    loop = wf(LOOP_THROUGH_A_WAIT)
    with Simulation([loop]) as sim:
        subscribe(sim)
        sim.finish(timedelta(days=6))
        assert messages(sim, email=ANA) == [(at(days=d), "email", "come-back") for d in range(3)]
        assert steps(sim, email=ANA)[-3:] == [
            (at(days=2), "check", "branch else"),
            (at(days=2), "pause", "waiting"),
            (at(days=3), "loop-limit", "ended"),
        ]
        (run,) = executions(sim, "loop-wait")
        entered = states_entered(sim, run["executionArn"])
        assert run["status"] == "SUCCEEDED" and entered[-2:] == ["nag", "LoopLimitReached"]
        # The dearest contact: three turns of nag, check, its Choice and pause, then nag ending the run.
        report = analyse(compile_workflow(loop, "arn:aws:lambda:::function:x"), max_loops=2)
        assert len(entered) == 15 == report.ceiling


# ---- a go-to in on_timeout counts, and each visit has its own keys --------------------------------------------


def test_a_wait_entered_again_by_its_on_timeout_goto_is_resumed_by_the_event() -> None:
    # Kills: functions/step_runner/logic.py run(), `ctx.loops += 1` for RUN_TIMED_OUT_GOTO removed (the second
    # visit would reuse the first's keys: no second reminder, and no wait for the order to resume).
    with Simulation([wf(TIMEOUT_LOOP)]) as sim:
        subscribe(sim)
        advance(sim, days=1, hours=12)
        pay(sim)
        sim.finish()
        assert messages(sim, email=ANA) == [
            (at(), "email", "pay-now"),
            (at(days=1), "email", "pay-now"),
            (at(days=1, hours=12), "email", "thanks"),
        ]
        assert steps(sim, email=ANA)[1:] == [
            (at(), "wait-pay", "waiting"),
            (at(days=1), "wait-pay", "timed out"),
            (at(days=1), "remind", "done"),
            (at(days=1), "wait-pay", "waiting"),
            (at(days=1, hours=12), "wait-pay", "resumed"),
            (at(days=1, hours=12), "thanks", "done"),
        ]


GRACE_LOOP = """
name: grace-loop
triggers: [{event: list.subscribed}]
settings: {max_loops: 1}
steps:
  - id: remind
    send_email: {template: pay-now}
  - id: wait-pay
    wait_until:
      event: order.paid
      timeout: 1d
      on_timeout:
        - {id: grace, wait: 1d}
        - goto: remind
"""


def test_a_goto_after_a_wait_in_on_timeout_ends_the_run_after_that_wait() -> None:
    # Kills: shared/workflow/compiler.py Compiler.ahead, the goto marker not appended (the jump would be counted
    # as the timeout happens, ending the run on day 3 before the grace day).
    with Simulation([wf(GRACE_LOOP)]) as sim:
        subscribe(sim)
        sim.finish(timedelta(days=8))
        assert messages(sim, email=ANA) == [(at(), "email", "pay-now"), (at(days=2), "email", "pay-now")]
        assert steps(sim, email=ANA)[-3:] == [
            (at(days=3), "wait-pay", "timed out"),
            (at(days=3), "grace", "waiting"),
            (at(days=4), "loop-limit", "ended"),
        ]
