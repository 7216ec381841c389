"""A call_webhook to the instance metadata address on the local stack (which allows loopback only): the run fails
once, InvalidStep with the message a user sees, never retried and nothing sent to the address; `stepwise stuck`
and `stepwise history` show it."""

from __future__ import annotations

import io
import json
from datetime import timedelta

from shared.store.operations import OperationsStore
from stepwise.ops.history import contact_history, print_report
from stepwise.ops.stuck import find_stuck
from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import contact, event, executions, messages, workflow

METADATA = """
name: %(name)s
triggers: [{event: form.submitted}]
steps:
  - id: tell-crm
    call_webhook: {url: "%(url)s", body: {source: form}}
  - id: thanks
    send_email: {template: thanks}
"""

PLAIN = "step tell-crm: webhook refused: host 169.254.169.254: plain http is refused; use https, or add the host to "
PLAIN += "STEPWISE_WEBHOOK_ALLOW for a trusted one"
LINK_LOCAL = (
    "step tell-crm: webhook refused: host 169.254.169.254: resolves to 169.254.169.254, a link-local address; "
    "webhooks may only call public addresses (add the host or network to STEPWISE_WEBHOOK_ALLOW to allow it)"
)


def test_a_webhook_to_the_metadata_address_fails_the_run_once_with_invalid_step_naming_why() -> None:
    flows = [
        workflow(METADATA % {"name": "plain", "url": "http://169.254.169.254/latest/meta-data/"}),
        workflow(METADATA % {"name": "secure", "url": "https://169.254.169.254/latest/meta-data/"}),
    ]
    with Simulation(flows) as sim:
        sim.send(event("f1", "form.submitted", {"form": "demo"}, email="noa@example.com"))
        sim.advance(DEFAULT_START + timedelta(minutes=30))  # a retry (30 s, doubling) would have run by now
        sim.finish()
        for name, message in (("plain", PLAIN), ("secure", LINK_LOCAL)):
            (run,) = executions(sim, name)
            assert (run["status"], run["error"]) == ("FAILED", "InvalidStep"), run
            assert json.loads(run["cause"])["errorMessage"] == message
            tries = [e for e in sim.stack.history(run["executionArn"]) if e["type"] == "TaskFailed"]
            assert [e["taskFailedEventDetails"]["error"] for e in tries] == ["InvalidStep"]  # no retry
        assert messages(sim, email="noa@example.com") == []  # the step after it never ran

        ops = OperationsStore(sim.store, sfn=sim.stack.sfn, workers=1)
        noa = contact(sim, email="noa@example.com")["id"]
        # stuck asks Step Functions: the failed run, at no recorded step (the first one failed), with the error and
        # the message alone (the Lambda's cause is JSON with a stack trace and file paths: not shown).
        ((stuck,),) = [find_stuck(ops, "plain", sim.machines["plain"]).stuck]
        assert (stuck.contact_id, stuck.problem, stuck.step) == (noa, "failed", "")
        assert stuck.detail == f"InvalidStep: {PLAIN}"
        # history reads the contact's records only: the refused step committed none, and the enrolment takes its
        # run's final status when the run ends (Router.execution_ended), so both runs read "failed" there.
        report = contact_history(ops, "noa@example.com")
        assert report["steps"] == [] and report["messages"] == []
        assert sorted((w["workflow"], w["status"]) for w in report["workflows"]) == [
            ("plain", "failed"),
            ("secure", "failed"),
        ]
        out = io.StringIO()
        print_report(report, out)
        assert f"  plain version ?: entered {DEFAULT_START.isoformat()}, failed, 1 entry\n" in out.getvalue()
