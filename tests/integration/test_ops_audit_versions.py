"""Versions behind the `live` alias, as the audit of issue 10 found them untested: `stepwise diff FILE --deployed`
follows the alias to the version it runs (not the machine's latest definition) and counts the contacts waiting on
a step the file removes; `start_workflow` into a workflow whose new version is deployed leaves a contact inside
on version 1's path, and a contact who is not inside enters the newest version."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from shared import constants as C
from shared.store.operations import OperationsStore
from shared.workflow.compiler import compile_workflow, workflow_version
from stepwise.cli import main
from stepwise.ops.stuck import find_stuck
from stepwise.simulate import DEFAULT_START, TABLE, Simulation
from tests.integration.support import contact, event, history, messages, workflow

ONBOARDING = """
name: onboarding
triggers: [{event: list.subscribed, where: {list: trial}}]
steps:
  - id: hello
    send_email: {template: hello}
  - id: three-days
    wait: 3d
  - id: tips
    send_email: {template: tips-v1}
  - id: last
    send_email: {template: last-v1}
"""
# Version 2: no wait, other templates after hello.
ONBOARDING_V2 = ONBOARDING.replace("  - id: three-days\n    wait: 3d\n", "").replace("-v1", "-v2")
HANDOVER = """
name: handover
triggers: [{event: tag.added, where: {tag: handover}}]
steps:
  - id: move
    start_workflow: {workflow: onboarding, at: tips}
"""


def _function_arn(sim: Simulation) -> str:
    return str(sim.stack.lambda_.get_function(FunctionName="stepwise-step-runner")["Configuration"]["FunctionArn"])


def _publish(sim: Simulation, name: str, text: str | None = None) -> str:
    """The machine's definition (or `text` compiled) published as its next version (moto: UpdateStateMachine with
    publish=True, as the CDK app's deploy does); the version ARN."""
    sfn, machine = sim.stack.sfn, sim.machines[name]
    definition = (
        json.dumps(compile_workflow(workflow(text), _function_arn(sim)))
        if text is not None
        else sfn.describe_state_machine(stateMachineArn=machine)["definition"]
    )
    return str(
        sfn.update_state_machine(stateMachineArn=machine, definition=definition, publish=True)["stateMachineVersionArn"]
    )


def _live(sim: Simulation, name: str, routes: dict[str, int]) -> str:
    """The `live` alias of the machine routed as `routes` (version ARN -> weight), created or moved; the enroller
    starts new entries through it, as in AWS."""
    sfn, machine = sim.stack.sfn, sim.machines[name]
    config = [{"stateMachineVersionArn": v, "weight": w} for v, w in routes.items()]
    alias = f"{machine}:{C.STATE_MACHINE_ALIAS}"
    if any(
        a["stateMachineAliasArn"] == alias
        for a in sfn.list_state_machine_aliases(stateMachineArn=machine)["stateMachineAliases"]
    ):
        sfn.update_state_machine_alias(stateMachineAliasArn=alias, routingConfiguration=config)
    else:
        sfn.create_state_machine_alias(name=C.STATE_MACHINE_ALIAS, routingConfiguration=config)
    sim.enroller.arn_template = sim.arn_template + f":{C.STATE_MACHINE_ALIAS}"
    return alias


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_diff_deployed_follows_the_live_alias_and_counts_who_waits_on_a_removed_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new_file = tmp_path / "onboarding.yaml"
    new_file.write_text(ONBOARDING_V2)
    with Simulation([workflow(ONBOARDING)]) as sim:
        v1 = _publish(sim, "onboarding")
        _live(sim, "onboarding", {v1: 100})
        for i in range(4):
            sim.send(event(f"s{i}", "list.subscribed", {"list": "trial"}, email=f"w{i}@example.com"))
        sim.advance(DEFAULT_START + timedelta(days=1))  # all four wait at three-days (in version 1)
        # A canary: version 2 is published (the machine's own definition is now version 2's) and takes 10%.
        v2 = _publish(sim, "onboarding", ONBOARDING_V2)
        _live(sim, "onboarding", {v1: 90, v2: 10})
        live = sim.arn_template + f":{C.STATE_MACHINE_ALIAS}"

        code, out, err = _cli(
            capsys, "diff", str(new_file), "--deployed", "--table", TABLE, "--machine-arn-template", live, "--json"
        )
        assert (code, err) == (0, "")
        report = json.loads(out)
        changes = {(s["step"], s["change"]) for s in report["steps"]}
        # Against version 1 (the alias's heaviest route): the wait is gone, the sends after it changed.
        assert ("three-days", "removed") in changes
        assert ("tips", "changed") in changes and ("last", "changed") in changes
        assert report["waiting"] == {"three-days": 4}
        assert report["affected"] == {"three-days": 4} and report["contacts_affected"] == 4

        code, out, _ = _cli(
            capsys, "diff", str(new_file), "--deployed", "--table", TABLE, "--machine-arn-template", live
        )
        assert code == 0
        assert "- three-days: removed" in out
        assert "contacts waiting on a step this version removes or moves: 4" in out
        assert "  three-days (removed): 4" in out

        # The unqualified machine runs version 2's definition: a diff against it sees no step change, and nobody
        # stranded: the alias is what says what runs.
        code, out, _ = _cli(
            capsys,
            "diff",
            str(new_file),
            "--deployed",
            "--table",
            TABLE,
            "--machine-arn-template",
            sim.arn_template,
            "--json",
        )
        assert code == 0 and json.loads(out)["contacts_affected"] == 0 and json.loads(out)["steps"] == []

        # The alias moved wholly to version 2: nothing is removed any more against what runs (the four still wait
        # in version 1, which they keep).
        _live(sim, "onboarding", {v2: 100})
        code, out, _ = _cli(
            capsys, "diff", str(new_file), "--deployed", "--table", TABLE, "--machine-arn-template", live, "--json"
        )
        assert code == 0 and json.loads(out)["affected"] == {} and json.loads(out)["waiting"] == {"three-days": 4}

        # `stuck` through the same alias judges the four by version 1's three-day wait (version 2, which the alias
        # runs now, has no such step): due three days after they reached it, overdue a day later.
        code, out, err = _cli(capsys, "stuck", "onboarding", "--table", TABLE, "--machine-arn-template", live, "--json")
        assert (code, err) == (0, "") and json.loads(out)["stuck"] == []  # day 1: nobody is late
        ops = OperationsStore(sim.store, sfn=sim.stack.sfn)
        report = find_stuck(
            ops, "onboarding", live.replace("{workflow}", "onboarding"), now=DEFAULT_START + timedelta(days=4, hours=2)
        )
        assert [(s.problem, s.step) for s in report.stuck] == [("overdue", "three-days")] * 4
        assert all(s.detail.startswith(f"due {(DEFAULT_START + timedelta(days=3)).isoformat()}") for s in report.stuck)


def test_start_workflow_after_a_deploy_leaves_a_contact_inside_on_version_1() -> None:
    v1_hash, v2_hash = workflow_version(workflow(ONBOARDING)), workflow_version(workflow(ONBOARDING_V2))
    with Simulation([workflow(ONBOARDING), workflow(HANDOVER)]) as sim:
        v1 = _publish(sim, "onboarding")
        _live(sim, "onboarding", {v1: 100})
        handover = _publish(sim, "handover")
        sim.enroller.arn_template = sim.arn_template + f":{C.STATE_MACHINE_ALIAS}"
        sim.stack.sfn.create_state_machine_alias(
            name=C.STATE_MACHINE_ALIAS, routingConfiguration=[{"stateMachineVersionArn": handover, "weight": 100}]
        )
        sim.send(event("a1", "list.subscribed", {"list": "trial"}, email="ana@example.com"))
        sim.advance(DEFAULT_START + timedelta(days=1))
        v2 = _publish(sim, "onboarding", ONBOARDING_V2)
        _live(sim, "onboarding", {v2: 100})
        # Ana is handed over into onboarding at `tips` while her version-1 run waits; Bo, who is not inside, too.
        sim.send(event("h-ana", "tag.added", {"tag": "handover"}, email="ana@example.com"))
        sim.send(event("h-bo", "tag.added", {"tag": "handover"}, email="bo@example.com"))
        sim.finish()

        # Ana: version 1's path all the way (hello, the wait, tips-v1, last-v1): start_workflow into a workflow she
        # is running is refused ("already in this workflow"), her run goes on in the version she entered.
        assert [m[2] for m in messages(sim, email="ana@example.com")] == ["hello", "tips-v1", "last-v1"]
        assert {h["version"] for h in history(sim, "onboarding", email="ana@example.com")} == {v1_hash}
        ana = contact(sim, email="ana@example.com")["id"]
        runs = [
            e
            for e in sim.stack.sfn.list_executions(stateMachineArn=sim.machines["onboarding"])["executions"]
            if json.loads(sim.stack.sfn.describe_execution(executionArn=e["executionArn"])["input"])["contact_id"]
            == ana
        ]
        assert len(runs) == 1  # no second run was started for her
        # Bo: a new entry at tips, in the newest version.
        assert [m[2] for m in messages(sim, email="bo@example.com")] == ["tips-v2", "last-v2"]
        assert {h["version"] for h in history(sim, "onboarding", email="bo@example.com")} == {v2_hash}
