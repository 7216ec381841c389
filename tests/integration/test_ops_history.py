"""`stepwise history`: a contact found by phone shows its workflow, its steps, each condition's observed value,
its messages with their status; a record past the workflow's history_days is hidden though TTL has not run."""

from __future__ import annotations

import io
import json
from datetime import timedelta

from shared import constants as C
from shared.store.operations import OperationsStore
from stepwise.ops.history import contact_history, print_report
from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import event, workflow
from tests.integration.test_ops_stats import count_requests

WELCOME = """
name: welcome
triggers: [{event: list.subscribed}]
settings: {history_days: 2}
steps:
  - id: hello
    send_sms: {template: welcome-sms}
  - id: rest
    wait: 3d
  - id: vip
    if: {score: {gte: 50}}
    then:
      - id: tag-vip
        add_tag: VIP
    else:
      - id: tag-regular
        add_tag: Regular
"""


def test_history_by_phone_shows_condition_values_and_hides_expired_records() -> None:
    with Simulation([workflow(WELCOME)]) as sim:
        sim.send(event("e1", "score.changed", {"score": 20}, phone="+44 7700 900123"))
        sim.send(event("e2", "list.subscribed", {"list": "news"}, phone="+44 7700 900123"))
        sim.advance(DEFAULT_START + timedelta(days=4))
        ops = OperationsStore(sim.store)
        calls = count_requests(sim.store.client)
        report = contact_history(ops, "+447700900123")
        # The identity, then the contact's partition: no Scan.
        assert calls == {"BatchGetItem": 1, "Query": 1}

        assert report["identities"]["phone"] == "+447700900123"
        assert [w["workflow"] for w in report["workflows"]] == ["welcome"]
        assert report["workflows"][0]["version"]  # the content hash the execution was compiled from
        steps = [(s["step"], s["outcome"]) for s in report["steps"]]
        # hello (t0) and the wait's record (t0) expired after 2 days: hidden, though still in the table.
        assert ("hello", "done") not in steps
        assert report["hidden_expired"] >= 2
        raw = ops.partition(report["contact"]).of("HIST#")
        assert {h["step"] for h in raw} >= {"hello", "rest", "vip"}  # TTL has not deleted them
        decision = next(s for s in report["steps"] if s["step"] == "vip")
        assert decision["outcome"] == "branch else"
        (cond,) = decision["conditions"]
        assert cond["value"] == 20 and cond["result"] is False
        assert ("tag-regular", "done") in steps

        out = io.StringIO()
        print_report(report, out)
        text = out.getvalue()
        assert "observed 20 -> False" in text
        assert "expired record(s) not shown" in text


def test_history_shows_messages_with_status_while_live() -> None:
    with Simulation([workflow(WELCOME)]) as sim:
        sim.send(event("e1", "list.subscribed", {"list": "news"}, phone="+447700900124", email="Ann@Example.com"))
        sim.advance(DEFAULT_START + timedelta(hours=1))
        ops = OperationsStore(sim.store)
        report = contact_history(ops, "ann@example.com")
        (msg,) = report["messages"]
        assert (msg["channel"], msg["template"], msg["step"]) == ("sms", "welcome-sms", "hello")
        assert msg["status"] in ("queued", "sent")
        assert report["reads"]["queries"] == 1
        json.dumps(report, default=str)
        by_id = contact_history(ops, report["contact"])
        assert by_id["contact"] == report["contact"]
        assert all(i[C.SK] for i in ops.partition(report["contact"]).items)
