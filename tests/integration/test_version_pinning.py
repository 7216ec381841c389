"""Version pinning (issue 10): a contact inside a workflow keeps the version it entered with after a new version is
published behind the `live` alias, also when a goal stops its run and restarts it at the goal."""

from __future__ import annotations

import json
from datetime import timedelta

from shared import constants as C
from shared.store.contacts import contact_pk
from shared.workflow.compiler import compile_workflow, workflow_version
from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import event, history, messages, workflow

V1 = """
name: onboarding
triggers: [{event: list.subscribed, where: {list: trial}}]
steps:
  - id: hello
    send_email: {template: hello}
  - id: three-days
    wait: 3d
  - id: tips
    send_email: {template: tips-v1}
  - id: bought
    goal: {event: order.paid}
  - id: thanks
    send_email: {template: thanks-v1}
"""
# Version 2 changes what comes after the wait and after the goal.
V2 = V1.replace("tips-v1", "tips-v2").replace("thanks-v1", "thanks-v2")


def _through(sim: Simulation, arn: str) -> tuple[str, str]:
    """(version ARN, alias ARN or "") an execution was started through, as DescribeExecution answers (on the local
    stack: stepwise/local/patches.py's _patch_versions, moto bug #11)."""
    got = sim.stack.sfn.describe_execution(executionArn=arn)
    return got.get("stateMachineVersionArn", ""), got.get("stateMachineAliasArn", "")


def _publish_live(sim: Simulation, name: str) -> str:
    """Publish the machine's current definition as a version and create the `live` alias on it (as the CDK app's
    deploy does); the enroller then starts through the alias, as in AWS."""
    sfn, machine = sim.stack.sfn, sim.machines[name]
    # moto has no PublishStateMachineVersion: UpdateStateMachine with publish=True does it.
    definition = sfn.describe_state_machine(stateMachineArn=machine)["definition"]
    version = sfn.update_state_machine(stateMachineArn=machine, definition=definition, publish=True)[
        "stateMachineVersionArn"
    ]
    sfn.create_state_machine_alias(
        name=C.STATE_MACHINE_ALIAS, routingConfiguration=[{"stateMachineVersionArn": version, "weight": 100}]
    )
    sim.enroller.arn_template = sim.arn_template + f":{C.STATE_MACHINE_ALIAS}"
    return str(version)


def _deploy(sim: Simulation, text: str) -> str:
    """A redeploy: the new definition published as the next version, the alias moved to it."""
    sfn, machine = sim.stack.sfn, sim.machines["onboarding"]
    fn = sim.stack.lambda_.get_function(FunctionName="stepwise-step-runner")["Configuration"]["FunctionArn"]
    definition = json.dumps(compile_workflow(workflow(text), fn))
    version = sfn.update_state_machine(stateMachineArn=machine, definition=definition, publish=True)
    alias = f"{machine}:{C.STATE_MACHINE_ALIAS}"
    sfn.update_state_machine_alias(
        stateMachineAliasArn=alias,
        routingConfiguration=[{"stateMachineVersionArn": version["stateMachineVersionArn"], "weight": 100}],
    )
    return str(version["stateMachineVersionArn"])


def _templates(sim: Simulation, email: str) -> list[str]:
    return [m[2] for m in messages(sim, email=email)]


def test_a_contact_keeps_its_version_after_a_deploy_and_through_a_goal_jump() -> None:
    """No test-side patch: the local stack itself starts through versions and aliases (stepwise/local/patches.py)."""
    v1_hash, v2_hash = workflow_version(workflow(V1)), workflow_version(workflow(V2))
    with Simulation([workflow(V1)]) as sim:
        v1 = _publish_live(sim, "onboarding")
        sim.send(event("a1", "list.subscribed", {"list": "trial"}, email="ana@example.com"))
        sim.advance(DEFAULT_START + timedelta(days=1))
        v2 = _deploy(sim, V2)
        assert v2.endswith(":2") and v1.endswith(":1")
        sim.send(event("b1", "list.subscribed", {"list": "trial"}, email="bo@example.com"))
        sim.advance(DEFAULT_START + timedelta(days=2))
        # Ana meets the goal during her wait: her run is stopped and restarted at the goal, in version 1.
        sim.send(event("a2", "order.paid", {"order_id": "o1", "total": 30}, email="ana@example.com"))
        sim.finish()

        assert _templates(sim, "ana@example.com") == ["hello", "thanks-v1"]
        assert {h["version"] for h in history(sim, email="ana@example.com")} == {v1_hash}
        # Bo entered after the deploy: version 2 all the way.
        assert _templates(sim, "bo@example.com") == ["hello", "tips-v2", "thanks-v2"]
        assert {h["version"] for h in history(sim, email="bo@example.com")} == {v2_hash}
        # The goal's run was started through version 1's ARN, not the alias, and the enrolment notes it.
        ana = next(c for c in sim.summary()["contacts"] if c.get("email") == "ana@example.com")["id"]
        record = sim.store.get_item(contact_pk(ana), "ENROLL#onboarding")
        assert record is not None and record["version_arn"] == v1
        assert _through(sim, record["execution_arn"]) == (v1, "")
        runs = sim.stack.sfn.list_executions(stateMachineArn=sim.machines["onboarding"])["executions"]
        entries = sorted(_through(sim, e["executionArn"]) for e in runs)
        assert entries == sorted(
            [(v1, f"{sim.machines['onboarding']}:live"), (v1, ""), (v2, f"{sim.machines['onboarding']}:live")]
        )


def test_without_versions_a_restart_starts_the_machine_as_before() -> None:
    """The local stack starts unqualified machines: nothing to pin, and the goal's restart works as before."""
    with Simulation([workflow(V1)]) as sim:
        sim.send(event("a1", "list.subscribed", {"list": "trial"}, email="ana@example.com"))
        sim.advance(DEFAULT_START + timedelta(days=1))
        sim.send(event("a2", "order.paid", {"order_id": "o1", "total": 30}, email="ana@example.com"))
        sim.finish()
        assert _templates(sim, "ana@example.com") == ["hello", "thanks-v1"]
        ana = next(c for c in sim.summary()["contacts"] if c.get("email") == "ana@example.com")["id"]
        record = sim.store.get_item(contact_pk(ana), "ENROLL#onboarding")
        assert record is not None and "version_arn" not in record
