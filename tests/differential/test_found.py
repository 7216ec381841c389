"""Cases the differential run found, shrunk and kept: each failed once (the machine and the reference disagreed),
and each is the regression test of the fix it led to."""

from __future__ import annotations

from typing import Any

from shared.workflow.model import parse_workflow
from tests.differential.harness import Case, run_machine, run_reference


def _agree(workflow: dict[str, Any], **contact: Any) -> None:
    case = Case(workflow=parse_workflow(workflow), **contact)
    machine, reference = run_machine(case), run_reference(case)
    assert machine.lines() == reference.lines()
    assert machine == reference


def test_passive_steps_after_an_event_resume_are_recorded_and_their_goto_counted() -> None:
    """Found with DIFF_SEED=20261202 once go-tos after waits were generated: an event resumed the wait, and the
    wait until a (past) time and the go-to back to the first wait that follow it had no records, because no Task
    runs between the resume and the next Task; the router's resume now records them (the wait Task's `ahead`)
    and counts the jump where the contact meets it. The loop bound (max_loops 2) is reached on the third visit."""
    _agree(
        {
            "name": "diff",
            "triggers": [{"event": "custom.start"}],
            "reentry": {"mode": "once"},
            "settings": {"max_loops": 2, "history_days": 30},
            "steps": [
                {"id": "wait-1", "wait": "4h"},
                {
                    "id": "until-2",
                    "wait_until": {
                        "event": "custom.ping",
                        "where": {"n": {"gt": -1}},
                        "same": ["kind"],
                        "timeout": "10h",
                    },
                },
                {"id": "until-3", "wait_until": {"at": "2026-11-30T15:01:00Z"}},
                {"goto": "wait-1"},
            ],
        },
        fields={"color": 6},
        lists=["promo"],
        score=3,
        trigger_data={"value": 6, "kind": "b"},
        events=[
            (5460, "tag.added", {"tag": "vip"}),
            (9061, "custom.ping", {"n": 11, "kind": "b"}),
            (16263, "custom.ping", {"n": 0, "kind": "a"}),
            (41466, "custom.ping", {"n": 11, "kind": "b"}),
            (48667, "custom.win", {}),
        ],
    )


def test_a_resumed_wait_whose_goto_is_one_too_many_ends_the_run() -> None:
    """The same shape with max_loops 1 and a ping in every wait: the second resume meets the go-to over the bound,
    so the run ends there (the loop-limit record) instead of starting a third visit."""
    _agree(
        {
            "name": "diff",
            "triggers": [{"event": "custom.start"}],
            "settings": {"max_loops": 1},
            "steps": [
                {"id": "wait-1", "wait": "1h"},
                {"id": "until-2", "wait_until": {"event": "custom.ping", "timeout": "10h"}},
                {"goto": "wait-1"},
            ],
        },
        trigger_data={"value": 1, "kind": "b"},
        events=[(5400 + 3600 * k, "custom.ping", {"n": k, "kind": "b"}) for k in range(4)],
    )
