"""Schedule names, at() expressions, abandonment thresholds and the kind registry (pure)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.runtime import schedules as sched
from shared.runtime.abandonment import DEFAULT_IDLE_MINUTES, idle_minutes, threshold_seconds, thresholds
from shared.store.schedules import at_expression, parse_at_expression
from shared.workflow.conditions import Where
from shared.workflow.model import parse_workflow


def test_names_are_deterministic_short_and_valid_for_scheduler() -> None:
    name = sched.schedule_name("abandonment", "tok:v1:601")
    assert name == sched.schedule_name("abandonment", "tok:v1:601")
    assert name != sched.schedule_name("abandonment", "tok:v2:601")
    assert name != sched.schedule_name("broadcast", "tok:v1:601")
    long = sched.schedule_name("a kind with spaces and a very long name indeed", "k" * 500)
    for n in (name, long):
        assert len(n) <= 64 and re.fullmatch(r"[0-9a-zA-Z\-_.]+", n), n


def test_at_expression_is_utc_to_the_second_and_reads_back() -> None:
    rome = timezone(timedelta(hours=1))
    when = datetime(2026, 12, 1, 9, 0, 30, tzinfo=rome)
    assert at_expression(when) == "at(2026-12-01T08:00:30)"
    assert parse_at_expression(at_expression(when)) == when.astimezone(UTC)
    with pytest.raises(ValueError, match="time zone"):
        at_expression(datetime(2026, 12, 1))
    with pytest.raises(ValueError, match="one-time"):
        parse_at_expression("rate(5 minutes)")


@pytest.mark.parametrize(
    ("where", "seconds"),
    [
        ({"idle_minutes": {"gt": 10}}, [601]),  # more than 10: one second past
        ({"idle_minutes": {"gte": 10}}, [600]),
        ({"idle_minutes": 10}, [600]),
        ({"idle_minutes": {"eq": 15}}, [900]),
        ({"idle_minutes": {"in": [10, 60]}}, [600, 3600]),
        ({"idle_minutes": {"lt": 30}}, [1799]),
        ({"idle_minutes": {"lte": 30}}, [1800]),
        ({"idle_minutes": {"gt": 10, "lt": 30}}, [601]),
        ({"idle_minutes": {"gt": 30, "lt": 10}}, []),  # never matches: nothing to schedule
        ({"idle_minutes": {"gt": 0.5}}, [31]),
        ({"cart_value": {"gt": 50}}, [DEFAULT_IDLE_MINUTES * 60]),
        (None, [DEFAULT_IDLE_MINUTES * 60]),
    ],
)
def test_thresholds_are_the_first_idle_time_each_filter_accepts(where: dict | None, seconds: list[int]) -> None:
    filt = Where(where) if where is not None else None
    assert threshold_seconds(filt) == seconds
    for s in seconds:  # the event fired at that threshold passes the filter
        assert filt is None or Where({k: v for k, v in filt.root.items() if k == "idle_minutes"}).matches(
            {"idle_minutes": idle_minutes(s)}
        )


def test_distinct_thresholds_of_all_workflows() -> None:
    def wf(name: str, where: str) -> object:
        return parse_workflow(
            {
                "name": name,
                "triggers": [{"event": "checkout.abandoned", "where": where}],
                "steps": [{"id": "w", "wait": "1d"}],
            },
            "<t>",
        )

    workflows = [wf("a", {"idle_minutes": {"gt": 10}}), wf("b", {"idle_minutes": {"gt": 10}}), wf("c", {})]
    assert thresholds(workflows) == [601, 3600]  # type: ignore[arg-type]


def test_idle_minutes_is_exact_to_the_second() -> None:
    assert idle_minutes(600) == 10 and isinstance(idle_minutes(600), int)
    assert idle_minutes(601) == pytest.approx(10.0167)


def test_dispatch_refuses_an_unknown_kind_naming_the_field() -> None:
    assert {"abandonment", "broadcast", "broadcast_batch"} <= set(sched.kinds())
    with pytest.raises(sched.UnknownScheduleKind, match="field kind: 'nope'"):
        sched.dispatch({"kind": "nope"}, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="registered twice"):
        sched.register("abandonment")(lambda payload, ctx: None)


def test_nothing_bound_fails_loudly() -> None:
    sched.bind(None)
    with pytest.raises(sched.SchedulesNotConfigured, match="STEPWISE_SCHEDULE_GROUP"):
        sched.required()
