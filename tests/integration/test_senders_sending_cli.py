"""`stepwise sending status` / `resume` on the local stack (moto): the guard's pause seen with its rates, why and
time, the held marketing email counted, the pause lifted with an audit record, and the held email sent."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from shared import clock
from shared.messaging.reputation import ReputationGuard
from shared.store.messages import MessageStore
from stepwise.cli import main
from stepwise.outbox import LOCAL_CONFIGURATION_SET
from stepwise.simulate import TABLE, Simulation
from tests.integration.support import event, workflow
from tests.integration.test_senders import SEND_ONE, ses_sent, templates  # noqa: F401 (fixture)

STACK = ["--table", TABLE, "--configuration-set", LOCAL_CONFIGURATION_SET]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["sending", *args, *STACK]) == 0
    return capsys.readouterr().out


def test_sending_status_shows_the_pause_and_resume_lifts_it_with_an_audit_record(
    templates: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Simulation([workflow(SEND_ONE)]) as sim:
        messages = MessageStore(TABLE, sim.stack.dynamodb)
        assert "marketing email: sending" in run(capsys, "status")
        guard = ReputationGuard(messages, LOCAL_CONFIGURATION_SET)
        now = clock.now()
        messages.add_counts(LOCAL_CONFIGURATION_SET, now, {"sends": 1000}, timedelta(days=8))
        for _ in range(4):
            verdict = guard.record("complaints", now)
        assert verdict.paused_now

        sim.send(event("s-1", "list.subscribed", {"list": "a"}, email="liv@example.com"))
        assert ses_sent() == []  # held, not sent
        text = run(capsys, "status")
        assert f"marketing email: PAUSED since {now.isoformat()}: complaint rate 0.40% over 0.3%" in text
        assert "1000 sends, 0 bounces, 4 complaints" in text
        assert "complaint rate 0.40% (limit 0.30%)" in text and "held messages: 1" in text
        assert "paused by reputation guard" in text  # the audit trail

        with pytest.raises(SystemExit, match="--reason is required"):
            main(["sending", "resume", *STACK])
        text = run(capsys, "resume", "--by", "ops@example.com", "--reason", "bounced list segment removed")
        assert f"lifted the pause of {now.isoformat()}" in text and "1 held message(s) queued again" in text
        sim.settle()  # the stream's MODIFY (held -> queued) hands it to the sender
        assert len(ses_sent()) == 1

        status = json.loads(run(capsys, "status", "--json"))
        assert status["paused"] is False and status["resumed_by"] == "ops@example.com" and status["held"] == 0
        resumed, paused = status["audit"]
        assert (resumed["action"], paused["action"]) == ("resumed", "paused")
        assert resumed["reason"] == "bounced list segment removed" and resumed["held"] == 1
        assert resumed["lifted"]["why"] == paused["why"] and resumed["rates_then"]["complaint_rate"] == 0.004
        # Resuming again finds nothing to do and writes nothing.
        assert "not paused and nothing is held" in run(capsys, "resume", "--reason", "again")
        assert len(json.loads(run(capsys, "status", "--json"))["audit"]) == 2

        # The guard judges afresh from the resume (the next hour on): one more complaint does not pause again.
        later = now + timedelta(hours=2)
        virtual = clock._source  # the simulation's clock, put back after
        clock.use(lambda: later)
        try:
            assert guard.record("complaints", later).paused_now is False
            window = json.loads(run(capsys, "status", "--json"))["window"]
        finally:
            clock.use(virtual)
        assert (window["sends"], window["complaints"], window["enough"]) == (0, 1, False)
