"""What the deployed router does where the local runtime does it another way: engagement events whose checks were
taken but failed to route, and feedback that failed before it was absorbed, are kept and replayed whole."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from functions.trigger_router import router
from shared.runtime.engagement import ChecksNotRouted
from shared.runtime.replay import list_dead_letters, replay
from shared.store.messages import MessageStore
from stepwise.simulate import TABLE
from tests.integration.intake_support import Context
from tests.integration.support import event, workflow
from tests.integration.test_router_consumers import (
    SCHEDULER_ENV,
    UNOPENED,
    contact_id,
    only_message,
    router_sim,
    runs,
    ses,
    templates,  # noqa: F401  (the fixture: the local sender renders from it)
)
from tests.integration.test_senders import SEND_ONE


def test_engagement_events_that_fail_to_route_are_kept_whole_and_replay_routes_them(
    templates: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with router_sim([workflow(SEND_ONE), UNOPENED], monkeypatch, **SCHEDULER_ENV) as sim:
        sim.lifecycle.activate("unopened")  # from the start, as its machine's creation date does in AWS
        sim.send(event("s", "list.subscribed", {"list": "a"}, email="kim@example.com"))
        cid = contact_id(sim, "kim@example.com")
        # The contact's profile is briefly unreadable (here: gone) when the poll runs: routing refuses the event.
        profile = sim.store.get_item(f"CONTACT#{cid}", "PROFILE")
        assert profile is not None
        sim.store.delete_item(f"CONTACT#{cid}", "PROFILE")
        sim.stack.clock.advance_to(sim.now + timedelta(days=3, minutes=1))
        with pytest.raises(ChecksNotRouted):
            router.schedule_handler({"kind": "engagement_checks"}, Context())  # type: ignore[arg-type]
        assert sim.store.query_prefix(f"CONTACT#{cid}", "CHECK#") == []  # taken: a new poll cannot find them
        (letter,) = list_dead_letters(router.deps().archive)
        kept = letter.record["payload"]
        assert letter.source == "schedule" and kept["kind"] == "engagement_checks"
        kept_events = sorted((e["type"], e["contact"]["contact_id"]) for e in kept["events"])
        assert kept_events == [("email.not_clicked", cid), ("email.not_opened", cid)]
        assert "kim@example.com" not in letter.error  # the error names event ids, never an address

        sim.store.put_item(profile)  # the profile is back
        (result,) = replay(router.deps().archive, router.deps().router)
        assert result.ok, result.error
        sim.stack.settle()
        (run,) = runs(sim, "unopened")
        assert run["contact_id"] == cid and "unopened" in sim.store.get(cid).tags
        assert list_dead_letters(router.deps().archive) == []


def test_a_replayed_bounce_suppresses_the_address_as_the_feedback_handler_does(
    templates: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with router_sim([workflow(SEND_ONE)], monkeypatch) as sim:
        sim.send(event("s", "list.subscribed", {"list": "a"}, email="lou@example.com"))
        m = only_message(sim, "lou@example.com")
        # A bounce kept as a dead letter before it was absorbed (its first attempts failed early).
        router.deps().archive.put_dead_letter(
            "eb-bounce-9", "feedback", {"event": ses("Bounce", m, "eb-bounce-9")}, "ThrottlingException", sim.now
        )
        (result,) = replay(router.deps().archive, router.deps().router)
        assert result.ok, result.error
        suppressed = sim.store.get_item("SUPPRESS#email#lou@example.com", "SUPPRESS")
        assert suppressed is not None and suppressed["reason"] == "bounce"
        assert MessageStore(TABLE, sim.stack.dynamodb).window("stepwise-test", sim.now - timedelta(days=1)) == {}
