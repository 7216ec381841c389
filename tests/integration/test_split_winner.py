"""A split test picks its winner: contacts are counted per path, conversions per path, and once every path has
enough contacts the best-converting path takes everyone after."""

from __future__ import annotations

from datetime import timedelta

import yaml

from shared.events import ContactEvent
from shared.splits import SplitTests
from shared.workflow.model import parse_workflow
from stepwise.simulate import DEFAULT_START, Simulation

WORKFLOW = """
name: subject-test
triggers: [{event: list.subscribed}]
steps:
  - id: subject
    split:
      - name: short
        percent: 50
        steps: [{id: offer-short, send_email: {template: offer-short}}]
      - name: long
        percent: 50
        steps: [{id: offer-long, send_email: {template: offer-long}}]
    winner: {by: %s, goal: bought, min_contacts: 10}
  - id: give-it-a-day
    wait: 1d
  - id: bought
    goal: {event: order.paid}
"""


def ev(eid: str, etype: str, email: str, data: dict) -> ContactEvent:
    return ContactEvent.model_validate({"id": eid, "type": etype, "contact": {"email": email}, "data": data})


def paths_by_email(sim: Simulation) -> dict[str, str]:
    ids = {c["id"]: c["email"] for c in sim.summary()["contacts"]}
    return {ids[r["contact"]]: r["outcome"].removeprefix("branch ") for r in sim.timeline() if r["step"] == "subject"}


def test_winner_by_goal_takes_every_later_contact() -> None:
    wf = parse_workflow(yaml.safe_load(WORKFLOW % "goal"))
    with Simulation([wf]) as sim:
        for i in range(40):
            sim.send(ev(f"s{i}", "list.subscribed", f"c{i}@example.com", {"list": "news"}))
        first = paths_by_email(sim)
        assert sorted(set(first.values())) == ["long", "short"]
        n = {p: sum(1 for v in first.values() if v == p) for p in ("short", "long")}
        assert min(n.values()) >= 10  # both paths reach min_contacts before anyone decides
        # Every "long" contact buys, one "short" contact does; one buyer's order arrives twice.
        buyers = [e for e, p in first.items() if p == "long"] + [next(e for e, p in first.items() if p == "short")]
        sim.advance(DEFAULT_START + timedelta(hours=6))
        for i, email in enumerate(buyers):
            sim.send(ev(f"o{i}", "order.paid", email, {"total": 10}))
        sim.send(ev("o0", "order.paid", buyers[0], {"total": 10}))
        stats = SplitTests(sim.store).stats("subject-test", "subject")
        assert (stats["n_short"], stats["n_long"]) == (n["short"], n["long"])
        assert (stats["c_short"], stats["c_long"]) == (1, n["long"])  # the redelivered order counted once

        # Both paths have min_contacts and conversions, but `after` (1d) has not passed since the first contact:
        # contacts reaching the split now still go by their hash, and no winner is written.
        for i in range(40, 50):
            sim.send(ev(f"s{i}", "list.subscribed", f"c{i}@example.com", {"list": "news"}))
        early = {e: p for e, p in paths_by_email(sim).items() if e not in first}
        assert len(early) == 10 and set(early.values()) == {"long", "short"}
        assert "winner" not in SplitTests(sim.store).stats("subject-test", "subject")
        bought = {"short": 1, "long": n["long"]}
        for p in ("short", "long"):
            n[p] += sum(1 for v in early.values() if v == p)

        sim.advance(DEFAULT_START + timedelta(days=2))
        for i in range(50, 60):
            sim.send(ev(f"s{i}", "list.subscribed", f"c{i}@example.com", {"list": "news"}))
        later = {e: p for e, p in paths_by_email(sim).items() if e not in first and e not in early}
        assert set(later.values()) == {"long"} and len(later) == 10
        stats = SplitTests(sim.store).stats("subject-test", "subject")
        assert stats["winner"] == "long"
        assert (
            stats["basis"] == f"by goal: short 1/{n['short']} = {100 / n['short']:.1f}%, "
            f"long {bought['long']}/{n['long']} = {100 * bought['long'] / n['long']:.1f}%"
        )
        c45 = next(c["id"] for c in sim.summary()["contacts"] if c["email"] == "c55@example.com")
        why = next(r["why"] for r in sim.timeline() if r["step"] == "subject" and r["contact"] == c45)
        assert why.startswith("winner long chosen ")


def test_winner_by_email_opened_counts_opens_of_the_paths_own_message() -> None:
    wf = parse_workflow(yaml.safe_load(WORKFLOW % "email_opened"))
    with Simulation([wf]) as sim:
        for i in range(30):
            sim.send(ev(f"s{i}", "list.subscribed", f"c{i}@example.com", {"list": "news"}))
        first = paths_by_email(sim)
        contacts = {c["email"]: c for c in sim.summary()["contacts"]}
        for email, path in first.items():
            if path == "short":
                (msg,) = contacts[email]["messages"]
                assert msg["template"] == "offer-short"
                sim.send(ev(f"open-{email}", "email.opened", email, {"message_id": msg["message_id"]}))
                sim.send(ev(f"open2-{email}", "email.opened", email, {"message_id": msg["message_id"]}))
        # An open of an unknown message counts for nothing.
        sim.send(ev("stray", "email.opened", "c0@example.com", {"message_id": "nope"}))
        stats = SplitTests(sim.store).stats("subject-test", "subject")
        n_short = sum(1 for p in first.values() if p == "short")
        assert stats.get("c_short") == n_short and "c_long" not in stats
        # The default `after` (1d) has not passed: contacts reaching the split now still go by their hash.
        for i in range(10):
            sim.send(ev(f"early{i}", "list.subscribed", f"early{i}@example.com", {"list": "news"}))
        assert {p for e, p in paths_by_email(sim).items() if e.startswith("early")} == {"long", "short"}
        assert "winner" not in SplitTests(sim.store).stats("subject-test", "subject")
        sim.advance(DEFAULT_START + timedelta(days=1, minutes=1))
        for i in range(5):
            sim.send(ev(f"late{i}", "list.subscribed", f"late{i}@example.com", {"list": "news"}))
        assert {p for e, p in paths_by_email(sim).items() if e.startswith("late")} == {"short"}
