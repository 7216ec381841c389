"""The step runner's input errors are typed: a payload it cannot read fails the run once with InvalidStep."""

from __future__ import annotations

import json

from shared.workflow.compiler import compile_workflow
from stepwise.simulate import Simulation
from tests.integration.support import workflow

WELCOME = """
name: welcome
triggers: [{event: list.subscribed}]
steps:
  - id: hello
    add_tag: welcomed
"""


def test_a_payload_the_runner_cannot_read_fails_once_with_invalid_step() -> None:
    wf = workflow(WELCOME)
    with Simulation([wf]) as sim:
        fn = sim.stack.lambda_.get_function(FunctionName="stepwise-step-runner")["Configuration"]["FunctionArn"]
        asl = compile_workflow(wf, fn)
        # What a machine compiled by another version could send: a field this runner does not know.
        asl["States"]["hello"]["Parameters"]["Payload"]["priority"] = "high"
        arn = sim.stack.create_state_machine("stepwise-welcome-next", asl)
        started = sim.stack.sfn.start_execution(
            stateMachineArn=arn, name="r1", input=json.dumps({"contact_id": "c1", "event": {}, "run": {}})
        )
        sim.finish()
        desc = sim.stack.sfn.describe_execution(executionArn=started["executionArn"])
        assert (desc["status"], desc["error"]) == ("FAILED", "InvalidStep")
        cause = json.loads(desc["cause"])  # the Lambda's error payload
        assert cause["errorMessage"] == "payload field priority: Extra inputs are not permitted (1 problem(s))"
        history = sim.stack.history(started["executionArn"])
        assert len([e for e in history if e["type"] == "TaskScheduled"]) == 1  # not retried
