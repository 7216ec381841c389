"""Regression tests for what the differential run found about runs that stop or loop: records written ahead of a
stop, go-tos reached through a wait and go-tos in on_timeout against settings.max_loops, on the local stack.

Each test names the one-line change (mutation) it was checked to fail on."""

from __future__ import annotations

from stepwise.simulate import Simulation
from tests.integration.support import at, event, steps
from tests.integration.support import workflow as wf

ANA = "ana@example.com"

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
JOIN_AND_LEAVE = """
name: join-and-leave
triggers: [{event: form.submitted}]
steps:
  - id: join
    subscribe: {campaign: promo}
  - id: a-day
    wait: 1d
  - id: stop-promo
    remove_from_campaign: promo
"""


def test_a_run_stopped_during_a_wait_keeps_no_record_of_the_end_after_it() -> None:
    # Kills: shared/history.py drop_unreached, `> now` made `> now + timedelta(days=2)` (promo-hello's Task wrote
    # promo-done's record ahead at +2d; the stop at +1d must drop it, and keep what the contact reached).
    with Simulation([wf(PROMO), wf(JOIN_AND_LEAVE)]) as sim:
        sim.send(event("f1", "form.submitted", {"form": "x"}, email=ANA))
        sim.finish()
        assert steps(sim, "promo", email=ANA) == [(at(), "promo-hello", "done"), (at(), "promo-wait", "waiting")]
