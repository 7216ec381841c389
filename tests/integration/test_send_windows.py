"""Send windows and the frequency cap on the local stack: a held send goes when the contact's window opens (DST
included), the steps after it after it; the third marketing email of a day under a cap of 2 waits for the next day,
a transactional one does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.workflow.compiler import compile_workflow
from shared.workflow.cost import analyse, transitions
from shared.workflow.model import Workflow, parse_workflow
from stepwise.simulate import Simulation, TimedEvent
from tests.integration.support import event, executions, states_entered


def wf(name: str, steps: list[dict[str, Any]], **settings: Any) -> Workflow:
    return parse_workflow(
        {
            "name": name,
            "triggers": [{"event": "tag.added", "where": {"tag": name}}],
            "settings": settings,
            "steps": steps,
        }
    )


ROME = {"send_window": {"between": "09:00-20:00", "timezone": "Europe/Rome"}}
REMIND = [
    {"id": "remind", "send_email": {"template": "cart-reminder"}},
    {"id": "after-send", "add_tag": "reminded"},
    {"id": "later", "wait": "1h"},
    {"id": "note", "add_tag": "done"},
]


def history_of(sim: Simulation, email: str, workflow: str) -> list[tuple[str, str, str]]:
    cid = next(c["id"] for c in sim.summary()["contacts"] if c.get("email") == email)
    rows = [h for h in sim.store.history(cid) if h["workflow"] == workflow]
    return [(h["at"], h["step"], h["outcome"]) for h in rows]


def sent(sim: Simulation, email: str) -> list[tuple[str, str]]:
    cid = next(c["id"] for c in sim.summary()["contacts"] if c.get("email") == email)
    return [(m["at"], m["step"]) for m in sim.store.messages(cid)]


def utc(text: str) -> str:
    return datetime.fromisoformat(text).astimezone(UTC).isoformat()


def run_at(start: datetime, workflows: list[Workflow], events: list[tuple[timedelta, Any]]) -> Simulation:
    sim = Simulation(workflows, start=start)
    sim.__enter__()
    sim.run([TimedEvent(start + off, ev) for off, ev in events], horizon=timedelta(days=5))
    return sim


def test_a_send_at_23h_local_goes_at_9h_local_next_day_and_the_next_step_after_it() -> None:
    start = datetime(2026, 6, 10, 21, 0, tzinfo=UTC)  # 23:00 in Rome (CEST)
    sim = run_at(
        start,
        [wf("cart", REMIND, **ROME)],
        [(timedelta(0), event("e1", "tag.added", {"tag": "cart"}, email="ana@example.com"))],
    )
    try:
        nine = utc("2026-06-11T09:00:00+02:00")
        assert history_of(sim, "ana@example.com", "cart") == [
            (start.isoformat(), "remind", "held"),
            (nine, "remind", "done"),
            (nine, "after-send", "done"),
            (nine, "later", "waiting"),
            (utc("2026-06-11T10:00:00+02:00"), "note", "done"),
        ]
        assert sent(sim, "ana@example.com") == [(nine, "remind")]
        (run,) = executions(sim, "cart")
        report = analyse(compile_workflow(wf("cart", REMIND, **ROME), "arn:aws:lambda:us-east-1:1:function:f"))
        assert report.deferrable == ["remind"]
        (path,) = report.paths
        # What `stepwise cost` predicts for a held send is what the machine took.
        assert len(states_entered(sim, run["executionArn"])) == transitions(path) + report.deferral_extra == 7
        # The deferral: the Task, its Pass and Wait, the Task again (+3), then the rest of the path.
        assert states_entered(sim, run["executionArn"])[:5] == [
            "Entry",
            "remind",
            "remind.deferred",
            "remind.held",
            "remind",
        ]
    finally:
        sim.__exit__(None, None, None)


def test_the_contact_zone_wins_and_dst_keeps_9h_local() -> None:
    # 2026-10-24 23:00 in Rome is summer time; the next morning (25 Oct) is winter time: 09:00 is 08:00 UTC.
    start = datetime(2026, 10, 24, 21, 0, tzinfo=UTC)
    ev_rome = event("e1", "tag.added", {"tag": "cart"}, email="ana@example.com")
    ev_ny = event("e2", "tag.added", {"tag": "cart"}, email="bo@example.com", timezone="America/New_York")
    sim = run_at(start, [wf("cart", REMIND[:2], **ROME)], [(timedelta(0), ev_rome), (timedelta(0), ev_ny)])
    try:
        assert sent(sim, "ana@example.com") == [(datetime(2026, 10, 25, 8, 0, tzinfo=UTC).isoformat(), "remind")]
        # 17:00 in New York is inside the window: Bo's email goes at once.
        assert sent(sim, "bo@example.com") == [(start.isoformat(), "remind")]
    finally:
        sim.__exit__(None, None, None)


def test_the_third_marketing_email_of_a_day_waits_for_the_next_day_and_a_transactional_one_goes() -> None:
    cap = {"frequency_cap": {"email": 2, "timezone": "Europe/Rome"}}
    flows = [
        wf("one", [{"id": "one", "send_email": {"template": "a"}}], **cap),
        wf("two", [{"id": "two", "send_email": {"template": "b"}}], **cap),
        wf("three", [{"id": "three", "send_email": {"template": "c"}}, {"id": "after", "add_tag": "x"}], **cap, **ROME),
        wf("receipt", [{"id": "receipt", "send_email": {"template": "r", "transactional": True}}], **cap),
    ]
    start = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)  # 12:00 in Rome
    evs = [
        (timedelta(minutes=i), event(f"e{i}", "tag.added", {"tag": t}, email="ana@example.com"))
        for i, t in enumerate(["one", "two", "three", "receipt"])
    ]
    sim = run_at(start, flows, evs)
    try:
        got = sent(sim, "ana@example.com")
        nine_next = utc("2026-06-11T09:00:00+02:00")  # next day in Rome, and the window of workflow three
        assert sorted(got) == sorted(
            [
                (start.isoformat(), "one"),
                ((start + timedelta(minutes=1)).isoformat(), "two"),
                ((start + timedelta(minutes=3)).isoformat(), "receipt"),
                (nine_next, "three"),
            ]
        )
        three = history_of(sim, "ana@example.com", "three")
        assert [(s, o) for _, s, o in three] == [("three", "held"), ("three", "done"), ("after", "done")]
        assert three[1][0] == nine_next
    finally:
        sim.__exit__(None, None, None)
