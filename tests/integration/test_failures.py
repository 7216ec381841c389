"""Failures a user must see: a webhook that stays down is retried with backoff, then the run fails visibly."""

from __future__ import annotations

import itertools
import json
import socket
from datetime import datetime

from shared.events import ContactEvent
from shared.workflow.compiler import compile_workflow
from shared.workflow.cost import analyse
from shared.workflow.model import parse_workflow
from stepwise.simulate import DEFAULT_START, Simulation


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: connections are refused


def test_webhook_down_is_retried_with_backoff_then_fails_with_its_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    wf = parse_workflow(
        {
            "name": "crm-sync",
            "triggers": [{"event": "list.subscribed"}],
            "steps": [{"id": "to-crm", "call_webhook": {"url": url, "timeout": 2}}],
        }
    )
    event = {"id": "s1", "type": "list.subscribed", "contact": {"email": "a@example.com"}, "data": {"list": "x"}}
    with Simulation([wf]) as sim:
        sim.send(ContactEvent.model_validate(event))
        sim.finish()
        (arn,) = sim.execution_arns("crm-sync")
        desc = sim.stack.sfn.describe_execution(executionArn=arn)
        assert desc["status"] == "FAILED"
        assert desc["error"] == "WebhookFailed"
        history = sim.stack.history(arn)
        attempts = [e for e in history if e["type"] == "TaskScheduled"]
        assert len(attempts) == 6  # the first try and five retries
        # `stepwise cost` names those five retries (each billed as a transition) for a webhook that stays down.
        report = analyse(compile_workflow(wf, "arn:aws:lambda:us-east-1:123456789012:function:f"))
        assert report.webhook_retries == len(attempts) - 1
        assert report.error_retries == 3  # Lambda's own errors: the ASL default, counted apart
        # Backoff in virtual time: 30s + 60s + 120s + 240s + 480s between the tries.
        started = [datetime.fromisoformat(str(e["timestamp"])) for e in attempts]
        gaps = [round((b - a).total_seconds()) for a, b in itertools.pairwise(started)]
        assert gaps == [30, 60, 120, 240, 480]
        failed = [r for r in sim.timeline() if r["outcome"] == "FAILED"]
        assert failed and "webhook unreachable" in failed[0]["why"]
        # Nothing was recorded as done: the step's history record is written only after the call succeeds.
        assert [r["step"] for r in sim.timeline() if r["step"] == "to-crm"] == []
        assert started[0] >= DEFAULT_START
        assert json.loads(desc["input"])["workflow"] == "crm-sync"


def test_missing_contact_fails_with_a_typed_error_naming_the_contact() -> None:
    wf = parse_workflow({"name": "welcome", "steps": [{"id": "hello", "send_email": {"template": "hi"}}]})
    with Simulation([wf]) as sim:
        started = sim.enroller.enrol("c-gone", "welcome", {}, key="k1")
        sim.finish()
        assert started.execution_arn is not None
        desc = sim.stack.sfn.describe_execution(executionArn=started.execution_arn)
        assert (desc["status"], desc["error"]) == ("FAILED", "ContactNotFound")
        assert "contact c-gone does not exist" in desc["cause"]
        states = [
            e["stateEnteredEventDetails"]["name"]
            for e in sim.stack.history(started.execution_arn)
            if "stateEnteredEventDetails" in e
        ]
        assert states == ["Entry", "hello", "Failed-ContactNotFound"]
