"""Behaviours docs/workflows.md promises that no test pinned (issue 12, part 3), on the local stack as a user sees
them, and the disagreements the differential run found in the compiled machine, now fixed.

Each test names the one-line change (mutation) it was checked to fail on."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from shared import constants as C
from stepwise.simulate import Simulation
from tests.integration.support import (
    ANA,
    BO,
    JOIN_AND_LEAVE,
    TIMEOUT_LOOP,
    advance,
    at,
    contact,
    event,
    executions,
    history,
    messages,
    pay,
    run_in_order,
    steps,
    subscribe,
    timed,
)
from tests.integration.support import workflow as wf

# ---- a branch where two cases match ----------------------------------------------------------------------------

TWO_CASES = """
name: two-cases
triggers: [{event: order.paid}]
steps:
  - id: by-value
    branch:
      - name: big
        when: {event_field: total, gte: 200}
        steps: [{id: thank-big, send_email: {template: thanks-vip}}]
      - name: any-order
        when: {event_field: total, gt: 0}
        steps: [{id: thank-any, send_email: {template: thanks}}]
    otherwise:
      - {id: thank-zero, send_email: {template: thanks-free}}
"""


def test_a_branch_where_two_cases_match_takes_the_first() -> None:
    # Kills: functions/step_runner/logic.py _decide, the `break` after the first matching case removed (the last
    # matching case would win).
    with Simulation([wf(TWO_CASES)]) as sim:
        sim.send(event("o1", "order.paid", {"order_id": "1", "total": 250}, email=ANA))
        sim.send(event("o2", "order.paid", {"order_id": "2", "total": 20}, email=BO))
        assert steps(sim, email=ANA) == [(at(), "by-value", "branch big"), (at(), "thank-big", "done")]
        assert messages(sim, email=ANA) == [(at(), "email", "thanks-vip")]
        assert steps(sim, email=BO) == [(at(), "by-value", "branch any-order"), (at(), "thank-any", "done")]


# ---- an event wait's where, the wrong click first ------------------------------------------------------------

CLICKS = """
name: webinar
triggers: [{event: form.submitted}]
steps:
  - id: newsletter
    send_email: {template: newsletter}
  - id: invite
    send_email: {template: webinar-invite}
  - id: clicked-invite
    wait_until:
      event: email.clicked
      where: {workflow: webinar, step: invite}
      timeout: 2d
  - id: see-you
    send_email: {template: see-you}
"""


def test_a_click_on_another_email_of_the_run_does_not_resume_a_wait_for_this_one() -> None:
    # Kills: shared/routing.py _resume_waits, the `where` check of an event wait removed (the newsletter's click
    # at +1h would resume the wait an hour early). The clicks come at different instants, the wrong one first.
    with Simulation([wf(CLICKS)]) as sim:
        sim.send(event("f1", "form.submitted", {}, email=ANA))
        sent = {m["step"]: m["message_id"] for m in contact(sim, email=ANA)["messages"]}
        advance(sim, hours=1)
        sim.send(event("c1", "email.clicked", {"message_id": sent["newsletter"], "link": "x"}, email=ANA))
        advance(sim, hours=2)
        sim.send(event("c2", "email.clicked", {"message_id": sent["invite"], "link": "x"}, email=ANA))
        sim.finish()
        assert steps(sim, email=ANA)[2:] == [
            (at(), "clicked-invite", "waiting"),
            (at(hours=2), "clicked-invite", "resumed"),
            (at(hours=2), "see-you", "done"),
        ]


# ---- a go-to into the middle of a run of actions ---------------------------------------------------------------

MIDDLE = """
name: middle
triggers: [{event: list.subscribed}]
settings: {max_loops: 2}
steps:
  - id: welcome
    send_email: {template: welcome}
  - id: tip
    send_email: {template: tip}
  - id: pause
    wait: 1d
  - id: again
    add_tag: looped
  - goto: tip
"""


def test_a_goto_into_the_middle_of_a_run_of_actions_does_not_redo_the_steps_before_it() -> None:
    # Kills: shared/workflow/compiler.py _run_predecessor, `if sid in self.graph.goto_targets: return None` removed
    # (the target merged into the previous Task: the welcome email re-sent on every loop).
    with Simulation([wf(MIDDLE)]) as sim:
        subscribe(sim)
        sim.finish()
        assert messages(sim, email=ANA) == [
            (at(), "email", "welcome"),
            (at(), "email", "tip"),
            (at(days=1), "email", "tip"),
            (at(days=2), "email", "tip"),
        ]
        assert [s for _, s, _ in steps(sim, email=ANA)].count("welcome") == 1


# ---- a split picks no winner before its `after` ---------------------------------------------------------------

WINNER = """
name: offer-test
triggers: [{event: list.subscribed}]
steps:
  - id: pick
    split:
      - {name: short, percent: 50, steps: [{id: offer-short, send_email: {template: offer-short}}]}
      - {name: long, percent: 50, steps: [{id: offer-long, send_email: {template: offer-long}}]}
    winner: {by: goal, goal: bought, min_contacts: 10, after: 2d}
  - id: hold
    wait: 5d
  - id: bought
    goal: {event: order.paid}
"""


def _decision(sim: Simulation, email: str) -> dict:
    (rec,) = [h for h in history(sim, "offer-test", email=email) if h["step"] == "pick"]
    return rec


def test_a_split_picks_no_winner_before_its_after_and_picks_one_after() -> None:
    # Kills: shared/splits.py verdict, the `after` check (`if now < first_at + after: return None`) removed: the
    # contact at +1d, with every path past min_contacts and conversions in, would follow a winner already.
    with Simulation([wf(WINNER)]) as sim:
        emails = [f"c{i}@example.com" for i in range(30)]
        for i, e in enumerate(emails):
            sim.send(event(f"s{i}", "list.subscribed", {"list": "news"}, email=e))
        paths = {e: _decision(sim, e)["branch"] for e in emails}
        assert min(Counter(paths.values()).values()) >= 10  # every path has min_contacts
        advance(sim, hours=12)
        for i, e in enumerate(e for e in emails if paths[e] == "long"):
            sim.send(event(f"o{i}", "order.paid", {"order_id": str(i), "total": 5}, email=e))
        advance(sim, days=1)
        sim.send(event("early", "list.subscribed", {"list": "news"}, email="early@example.com"))
        early = _decision(sim, "early@example.com")
        assert early["why"].startswith("contact's bucket"), early["why"]
        advance(sim, days=2, hours=1)
        sim.send(event("late", "list.subscribed", {"list": "news"}, email="late@example.com"))
        late = _decision(sim, "late@example.com")
        assert late["branch"] == "long" and late["why"].startswith("winner long chosen"), late["why"]


# ---- a goal's jump is not a new entry -----------------------------------------------------------------------

GOAL_JUMP = """
name: onboarding
triggers: [{event: list.subscribed}]
steps:
  - id: hello
    send_email: {template: hello}
  - id: three-days
    wait: 3d
  - id: bought
    goal: {event: order.paid}
  - id: thanks
    send_email: {template: thanks}
"""


def test_a_goal_jump_does_not_count_entered_again() -> None:
    # Kills: shared/enrollment.py _record, `if not restart and self.metrics` made `if self.metrics` (the goal's
    # restart counted as an entry: the funnel's denominator doubled for every contact who converts).
    with Simulation([wf(GOAL_JUMP)]) as sim:
        run_in_order(
            sim,
            [
                timed(timedelta(0), "s1", "list.subscribed", {"list": "news"}, email=ANA),
                timed(timedelta(days=1), "o1", "order.paid", {"order_id": "1", "total": 9}, email=ANA),
            ],
        )
        assert (at(days=1), "bought", "reached") in steps(sim, email=ANA)
        assert len(executions(sim, "onboarding")) == 2  # the waiting run, and the goal's from the goal on
        assert sim.metrics[(C.METRIC_ENTERED, "onboarding", C.METRIC_ENTRY_STEP)] == 1
        assert sim.metrics[(C.METRIC_GOAL_REACHED, "onboarding", "bought")] == 1


# ---- conditions and actions at runtime ----------------------------------------------------------------------

RUNTIME = """
name: runtime
triggers: [{event: form.submitted}]
steps:
  - id: on-list
    if: {in_list: newsletter}
    then: [{id: on-list-yes, add_tag: listed}]
  - id: stage-before
    if: {in_stage: {pipeline: sales, stage: qualified}}
    then: [{id: stage-before-yes, add_tag: early}]
  - id: qualify
    move_to_stage: {pipeline: sales, stage: Qualified}
  - id: remember
    set_field: {plan: Pro Annual, seats: 7}
  - id: untag
    remove_tag: [cart-open]
  - id: banner
    send_site_message: {template: cart-banner}
  - id: stage-after
    if: {in_stage: {pipeline: sales, stage: qualified}}
    then: [{id: stage-after-yes, add_tag: staged}]
  - id: opened
    if: {opened_email: welcome, within: 7d}
    then: [{id: opened-yes, add_tag: opener}]
  - id: seats
    if: {field: seats, gt: 5}
    then: [{id: seats-yes, add_tag: team}]
  - id: plan
    if: {field: plan, contains: annual}
    then: [{id: plan-yes, add_tag: annual}]
  - id: low-score
    if: {score: {lte: 10}}
    then: [{id: low-score-yes, add_tag: cold}]
  - id: still-open
    if: {has_tag: cart-open}
    then: [{id: still-open-yes, add_tag: never}]
"""


def _branches(sim: Simulation, email: str) -> dict[str, str]:
    return {s: o.removeprefix("branch ") for _, s, o in steps(sim, "runtime", email=email) if o.startswith("branch")}


def test_conditions_and_contact_actions_at_runtime() -> None:
    # Kills, in shared/workflow/conditions.py _leaf: InList answering the opposite; InStage comparing
    # case-sensitively (`.casefold()` dropped: Qualified vs qualified); OpenedEmail ignoring `within` (Bo's open
    # 10 days ago would count); `contains` made case-sensitive (Annual vs annual); `lte` made `lt` (Ana's score is
    # exactly 10); `gt` on a field read from the wrong value. In the step runner: set_field, remove_tag (the
    # has_tag after it would hold) and send_site_message (no site message queued) skipped.
    with Simulation([wf(RUNTIME)]) as sim:
        for who, score in ((ANA, 10), (BO, 11)):
            sim.send(event(f"t-{who}", "tag.added", {"tag": "cart-open"}, email=who))
            sim.send(event(f"sc-{who}", "score.changed", {"score": score}, email=who))
        sim.send(event("l1", "list.subscribed", {"list": "newsletter"}, email=ANA))
        sim.send(event("op-bo", "email.opened", {"template": "welcome"}, email=BO))
        advance(sim, days=9)
        sim.send(event("op-ana", "email.opened", {"template": "welcome"}, email=ANA))
        advance(sim, days=10)
        sim.send(event("f-ana", "form.submitted", {"form": "x"}, email=ANA))
        sim.send(event("f-bo", "form.submitted", {"form": "x"}, email=BO))
        sim.finish()
        assert _branches(sim, ANA) == {
            "on-list": "then",
            "stage-before": "else",
            "stage-after": "then",
            "opened": "then",
            "seats": "then",
            "plan": "then",
            "low-score": "then",
            "still-open": "else",
        }
        assert _branches(sim, BO) == {**_branches(sim, ANA), "on-list": "else", "opened": "else", "low-score": "else"}
        ana = contact(sim, email=ANA)
        assert ana["fields"] == {"plan": "Pro Annual", "seats": 7}
        assert ana["stages"] == {"sales": "Qualified"}
        assert ana["tags"] == ["annual", "cold", "listed", "opener", "staged", "team"]
        assert "cart-open" not in contact(sim, email=BO)["tags"]
        assert messages(sim, email=ANA) == [(at(days=10), "site", "cart-banner")]
        changed = [h for h in history(sim, "runtime", email=ANA) if h["step"] in ("remember", "untag", "banner")]
        assert [(h["step"], h["outcome"]) for h in changed] == [
            ("remember", "done"),
            ("untag", "done"),
            ("banner", "done"),
        ]


PROMO = """
name: promo
steps:
  - id: promo-wait
    wait: 2d
  - id: promo-offer
    send_email: {template: promo-offer}
"""


def test_remove_from_campaign_stops_the_run_and_its_later_steps() -> None:
    # Kills: functions/step_runner/logic.py _membership, the stop of the campaign's run for remove_from_campaign
    # dropped (the promo's email would go out on day 2).
    with Simulation([wf(PROMO), wf(JOIN_AND_LEAVE)]) as sim:
        sim.send(event("f1", "form.submitted", {"form": "x"}, email=ANA))
        assert contact(sim, email=ANA)["campaigns"] == {"promo": "promo-wait"}
        sim.finish()
        assert steps(sim, "promo", email=ANA) == [(at(), "promo-wait", "waiting")]
        assert steps(sim, "join-and-leave", email=ANA)[-1] == (at(days=1), "stop-promo", "done")
        assert messages(sim, email=ANA) == []
        assert contact(sim, email=ANA)["campaigns"] == {}
        (run,) = executions(sim, "promo")
        assert run["status"] == "ABORTED"


# ---- what the differential run found (the compiled machine disagreed with the docs; fixed) --------------------

LAST_WAIT = """
name: last-wait
triggers: [{event: list.subscribed}]
settings: {max_loops: 1}
steps:
  - id: nag
    send_email: {template: come-back}
  - id: check
    if: {has_tag: never}
    then:
      - id: bought
        goal: {event: order.paid}
      - id: thanks
        send_email: {template: thanks}
    else:
      - id: pause
        wait: 1d
      - goto: nag
"""


def test_a_goal_met_during_the_last_wait_before_the_loop_bound_is_still_reached() -> None:
    # Found by the differential run. Kills: functions/step_runner/logic.py _record_ahead, the over-the-bound
    # return made `_end_at_loop_limit(ctx)` (the run would end at check's Task on day 1, the second pause never
    # happening and the order on day 1.5 meeting no goal).
    with Simulation([wf(LAST_WAIT)]) as sim:
        subscribe(sim)
        advance(sim, days=1, hours=12)
        pay(sim)
        sim.finish(timedelta(days=5))
        # The reference: the second pause runs from day 1 to day 2; the order on day 1.5 meets the goal.
        assert steps(sim, email=ANA)[3:] == [
            (at(days=1), "nag", "done"),
            (at(days=1), "check", "branch else"),
            (at(days=1), "pause", "waiting"),
            (at(days=1, hours=12), "bought", "reached"),
            (at(days=1, hours=12), "thanks", "done"),
        ]
        assert messages(sim, email=ANA)[-1] == (at(days=1, hours=12), "email", "thanks")


def test_a_goto_in_on_timeout_loops_and_counts_towards_max_loops() -> None:
    # Found by the differential run. Kills: shared/workflow/compiler.py, the States.Timeout Catch's ResultPath
    # always $.run.timed_out (the jump uncounted: the second visit of remind reuses the first's keys, no second
    # reminder, and the run hangs instead of ending by max_loops).
    with Simulation([wf(TIMEOUT_LOOP)]) as sim:
        subscribe(sim)
        sim.finish(timedelta(days=6))
        assert messages(sim, email=ANA) == [(at(days=d), "email", "pay-now") for d in range(3)]
        assert steps(sim, email=ANA)[-1] == (at(days=3), "loop-limit", "ended")


AHEAD = """
name: ahead
triggers: [{event: list.subscribed}]
steps:
  - id: hello
    send_email: {template: hello}
  - id: first
    wait: 1d
  - id: second
    wait: 1d
  - id: bought
    goal: {event: order.paid}
"""


def test_a_goal_jump_during_a_wait_leaves_no_records_of_the_waits_after_it() -> None:
    # Found by the differential run. Kills: shared/enrollment.py Enroller.stop, the drop_unreached call removed
    # (the second wait's record, written ahead by hello's Task at +1d, would stay after the goal's jump at +12h).
    with Simulation([wf(AHEAD)]) as sim:
        subscribe(sim)
        advance(sim, hours=12)
        pay(sim)
        sim.finish()
        assert steps(sim, email=ANA) == [
            (at(), "hello", "done"),
            (at(), "first", "waiting"),
            (at(hours=12), "bought", "reached"),
        ]
