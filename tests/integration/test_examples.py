"""The worked examples of PRODUCT.md run as written on the local stack: path, contact data, messages, history TTL."""

from __future__ import annotations

from datetime import timedelta

from shared.events import ContactEvent
from shared.workflow.model import load_workflow
from stepwise.simulate import DEFAULT_START, Simulation, TimedEvent


def ev(eid: str, etype: str, email: str, data: dict) -> ContactEvent:
    return ContactEvent.model_validate({"id": eid, "type": etype, "contact": {"email": email}, "data": data})


def steps_of(sim: Simulation, email: str, workflow: str) -> list[tuple[str, str]]:
    rows = [r for r in sim.timeline() if r["workflow"] == workflow and not r["step"].startswith("(")]
    cid = next(c["id"] for c in sim.summary()["contacts"] if c["email"] == email)
    return [(r["step"], r["outcome"]) for r in rows if r["contact"] == cid]


def test_abandoned_checkout_both_branches_and_filter() -> None:
    wf = load_workflow("workflows/abandoned-checkout.yaml")
    cart = {"checkout_id": "k1", "cart_value": 80, "idle_minutes": 12}
    bought = {"tag": "Purchased"}
    with Simulation([wf]) as sim:
        sim.run(
            [
                TimedEvent(DEFAULT_START, ev("e1", "checkout.abandoned", "ana@example.com", cart)),
                TimedEvent(DEFAULT_START, ev("e2", "checkout.abandoned", "bo@example.com", {**cart, "cart_value": 20})),
                # Left exactly 10 minutes: not "more than 10".
                TimedEvent(
                    DEFAULT_START, ev("e4", "checkout.abandoned", "di@example.com", {**cart, "idle_minutes": 10})
                ),
                TimedEvent(DEFAULT_START, ev("e3", "checkout.abandoned", "cy@example.com", cart)),
                TimedEvent(DEFAULT_START + timedelta(hours=3), ev("t1", "tag.added", "cy@example.com", bought)),
                TimedEvent(DEFAULT_START + timedelta(days=2), ev("t2", "tag.added", "ana@example.com", bought)),
            ]
        )
        assert steps_of(sim, "ana@example.com", "abandoned-checkout") == [
            ("remind", "done"),
            ("wait-a-day", "waiting"),
            ("purchased", "branch else"),
            ("remind-again", "done"),
            ("wait-for-purchase", "waiting"),
            ("wait-for-purchase", "resumed"),
        ]
        # Cy bought before the day was over: the go-to jumps straight to the other branch's wait, no 2nd email.
        assert steps_of(sim, "cy@example.com", "abandoned-checkout")[:4] == [
            ("remind", "done"),
            ("wait-a-day", "waiting"),
            ("purchased", "branch then"),
            ("wait-for-purchase", "waiting"),
        ]
        summary = {c["email"]: c for c in sim.summary()["contacts"]}
        assert [m["template"] for m in summary["ana@example.com"]["messages"]] == ["cart-reminder", "cart-reminder-2"]
        assert [m["template"] for m in summary["cy@example.com"]["messages"]] == ["cart-reminder"]
        assert summary["bo@example.com"]["messages"] == []
        assert summary["di@example.com"]["messages"] == []
        (refused,) = [r for _, r, _ in sim.routed if r.contact == summary["di@example.com"]["id"]]
        assert refused.why == "filter failed: idle_minutes gt 10"
        history = sim.store.history(summary["ana@example.com"]["id"])
        decision = next(h for h in history if h["step"] == "purchased")
        assert decision["conditions"] == [{"condition": "has tag 'Purchased'", "value": [], "result": False}]
        for h in history:
            at = __import__("datetime").datetime.fromisoformat(h["at"])
            assert h["expires_at"] == int((at + timedelta(days=30)).timestamp())


def test_duplicate_delivery_enters_once() -> None:
    wf = load_workflow("workflows/welcome-series.yaml")
    e = ev("sub-1", "list.subscribed", "fabio@example.com", {"list": "newsletter"})
    with Simulation([wf]) as sim:
        sim.run([TimedEvent(DEFAULT_START, e), TimedEvent(DEFAULT_START + timedelta(minutes=1), e)])
        c = sim.summary()["contacts"][0]
        assert [m["template"] for m in c["messages"]] == ["welcome-email"]  # no phone: SMS skipped
        assert len(sim.execution_arns("welcome-series")) == 1
        sms = [r for r in sim.timeline() if r["step"] == "welcome-sms"]
        assert sms[0]["outcome"] == "skipped" and sms[0]["at"] == (DEFAULT_START + timedelta(minutes=10)).isoformat()
