"""The compiled machine's structure, state by state, as docs/workflows.md ("How a workflow compiles") promises it.

Pure compile tests (no moto): written to kill the mutants of shared/workflow/compiler.py that the other unit tests
let live (docs/mutation.md). Each test compiles a small workflow and checks the states it becomes exactly.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import yaml

from shared.workflow.compiler import (
    END,
    CompileError,
    Compiler,
    asl_timestamp,
    build_graph,
    compile_json,
    compile_workflow,
    deferrable,
    derived_id,
    entry_plan,
    reachable,
    step_spec,
    transitions_from,
    with_synthetic_ids,
    workflow_version,
)
from shared.workflow.model import Workflow, parse_workflow

ARN = "arn:aws:lambda:eu-west-1:1:function:runner"
HEAD = "name: {name}\ntriggers: [{{event: form.submitted{delay}}}]\n{settings}steps:\n"


def wf(steps: str, *, name: str = "w", delay: str = "", settings: str = "") -> Workflow:
    text = HEAD.format(name=name, delay=f", delay: {delay}" if delay else "", settings=settings) + steps
    return parse_workflow(yaml.safe_load(text))


def states(w: Workflow) -> dict[str, Any]:
    d = compile_workflow(w, ARN)
    assert d["StartAt"] == "Entry" and d["QueryLanguage"] == "JSONPath"
    assert d["Comment"] == f"Stepwise workflow {w.name} version {workflow_version(with_synthetic_ids(w))}"
    return d["States"]  # type: ignore[no-any-return]


def payload(state: dict[str, Any]) -> dict[str, Any]:
    return state["Parameters"]["Payload"]  # type: ignore[no-any-return]


def mine(state: dict[str, Any]) -> dict[str, Any]:
    """The payload without the envelope every Task carries (checked once, in the first test)."""
    return {k: v for k, v in payload(state).items() if not k.endswith(".$") and k not in ENVELOPE}


ENVELOPE = ("workflow", "version", "max_loops", "history_days")
RETRY = [
    {"ErrorEquals": ["LoopLimitReached", "ContactNotFound", "InvalidStep"], "MaxAttempts": 0},
    {"ErrorEquals": ["WebhookFailed"], "IntervalSeconds": 30, "MaxAttempts": 5},
    {"ErrorEquals": ["States.TaskFailed"], "JitterStrategy": "FULL"},
]
CATCH = [
    {"ErrorEquals": ["LoopLimitReached"], "ResultPath": "$.error", "Next": "LoopLimitReached"},
    {"ErrorEquals": ["ContactNotFound"], "ResultPath": "$.error", "Next": "Failed-ContactNotFound"},
    {"ErrorEquals": ["InvalidStep"], "ResultPath": "$.error", "Next": "Failed-InvalidStep"},
    {"ErrorEquals": ["WebhookFailed"], "ResultPath": "$.error", "Next": "Failed-WebhookFailed"},
]
TERMINALS = {
    "Failed-ContactNotFound": {"Type": "Fail", "Error": "ContactNotFound", "CausePath": "$.error.Cause"},
    "Failed-InvalidStep": {"Type": "Fail", "Error": "InvalidStep", "CausePath": "$.error.Cause"},
    "Failed-WebhookFailed": {"Type": "Fail", "Error": "WebhookFailed", "CausePath": "$.error.Cause"},
}


def resume(sid: str, target: str) -> dict[str, Any]:
    return {
        "And": [
            {"Variable": "$.run.resume_at", "IsPresent": True},
            {"Variable": "$.run.resume_at", "StringEquals": sid},
        ],
        "Next": target,
    }


TOUR = """
  - id: tag
    add_tag: a
  - id: mail
    send_email: {template: hello}
  - id: pause
    wait: 1h
  - id: until
    wait_until: {at: 2026-11-27T08:00:00+01:00}
  - id: ask
    if: {has_tag: vip}
    then:
      - id: vip-tag
        add_tag: vip
      - id: fin
        end: vip done
    else:
      - goto: pause
"""


def test_a_run_of_actions_is_one_task_with_the_envelope_retries_and_catches_the_docs_list() -> None:
    w = wf(TOUR, name="tour", delay="5m", settings="settings: {max_loops: 7, history_days: 9}\n")
    s = states(w)
    assert s["tag"] == {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {
            "FunctionName": ARN,
            "Payload": {
                "op": "actions",
                "workflow": "tour",
                "version": workflow_version(with_synthetic_ids(w)),
                "max_loops": 7,
                "history_days": 9,
                "steps": [
                    {"id": "tag", "add_tag": ["a"], "kind": "add_tag"},
                    {"id": "mail", "send_email": {"template": "hello"}, "kind": "send_email"},
                ],
                # The waits met before the next step-runner call: the Task records them.
                "ahead": [
                    {"id": "pause", "kind": "wait", "seconds": 3600},
                    {"id": "until", "kind": "wait_until", "at": "2026-11-27T08:00:00+01:00"},
                ],
                "goto": False,
                "contact_id.$": "$.contact_id",
                "event.$": "$.event",
                "run.$": "$.run",
                "execution.$": "$$.Execution.Id",
                "entered.$": "$$.State.EnteredTime",
            },
        },
        "ResultSelector": {"loops.$": "$.Payload.loops", "branch.$": "$.Payload.branch"},
        "ResultPath": "$.run",
        "Retry": RETRY,
        "Catch": CATCH,
        "Next": "pause",
    }
    assert "mail" not in s  # joined tag's Task
    assert s["pause"] == {"Type": "Wait", "Seconds": 3600, "Next": "until"}
    assert s["until"] == {"Type": "Wait", "Timestamp": "2026-11-27T07:00:00Z", "Next": "ask"}
    # The end after vip-tag ends that Task: recorded in its steps, End: true, no Succeed state.
    assert payload(s["vip-tag"])["steps"][-1] == {"id": "fin", "end": {"reason": "vip done"}, "kind": "end"}
    assert s["vip-tag"]["End"] is True and "Next" not in s["vip-tag"] and "fin" not in s
    assert mine(s["ask"]) == {
        "op": "decide",
        "step": {"id": "ask", "if": {"has_tag": "vip"}, "kind": "if"},
        "ahead": {
            "then": [],
            "else": [
                {"id": "goto-4-else-0", "kind": "goto"},
                {"id": "pause", "kind": "wait", "seconds": 3600},
                {"id": "until", "kind": "wait_until", "at": "2026-11-27T08:00:00+01:00"},
            ],
        },
        "goto": {"then": False, "else": True},
    }
    assert s["ask"]["Next"] == "ask.branch"
    assert s["ask.branch"] == {
        "Type": "Choice",
        "Choices": [{"Variable": "$.run.branch", "StringEquals": "then", "Next": "vip-tag"}],
        "Default": "pause",  # the go-to points straight at its target's state
    }
    assert s["LoopLimitReached"] == {"Type": "Succeed", "Comment": "Ended after 7 go-to jumps (settings.max_loops)"}
    for name, st in TERMINALS.items():
        assert s[name] == st
    assert "Done" not in s  # nothing ends through it


def test_entry_resumes_at_every_step_but_go_tos_and_the_start_delay_goes_through_a_wait() -> None:
    s = states(wf(TOUR, delay="5m"))
    assert s["Entry"] == {
        "Type": "Choice",
        "Comment": "Resume at a step (goals, restarts, start-at) or wait out the trigger's delay",
        "Choices": [
            resume("tag", "tag"),
            resume("mail", "tag"),  # mail is done by tag's Task
            resume("pause", "pause"),
            resume("until", "until"),
            resume("ask", "ask"),
            resume("vip-tag", "vip-tag"),
            resume("fin", "vip-tag"),
            {
                "And": [
                    {"Variable": "$.start_delay", "IsPresent": True},
                    {"Variable": "$.start_delay", "NumericGreaterThan": 0},
                ],
                "Next": "StartDelay",
            },
        ],
        "Default": "tag",
    }
    assert s["StartDelay"] == {
        "Type": "Wait",
        "SecondsPath": "$.start_delay",
        "Next": "tag",
        "Comment": "The trigger's start delay",
    }
    s = states(wf(TOUR))
    assert "StartDelay" not in s
    assert all("start_delay" not in str(c) for c in s["Entry"]["Choices"])
    assert len(s["Entry"]["Choices"]) == 7


def test_a_workflow_opening_with_a_go_to_target_starts_at_it() -> None:
    s = states(wf("  - id: w\n    wait: 1m\n  - id: t\n    add_tag: x\n  - goto: w\n"))
    assert s["Entry"]["Default"] == "w"
    assert s["t"]["Next"] == "w" and mine(s["t"])["goto"] is True
    assert mine(s["t"])["ahead"] == [{"id": "goto-2", "kind": "goto"}, {"id": "w", "kind": "wait", "seconds": 60}]


def test_an_action_a_go_to_jumps_to_starts_its_own_task() -> None:
    s = states(
        wf(
            """
  - id: a
    add_tag: x
  - id: b
    add_tag: y
  - id: c
    wait: 1m
  - id: d
    if: {has_tag: z}
    then:
      - goto: b
"""
        )
    )
    assert [st["id"] for st in payload(s["a"])["steps"]] == ["a"]
    assert [st["id"] for st in payload(s["b"])["steps"]] == ["b"]
    assert s["a"]["Next"] == "b" and s["b"]["Next"] == "c"
    assert s["d.branch"]["Choices"][0]["Next"] == "b"
    # The else branch is empty: the contact carries on after the if, which is the end.
    assert s["d.branch"]["Default"] == "Done"
    assert s["Done"] == {"Type": "Succeed", "Comment": "End of the workflow"}


def test_an_end_elsewhere_is_a_succeed_state_and_a_wait_before_it_ends_itself() -> None:
    s = states(wf("  - id: w\n    wait: 1m\n  - id: bye\n    end: {reason: all done}\n"))
    assert s["w"] == {"Type": "Wait", "Seconds": 60, "End": True}
    # The Wait ends the run itself; the Succeed stays for a run resumed at the end step.
    assert s["bye"] == {"Type": "Succeed", "Comment": "all done"} and "Done" not in s
    assert s["Entry"]["Choices"][-1] == resume("bye", "bye")
    s = states(wf("  - id: i\n    if: {has_tag: a}\n    then:\n      - id: bye\n        end: {reason: tagged}\n"))
    assert s["bye"] == {"Type": "Succeed", "Comment": "tagged"}
    assert s["i.branch"]["Choices"] == [{"Variable": "$.run.branch", "StringEquals": "then", "Next": "bye"}]
    assert s["i.branch"]["Default"] == "Done"
    assert mine(s["i"])["ahead"] == {"then": [{"id": "bye", "kind": "end", "reason": "tagged"}], "else": []}


def test_a_task_ending_the_workflow_ends_itself_and_a_wait_at_the_end_too() -> None:
    s = states(wf("  - id: a\n    add_tag: x\n"))
    assert s["a"]["End"] is True and "Next" not in s["a"]
    assert set(s) == {"Entry", "a", "LoopLimitReached", *TERMINALS}
    s = states(wf("  - id: a\n    add_tag: x\n  - id: w\n    wait: 2m\n"))
    assert s["w"] == {"Type": "Wait", "Seconds": 120, "End": True}
    assert mine(s["a"])["ahead"] == [{"id": "w", "kind": "wait", "seconds": 120}]
    s = states(wf("  - id: a\n    add_tag: x\n  - id: w\n    wait_until: {at: 2026-11-27T08:00:00Z}\n"))
    assert s["w"] == {"Type": "Wait", "Timestamp": "2026-11-27T08:00:00Z", "End": True}


WAITS = """
  - id: w1
    wait_until:
      event: order.paid
      timeout: 3d
      on_timeout:
        - id: remind
          send_email: {template: pay}
  - id: w2
    wait_until: {condition: {has_tag: x}, timeout: 1h}
  - id: w3
    wait_until:
      event: order.paid
      timeout: 2h
      on_timeout:
        - goto: w2
  - id: w4
    wait_until:
      event: order.paid
      timeout: 2h
      on_timeout:
        - id: nap
          wait: 1m
  - id: w5
    wait_until:
      event: order.paid
      timeout: 2h
      on_timeout:
        - end: gave up
"""


def test_an_event_wait_is_a_callback_task_whose_timeout_catch_leads_to_on_timeout() -> None:
    w = wf(WAITS, settings="settings: {max_loops: 3, history_days: 4}\n")
    s = states(w)
    w1 = s["w1"]
    assert w1["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert w1["TimeoutSeconds"] == 3 * 86400
    assert w1["ResultSelector"] == {"loops.$": "$.loops", "branch.$": "$.branch"}
    assert w1["ResultPath"] == "$.run" and w1["Retry"] == RETRY
    assert w1["Catch"] == [
        {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.run.timed_out", "Next": "remind"},
        *CATCH,
    ]
    assert w1["Next"] == "w2"
    p = payload(w1)
    assert p["task_token.$"] == "$$.Task.Token"
    assert p["op"] == "wait" and p["max_loops"] == 3 and p["history_days"] == 4
    assert p["step"] == {
        "id": "w1",
        "wait_until": {"event": "order.paid", "same": [], "timeout": "3d"},  # on_timeout's steps dropped
        "kind": "wait_until",
    }
    assert p["ahead"] == [] and p["goto"] is False
    assert s["remind"]["Next"] == "w2"
    # Without on_timeout a timed-out contact carries on with the next step.
    assert s["w2"]["Catch"][0] == {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.run.timed_out", "Next": "w3"}
    assert s["w2"]["TimeoutSeconds"] == 3600
    # A go-to in on_timeout straight into a step-runner Task: that Task counts the jump.
    assert s["w3"]["Catch"][0] == {
        "ErrorEquals": ["States.Timeout"],
        "ResultPath": "$.run.timed_out_goto",
        "Next": "w2",
    }
    assert "w3.timed-out" not in s and "w1.timed-out" not in s and "w2.timed-out" not in s


def test_a_timeout_leading_to_a_wait_or_the_end_goes_through_a_task_recording_it() -> None:
    s = states(wf(WAITS))
    assert s["w4"]["Catch"][0] == {
        "ErrorEquals": ["States.Timeout"],
        "ResultPath": "$.run.timed_out",
        "Next": "w4.timed-out",
    }
    t = s["w4.timed-out"]
    assert t["Resource"] == "arn:aws:states:::lambda:invoke" and t["Next"] == "nap"
    assert mine(t) == {
        "op": "actions",
        "steps": [],
        "ahead": [{"id": "nap", "kind": "wait", "seconds": 60}],
        "goto": False,
    }
    assert s["nap"] == {"Type": "Wait", "Seconds": 60, "Next": "w5"}
    t = s["w5.timed-out"]
    assert mine(t) == {
        "op": "actions",
        "steps": [{"id": "end-4-on-timeout-0", "end": {"reason": "gave up"}, "kind": "end"}],
        "ahead": [],
        "goto": False,
    }
    assert t["End"] is True and "Next" not in t
    assert s["w5"]["End"] is True


def test_a_timeout_through_go_tos_to_a_wait_records_the_jumps_where_they_are_met() -> None:
    s = states(
        wf(
            """
  - id: nap
    wait: 1m
  - id: hold
    wait_until:
      event: order.paid
      timeout: 1h
      on_timeout:
        - goto: nap
"""
        )
    )
    t = s["hold.timed-out"]
    assert mine(t) == {
        "op": "actions",
        "steps": [],
        "ahead": [{"id": "goto-1-on-timeout-0", "kind": "goto"}, {"id": "nap", "kind": "wait", "seconds": 60}],
        "goto": True,
    }
    assert t["Next"] == "nap"
    assert s["hold"]["Catch"][0]["ResultPath"] == "$.run.timed_out"
    # What the contact meets once resumed: the end of the workflow (no Done: the Task ends itself).
    assert s["hold"]["End"] is True


def test_a_timeout_into_a_go_to_then_an_end_step_records_the_end() -> None:
    s = states(
        wf(
            """
  - id: i
    if: {has_tag: x}
    then:
      - id: stop
        end: stopped
  - id: hold
    wait_until:
      event: order.paid
      timeout: 1h
      on_timeout:
        - goto: stop
"""
        )
    )
    t = s["hold.timed-out"]
    assert mine(t) == {
        "op": "actions",
        "steps": [{"id": "stop", "end": {"reason": "stopped"}, "kind": "end"}],
        "ahead": [{"id": "goto-1-on-timeout-0", "kind": "goto"}],
        "goto": True,
    }
    assert t["End"] is True


def test_a_wait_until_resuming_into_waits_and_a_go_to_lists_them_ahead() -> None:
    s = states(
        wf(
            """
  - id: a
    add_tag: x
  - id: hold
    wait_until: {event: order.paid, timeout: 1h}
  - id: nap
    wait: 1m
  - goto: a
"""
        )
    )
    p = payload(s["hold"])
    assert p["ahead"] == [{"id": "nap", "kind": "wait", "seconds": 60}, {"id": "goto-3", "kind": "goto"}]
    assert p["goto"] is True
    # the timeout leads to the Wait: a Task records it, and counts the jump after it
    assert mine(s["hold.timed-out"])["goto"] is True
    assert s["nap"]["Next"] == "a"


def test_branch_choices_follow_the_cases_in_order_and_otherwise_is_the_default() -> None:
    s = states(
        wf(
            """
  - id: b
    branch:
      - name: big
        when: {has_tag: big}
        steps:
          - id: t1
            add_tag: big
      - name: small
        when: {has_tag: small}
        steps: []
    otherwise:
      - end: other
  - id: after
    wait: 1m
"""
        )
    )
    assert mine(s["b"]) == {
        "op": "decide",
        "step": {
            "id": "b",
            "branch": [{"name": "big", "when": {"has_tag": "big"}}, {"name": "small", "when": {"has_tag": "small"}}],
            "kind": "branch",
        },
        "ahead": {
            "big": [],
            "small": [{"id": "after", "kind": "wait", "seconds": 60}],
            "otherwise": [{"id": "end-0-otherwise-0", "kind": "end", "reason": "other"}],
        },
        "goto": {"big": False, "small": False, "otherwise": False},
    }
    assert s["b"]["Next"] == "b.branch" and s["b"]["Resource"] == "arn:aws:states:::lambda:invoke"
    assert s["b.branch"] == {
        "Type": "Choice",
        "Choices": [
            {"Variable": "$.run.branch", "StringEquals": "big", "Next": "t1"},
            {"Variable": "$.run.branch", "StringEquals": "small", "Next": "after"},
        ],
        "Default": "end-0-otherwise-0",
    }
    assert s["end-0-otherwise-0"] == {"Type": "Succeed", "Comment": "other"}
    assert s["t1"]["Next"] == "after"


SPLIT = """
  - id: s
    split:
      - name: p1
        percent: 50
        steps:
          - id: m1
            send_email: {template: a}
          - id: inner
            if: {has_tag: q}
            then:
              - id: m2
                add_tag: deep
      - name: p2
        percent: 50
        steps: []
    winner: {by: %s}
  - id: bought
    goal: {event: order.paid}
"""


def test_a_split_is_a_decide_task_with_one_choice_per_path_and_its_paths_steps_for_open_and_click_winners() -> None:
    for by in ("email_opened", "email_clicked"):
        s = states(wf(SPLIT % by))
        p = mine(s["s"])
        assert p["path_steps"] == {"p1": ["m1", "inner", "m2"], "p2": []}
        assert p["ahead"] == {"p1": [], "p2": []} and p["goto"] == {"p1": False, "p2": False}
        assert p["step"] == {
            "id": "s",
            "split": [{"name": "p1", "percent": 50.0}, {"name": "p2", "percent": 50.0}],  # no nested steps
            "winner": {"by": by, "min_contacts": 100, "after": "1d"},
            "kind": "split",
        }
        assert s["s.branch"] == {
            "Type": "Choice",
            "Choices": [{"Variable": "$.run.branch", "StringEquals": "p1", "Next": "m1"}],
            "Default": "bought",
        }
    assert "path_steps" not in payload(states(wf(SPLIT % "goal"))["s"])
    no_winner = SPLIT.replace("    winner: {by: %s}\n", "")
    assert "path_steps" not in payload(states(wf(no_winner))["s"])


def test_a_goal_is_a_goal_task_and_otherwise_end_adds_a_choice_into_done() -> None:
    s = states(
        wf(
            """
  - id: bought
    goal: {event: order.paid, otherwise: end}
  - id: after
    add_tag: z
  - id: vip
    goal: {condition: {has_tag: vip}}
  - id: nap
    wait: 1m
"""
        )
    )
    assert mine(s["bought"]) == {
        "op": "goal",
        "step": {"id": "bought", "goal": {"event": "order.paid", "otherwise": "end"}, "kind": "goal"},
        "ahead": [],
        "goto": False,
    }
    assert s["bought"]["Next"] == "bought.branch"
    assert s["bought.branch"] == {
        "Type": "Choice",
        "Choices": [{"Variable": "$.run.branch", "StringEquals": "met", "Next": "after"}],
        "Default": "Done",
    }
    assert s["Done"] == {"Type": "Succeed", "Comment": "End of the workflow"}
    assert s["after"]["Next"] == "vip"
    assert s["vip"]["Next"] == "nap" and "vip.branch" not in s
    assert mine(s["vip"])["ahead"] == [{"id": "nap", "kind": "wait", "seconds": 60}]
    assert s["nap"] == {"Type": "Wait", "Seconds": 60, "End": True}


def test_a_goal_at_the_end_with_otherwise_end_chooses_done_either_way() -> None:
    s = states(wf("  - id: g\n    goal: {event: order.paid, otherwise: end}\n"))
    assert s["g.branch"]["Choices"][0]["Next"] == "Done" and s["g.branch"]["Default"] == "Done"


# ---- send windows, frequency caps and coupons -----------------------------------------------------------


WINDOW = 'settings:\n  send_window: {between: "09:00-20:00", timezone: Europe/Rome}\n'


def test_a_send_that_can_be_held_gets_the_deferral_loop() -> None:
    w = wf(
        """
  - id: tag
    add_tag: a
  - id: remind
    send_email: {template: cart}
  - id: receipt
    send_email: {template: receipt, send_window: anytime}
""",
        settings=WINDOW,
    )
    s = states(w)
    t = s["tag"]
    p = payload(t)
    assert p["deferrable"] == ["remind"]
    assert p["sending"] == {"send_window": {"between": "09:00-20:00", "timezone": "Europe/Rome"}}
    assert t["Retry"][0]["ErrorEquals"] == ["LoopLimitReached", "ContactNotFound", "InvalidStep", "SendDeferred"]
    assert t["Retry"][1:] == RETRY[1:]
    assert t["Catch"] == [
        {"ErrorEquals": ["SendDeferred"], "ResultPath": "$.run.deferred", "Next": "tag.deferred"},
        *CATCH,
    ]
    assert s["tag.deferred"] == {
        "Type": "Pass",
        "Comment": "A send is held: read when from the step runner's error (its message is the time, UTC)",
        "Parameters": {"Cause.$": "States.StringToJson($.run.deferred.Cause)"},
        "ResultPath": "$.run.deferred",
        "Next": "tag.held",
    }
    assert s["tag.held"] == {
        "Type": "Wait",
        "Comment": "Until the send window opens or the frequency cap allows the next send",
        "TimestampPath": "$.run.deferred.Cause.errorMessage",
        "Next": "tag",
    }


def test_a_task_that_cannot_defer_costs_what_it_did() -> None:
    # No window, and a cap that counts another channel, or only transactional sends of its channel.
    cases = [
        ("", "send_email: {template: a}"),
        ("settings:\n  frequency_cap: {sms: 1}\n", "send_email: {template: a}"),
        ("settings:\n  frequency_cap: {email: 1}\n", "send_email: {template: a, transactional: true}"),
    ]
    for settings, send in cases:
        w = wf(f"  - id: m\n    {send}\n  - id: t\n    add_tag: x\n", settings=settings)
        s = states(w)
        assert "sending" not in payload(s["m"]) and "deferrable" not in payload(s["m"])
        assert s["m"]["Retry"] == RETRY and s["m"]["Catch"] == CATCH
        assert "m.deferred" not in s and "m.held" not in s


def test_the_frequency_cap_holds_marketing_sends_of_its_channels_only() -> None:
    cap = "settings:\n  frequency_cap: {email: 2}\n"
    w = wf(
        """
  - id: promo
    send_email: {template: a}
  - id: receipt
    send_email: {template: b, transactional: true}
  - id: text
    send_sms: {template: hi}
""",
        settings=cap,
    )
    p = payload(states(w)["promo"])
    assert p["deferrable"] == ["promo"]
    assert p["sending"] == {"frequency_cap": {"email": 2, "timezone": "UTC"}}  # the unset sms cap left out
    assert "send_window" not in p["sending"]
    steps = {s.id: s for s, _ in w.walk()}
    assert deferrable(w, steps["promo"]) and not deferrable(w, steps["receipt"]) and not deferrable(w, steps["text"])
    w = wf("  - id: t\n    send_sms: {template: hi}\n", settings="settings:\n  frequency_cap: {sms: 1}\n")
    assert deferrable(w, w.steps[0])


def test_deferrable_reads_the_steps_own_window_first() -> None:
    own = "  - id: m\n    send_email: {template: a, send_window: {between: '09:00-17:00'}}\n"
    w = wf(own)
    assert deferrable(w, w.steps[0])
    w = wf("  - id: m\n    send_sms: {template: hi, send_window: {between: '09:00-17:00'}}\n")
    assert deferrable(w, w.steps[0])
    w = wf("  - id: m\n    send_email: {template: a, send_window: anytime}\n", settings=WINDOW)
    assert not deferrable(w, w.steps[0])
    w = wf("  - id: m\n    send_email: {template: a}\n")
    assert not deferrable(w, w.steps[0])
    w = wf("  - id: m\n    add_tag: a\n", settings=WINDOW)
    assert not deferrable(w, w.steps[0])
    # A step's own window is sent with its settings; the workflow's is not in the Task when it has none.
    p = payload(states(wf(own))["m"])
    assert p["deferrable"] == ["m"] and p["sending"] == {}


def test_a_coupon_generated_before_a_send_is_named_in_the_task_without_a_deferral_loop() -> None:
    s = states(
        wf(
            """
  - id: code
    generate_coupon: {prefix: XMAS, field: xmas_code}
  - id: offer
    send_email: {template: offer}
"""
        )
    )
    p = payload(s["code"])
    assert p["sending"] == {"coupons": {"offer": "xmas_code"}}
    assert "deferrable" not in p and s["code"]["Catch"] == CATCH and "code.deferred" not in s


# ---- the pieces -----------------------------------------------------------------------------------------


def test_step_spec_drops_nested_steps_and_names_the_kind() -> None:
    w = wf(
        """
  - id: i
    if: {has_tag: a}
    then: [{id: x, add_tag: b}]
    else: [{id: y, add_tag: c}]
  - id: b
    branch:
      - {name: one, when: {has_tag: a}, steps: [{id: z, add_tag: d}]}
    otherwise: [{id: o, add_tag: e}]
  - id: hold
    wait_until: {event: order.paid, timeout: 1h, on_timeout: [{id: t, add_tag: f}]}
"""
    )
    i, b, hold = w.steps
    assert step_spec(i) == {"id": "i", "if": {"has_tag": "a"}, "kind": "if"}
    assert step_spec(b) == {"id": "b", "branch": [{"name": "one", "when": {"has_tag": "a"}}], "kind": "branch"}
    assert step_spec(hold) == {
        "id": "hold",
        "wait_until": {"event": "order.paid", "same": [], "timeout": "1h"},
        "kind": "wait_until",
    }


def test_user_keys_ending_in_a_path_marker_are_refused_anywhere_in_a_step() -> None:
    for bad in ({"x.$": 1}, {"a": {"b.$": 1}}, {"a": [{"b.$": 1}]}, {"a": [[{"c.$": 2}]]}):
        w = wf("  - id: s\n    set_field: {plan: gold}\n")
        step = w.steps[0]
        step.root.__dict__["set_field"] = bad  # past the model's own checks: the compiler's last guard
        with pytest.raises(CompileError, match=r"step s: key '.*\.\$' ends in '\.\$', which Step Functions reserves"):
            step_spec(step)
    w = wf("  - id: s\n    set_field: {plan: gold}\n")
    w.steps[0].root.__dict__["set_field"] = {"a": ["x.$", {"b": "y.$"}], "c$": 1, ".$x": 2}
    assert step_spec(w.steps[0])["set_field"] == {"a": ["x.$", {"b": "y.$"}], "c$": 1, ".$x": 2}  # values are data


def test_workflow_version_is_a_12_character_content_hash() -> None:
    a, b = wf("  - id: a\n    add_tag: x\n"), wf("  - id: a\n    add_tag: y\n")
    assert workflow_version(a) == workflow_version(wf("  - id: a\n    add_tag: x\n"))
    assert workflow_version(a) != workflow_version(b)
    assert len(workflow_version(a)) == 12 and int(workflow_version(a), 16) >= 0
    # by alias, sorted keys, without the unset: the key order of the file does not matter
    c = parse_workflow({"steps": [{"add_tag": "x", "id": "a"}], "name": "w", "triggers": [{"event": "form.submitted"}]})
    assert workflow_version(c) == workflow_version(a)
    import hashlib
    import json

    canon = json.dumps(a.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=True)
    assert workflow_version(a) == hashlib.sha256(canon.encode()).hexdigest()[:12]


def test_derived_ids_follow_the_position_and_a_deep_one_is_hashed() -> None:
    assert derived_id("end", ("steps", "0", "on_timeout", "1")) == "end-0-on-timeout-1"
    assert derived_id("goto", ("steps", "3")) == "goto-3"
    assert derived_id("goto", ("steps", "a.b")) == "goto-a-b"
    loc = ("steps", *("12" for _ in range(30)))
    text = "goto-" + "-".join(loc[1:])
    assert len(text) > 63
    import hashlib

    assert derived_id("goto", loc) == "goto-" + hashlib.sha256("/".join(loc).encode()).hexdigest()[:16]
    fits = ("steps", *("1" for _ in range(29)))  # "goto-" + 29 digits + 28 dashes = 62 characters
    assert derived_id("goto", fits) == "goto-" + "-".join(fits[1:])
    edge = ("steps", "1" * 58)  # exactly 63
    assert derived_id("goto", edge) == "goto-" + "1" * 58
    assert (
        derived_id("goto", ("steps", "1" * 59)).startswith("goto-")
        and len(derived_id("goto", ("steps", "1" * 59))) == 21
    )


def test_synthetic_ids_name_unnamed_go_tos_and_ends_on_a_copy() -> None:
    w = wf(
        "  - id: a\n    add_tag: x\n  - id: i\n    if: {has_tag: a}\n"
        "    then:\n      - goto: a\n    else:\n      - end: true\n"
    )
    named = with_synthetic_ids(w)
    inner = named.steps[1].root
    assert inner.then[0].id == "goto-1-then-0" and inner.else_[0].id == "end-1-else-0"  # type: ignore[union-attr]
    assert w.steps[1].root.then[0].id is None  # type: ignore[union-attr]


def test_the_graph_links_each_step_to_the_next_and_refuses_bad_ids() -> None:
    g = build_graph(wf(TOUR))
    assert g.first == "tag" and g.order == ["tag", "mail", "pause", "until", "ask", "vip-tag", "fin", "goto-4-else-0"]
    assert g.nodes["tag"].next == "mail" and g.nodes["ask"].next == END and g.nodes["fin"].next == END
    assert g.nodes["goto-4-else-0"].next == "pause" and g.goto_targets == {"pause"}
    assert g.nodes["ask"].branch_heads == {"then": "vip-tag", "else": "goto-4-else-0"}
    assert build_graph(wf("  - id: i\n    if: {has_tag: a}\n")).nodes["i"].branch_heads == {"then": END, "else": END}
    w = wf("  - id: a\n    add_tag: x\n  - id: b\n    add_tag: y\n")
    w.steps[1].root.id = "a"
    with pytest.raises(CompileError, match="duplicate step id 'a'"):
        build_graph(w)
    w = wf("  - id: a\n    add_tag: x\n  - goto: a\n")
    w.steps[1].root.goto = "nowhere"  # type: ignore[union-attr]
    with pytest.raises(CompileError, match="go-to target 'nowhere' is not a step id"):
        build_graph(w)


def test_a_go_to_cycle_with_no_step_in_it_is_refused() -> None:
    w = wf(
        "  - id: i\n    if: {has_tag: a}\n    then:\n      - id: g1\n        goto: g2\n"
        "    else:\n      - id: g2\n        goto: g1\n"
    )
    with pytest.raises(CompileError, match="go-to cycle with no step in it through"):
        compile_workflow(w, ARN)


def test_reachable_keeps_what_a_path_leads_to_in_order() -> None:
    st: dict[str, Any] = {
        "A": {"Type": "Choice", "Choices": [{"Next": "C"}], "Default": "B"},
        "B": {"Type": "Task", "Next": "D", "Catch": [{"Next": "E"}]},
        "X": {"Type": "Succeed"},
        "C": {"Type": "Succeed"},
        "D": {"Type": "Succeed"},
        "E": {"Type": "Fail"},
        "F": {"Type": "Fail"},
    }
    assert transitions_from(st["A"]) == ["B", "C"]
    assert transitions_from(st["B"]) == ["D", "E"]
    assert transitions_from(st["C"]) == []
    assert list(reachable(st, "A")) == ["A", "B", "C", "D", "E"]
    assert list(reachable(st, "B")) == ["B", "D", "E"]


def test_asl_timestamps_are_utc_with_a_z() -> None:
    at = datetime(2026, 11, 27, 8, 0, tzinfo=timezone(timedelta(hours=1)))
    assert asl_timestamp(at) == "2026-11-27T07:00:00Z"
    assert asl_timestamp(datetime(2026, 1, 1, 0, 0, 30, tzinfo=timezone(timedelta(hours=-5)))) == "2026-01-01T05:00:30Z"


def test_compile_json_is_the_definition_indented() -> None:
    w = wf("  - id: a\n    add_tag: x\n")
    text = compile_json(w, ARN)
    assert text.startswith('{\n  "Comment"')
    import json

    assert json.loads(text) == compile_workflow(w, ARN)


def test_the_compiler_leaves_the_workflow_as_it_was() -> None:
    w = wf("  - id: a\n    add_tag: x\n  - goto: a\n")
    compile_workflow(w, ARN)
    assert w.steps[1].id is None


def test_passes_goto_and_ahead_stop_at_the_next_step_runner_call() -> None:
    c = Compiler(
        wf(
            """
  - id: a
    add_tag: x
  - id: w
    wait: 1m
  - id: at
    wait_until: {at: 2026-11-27T08:00:00Z}
  - id: ev
    wait_until: {event: order.paid, timeout: 1h}
  - id: w2
    wait: 2m
  - goto: w
"""
        ),
        ARN,
    )
    assert c.passes_goto("w") is False  # the event wait calls the step runner first
    assert c.passes_goto("w2") is True
    assert c.passes_goto(END) is False
    assert c.ahead("w") == [
        {"id": "w", "kind": "wait", "seconds": 60},
        {"id": "at", "kind": "wait_until", "at": "2026-11-27T08:00:00+00:00"},
    ]
    # around the loop once, then stop where it started
    assert c.ahead("w2") == [
        {"id": "w2", "kind": "wait", "seconds": 120},
        {"id": "goto-5", "kind": "goto"},
        {"id": "w", "kind": "wait", "seconds": 60},
        {"id": "at", "kind": "wait_until", "at": "2026-11-27T08:00:00+00:00"},
    ]
    assert c.ahead(END) == [] and c.ahead("a") == []


def test_passes_goto_goes_round_a_loop_of_waits_only_once() -> None:
    c = Compiler(wf("  - id: w\n    wait: 1m\n  - goto: w\n"), ARN)
    assert c.passes_goto("w") is True
    assert c.ahead("w") == [{"id": "w", "kind": "wait", "seconds": 60}, {"id": "goto-1", "kind": "goto"}]
    c = Compiler(wf("  - id: w\n    wait: 1m\n  - id: x\n    add_tag: a\n  - goto: w\n"), ARN)
    assert c.passes_goto("w") is False


def test_entry_plans_list_the_waits_before_the_first_task_without_go_tos() -> None:
    w = wf(
        "  - id: w\n    wait: 1m\n  - id: a\n    add_tag: x\n  - id: w2\n    wait: 2m\n  - goto: w\n",
        settings="settings: {history_days: 5}\n",
    )
    plan = entry_plan(w)
    assert plan.version == workflow_version(with_synthetic_ids(w)) and plan.history_days == 5
    assert plan.ahead == {
        "": [{"id": "w", "kind": "wait", "seconds": 60}],
        "w": [{"id": "w", "kind": "wait", "seconds": 60}],
        "w2": [{"id": "w2", "kind": "wait", "seconds": 120}, {"id": "w", "kind": "wait", "seconds": 60}],
    }


def test_entry_plans_carry_the_reentry_policy_and_the_budgets_set() -> None:
    text = """
name: r
triggers: [{event: form.submitted}]
reentry: always
settings:
  budgets: {entries_per_hour: 50}
steps: [{id: a, add_tag: x}]
"""
    plan = entry_plan(parse_workflow(yaml.safe_load(text)))
    assert plan.budgets == {"entries_per_hour": 50, "alert": []}  # the unset budget left out
    assert plan.reentry is not None and plan.reentry.mode == "always"
    assert plan.ahead == {}  # the first state is a Task
    assert entry_plan(wf("  - id: a\n    add_tag: x\n")).budgets == {}


def test_asl_timestamps_are_utc_whatever_the_machines_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    at = datetime(2026, 11, 27, 8, 0, tzinfo=timezone(timedelta(hours=1)))
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert asl_timestamp(at) == "2026-11-27T07:00:00Z"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_ahead_goes_on_past_a_timed_wait_until_to_the_waits_after_it() -> None:
    c = Compiler(
        wf(
            "  - id: at\n    wait_until: {at: 2026-11-27T08:00:00Z}\n  - id: w\n    wait: 1m\n"
            "  - id: bye\n    end: ok\n"
        ),
        ARN,
    )
    assert c.ahead("at") == [
        {"id": "at", "kind": "wait_until", "at": "2026-11-27T08:00:00+00:00"},
        {"id": "w", "kind": "wait", "seconds": 60},
        {"id": "bye", "kind": "end", "reason": "ok"},
    ]


def test_the_version_hashes_the_file_as_written_by_alias_so_it_stays_the_same_across_releases() -> None:
    # History records and pinned runs name the version: it is the hash of the file's own keys ("if", "else"),
    # not of the model's field names, so a refactor of the model does not change every deployed version.
    w = wf("  - id: i\n    if: {has_tag: a}\n    then: [{id: x, add_tag: b}]\n    else: [{id: y, add_tag: c}]\n")
    dumped = w.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert "if" in dumped["steps"][0] and "else" in dumped["steps"][0]
    canon = json.dumps(dumped, sort_keys=True)
    assert workflow_version(w) == hashlib.sha256(canon.encode()).hexdigest()[:12]


GOTO_FIRST = """
  - id: i
    if: {has_tag: a}
    then:
      - goto: later
  - id: nap
    wait: 1m
  - id: later
    wait: 2m
  - id: t
    add_tag: x
"""


def test_a_go_to_early_in_the_file_leaves_the_steps_after_it_resumable_and_planned() -> None:
    s = states(wf(GOTO_FIRST))
    assert s["Entry"]["Choices"] == [resume("i", "i"), resume("nap", "nap"), resume("later", "later"), resume("t", "t")]
    plan = entry_plan(wf(GOTO_FIRST))
    assert plan.ahead == {
        "nap": [{"id": "nap", "kind": "wait", "seconds": 60}, {"id": "later", "kind": "wait", "seconds": 120}],
        "later": [{"id": "later", "kind": "wait", "seconds": 120}],
    }


def test_step_specs_are_json_and_name_an_unnamed_step_in_errors() -> None:
    w = wf("  - id: at\n    wait_until: {at: 2026-11-27T08:00:00+01:00}\n")
    assert step_spec(w.steps[0]) == {
        "id": "at",
        "wait_until": {"at": "2026-11-27T08:00:00+01:00", "same": []},
        "kind": "wait_until",
    }
    w = wf("  - id: s\n    set_field: {plan: gold}\n")
    w.steps[0].root.id = None
    w.steps[0].root.__dict__["set_field"] = {"x.$": 1}
    with pytest.raises(CompileError, match=r"^step \?: key 'x\.\$'"):
        step_spec(w.steps[0])


def test_a_timed_wait_until_is_passed_on_the_way_to_a_go_to_and_an_event_wait_is_not() -> None:
    c = Compiler(
        wf("  - id: a\n    add_tag: x\n  - id: at\n    wait_until: {at: 2026-11-27T08:00:00Z}\n  - goto: a\n"), ARN
    )
    assert c.passes_goto("at") is True
    c = Compiler(
        wf("  - id: a\n    add_tag: x\n  - id: ev\n    wait_until: {event: order.paid, timeout: 1h}\n  - goto: a\n"),
        ARN,
    )
    assert c.passes_goto("ev") is False
