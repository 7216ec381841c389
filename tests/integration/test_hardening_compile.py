"""Validate OK means it deploys and runs: the known cases that validated and then failed at create or at run."""

from __future__ import annotations

import json

import boto3
from moto import mock_aws

from shared.workflow.compiler import compile_workflow
from stepwise.simulate import Simulation
from tests.integration.support import event, executions, steps, workflow

ARN = "arn:aws:lambda:us-east-1:123456789012:function:stepwise-step-runner"
ROLE = "arn:aws:iam::123456789012:role/stepwise"

CHRISTMAS = """
name: christmas
triggers: [{event: list.subscribed}]
steps:
  - id: eve
    wait_until: {at: 2026-12-24T08:00:00+01:00}
  - id: card
    add_tag: greeted
"""

GAVE_UP = """
name: gave-up
triggers: [{event: list.subscribed}]
steps:
  - id: wait-click
    wait_until:
      event: email.clicked
      timeout: 1d
      on_timeout:
        - id: nudge
          add_tag: cold
        - end: gave up
  - id: thanks
    add_tag: warm
"""


def test_a_timestamp_with_an_offset_compiles_to_utc_and_is_accepted_by_create_state_machine() -> None:
    asl = compile_workflow(workflow(CHRISTMAS), ARN)
    assert asl["States"]["eve"]["Timestamp"] == "2026-12-24T07:00:00Z"
    with mock_aws():
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        made = sfn.create_state_machine(name="christmas", definition=json.dumps(asl), roleArn=ROLE)
        assert made["stateMachineArn"].endswith(":christmas")


def test_an_end_without_id_after_an_action_in_on_timeout_runs_to_the_end() -> None:
    wf = workflow(GAVE_UP)
    with Simulation([wf]) as sim:
        sim.send(event("s1", "list.subscribed", {"list": "news"}, email="a@example.com"))
        sim.finish()
        (run,) = executions(sim, "gave-up")
        assert run["status"] == "SUCCEEDED", run.get("cause")
        path = [(step, outcome) for _, step, outcome in steps(sim, "gave-up", email="a@example.com")]
        assert ("end-0-on-timeout-1", "ended") in path
        assert ("thanks", "done") not in path
