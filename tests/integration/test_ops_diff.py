"""`stepwise diff`: step changes between two versions, and the contacts waiting on a step the new one removes,
counted from the run index alone (each running enrolment's current step on its key: no Scan, nothing per contact)."""

from __future__ import annotations

import io
import json
from datetime import timedelta

from shared import constants as C
from shared.store.operations import OperationsStore
from shared.store.run_index import SHARDS, run_index_pk
from shared.workflow.compiler import compile_workflow
from stepwise.ops.diff import RUNNER_ARN, diff, print_diff, step_specs, waiting_by_step
from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import event, workflow
from tests.integration.test_ops_stats import count_requests

V1 = """
name: onboarding
triggers: [{event: list.subscribed}]
steps:
  - id: hello
    add_tag: New
  - id: think-about-it
    wait: 5d
  - id: follow-up
    send_email: {template: welcome-email, subject: "Still there?"}
"""

V2 = """
name: onboarding
triggers: [{event: list.subscribed}]
steps:
  - id: hello
    add_tag: [New, Onboarding]
  - id: follow-up
    send_email: {template: welcome-email, subject: Welcome aboard}
  - id: later
    wait: 1d
"""


def test_diff_counts_contacts_waiting_on_a_removed_step() -> None:
    v1, v2 = workflow(V1), workflow(V2)
    with Simulation([v1]) as sim:
        for i in range(3):
            sim.send(event(f"s{i}", "list.subscribed", {"list": "news"}, email=f"w{i}@example.com"))
        sim.advance(DEFAULT_START + timedelta(days=6))  # these three are through: none waits any more
        for i in range(3, 7):
            sim.send(event(f"s{i}", "list.subscribed", {"list": "news"}, email=f"w{i}@example.com"))
        sim.advance(DEFAULT_START + timedelta(days=7))
        ops = OperationsStore(sim.store, sfn=sim.stack.sfn)

        calls = count_requests(sim.store.client)
        waiting, read = waiting_by_step(ops, "onboarding")
        # The three through read completed: off the running range, so only the four running entries are read.
        assert waiting == {"think-about-it": 4} and read == 4
        # One page of each run index shard and of the unsharded key: no Scan, no Query per contact.
        assert calls == {"Query": SHARDS + 1}
        report = diff(compile_workflow(v1, RUNNER_ARN), compile_workflow(v2, RUNNER_ARN), "onboarding", ops, v1, v2)
        changes = {(c.step, c.change) for c in report.changes}
        assert ("think-about-it", "removed") in changes
        assert ("later", "added") in changes
        assert ("hello", "changed") in changes and ("follow-up", "changed") in changes
        hello = next(c for c in report.changes if c.step == "hello" and c.change == "changed")
        assert hello.detail == ['add_tag: ["New"] -> ["New", "Onboarding"]']
        assert ("hello", "moved") in changes  # hello now leads to follow-up
        assert report.waiting == {"think-about-it": 4}
        assert report.affected == {"think-about-it": 4}
        assert report.as_dict()["contacts_affected"] == 4
        json.dumps(report.as_dict())

        # Against what is deployed: the definition the machine runs now.
        deployed = ops.deployed_definition(sim.arn_template.replace("{workflow}", "onboarding"))
        assert step_specs(deployed) == step_specs(compile_workflow(v1, RUNNER_ARN))
        again = diff(deployed, compile_workflow(v2, RUNNER_ARN), "onboarding", ops)
        assert again.affected == {"think-about-it": 4}


V3_MOVED = """
name: onboarding
triggers: [{event: list.subscribed}]
steps:
  - id: hello
    add_tag: New
  - id: think-about-it
    wait: 5d
  - id: nudge
    add_tag: Nudged
  - id: follow-up
    send_email: {template: welcome-email, subject: "Still there?"}
"""


def test_diff_counts_contacts_waiting_on_a_moved_step() -> None:
    v1, v3 = workflow(V1), workflow(V3_MOVED)
    with Simulation([v1]) as sim:
        for i in range(3):
            sim.send(event(f"m{i}", "list.subscribed", {"list": "news"}, email=f"m{i}@example.com"))
        ops = OperationsStore(sim.store, sfn=sim.stack.sfn)
        report = diff(compile_workflow(v1, RUNNER_ARN), compile_workflow(v3, RUNNER_ARN), "onboarding", ops, v1, v3)
        kinds = {(c.step, c.change) for c in report.changes}
        # think-about-it stays but now leads to nudge: moved, not removed.
        assert ("think-about-it", "moved") in kinds and ("nudge", "added") in kinds
        assert not any(c.step == "think-about-it" and c.change == "removed" for c in report.changes)
        assert report.waiting == {"think-about-it": 3}
        assert report.affected == {"think-about-it": 3}
        assert report.as_dict()["contacts_affected"] == 3
        assert json.loads(json.dumps(report.as_dict()))["affected"] == {"think-about-it": 3}
        out = io.StringIO()
        print_diff(report, out)
        text = out.getvalue()
        assert "~ think-about-it: moved" in text
        assert "contacts waiting on a step this version removes or moves: 3" in text
        assert "  think-about-it (moved): 3" in text


def test_run_index_is_written_on_enrolment() -> None:
    with Simulation([workflow(V1)]) as sim:
        sim.send(event("s1", "list.subscribed", {"list": "news"}, email="idx@example.com"))
        ops = OperationsStore(sim.store)
        (run,) = list(ops.runs("onboarding"))
        assert run.status == "running"
        item = sim.store.get_item(f"CONTACT#{run.contact_id}", "ENROLL#onboarding")
        assert item is not None and item[C.GSI1_PK] == run_index_pk("onboarding", run.contact_id)
        assert item[C.GSI1_PK].startswith("RUN#onboarding#")
        assert list(ops.runs("onboarding", status="stopped")) == []
        # The key says where the run is: at the 5-day wait since it entered (the Task before it recorded it).
        assert (run.state, run.step, run.at) == ("waiting", "think-about-it", sim.now.isoformat())
        assert [r.contact_id for r in ops.runs("onboarding", status="running", state="waiting")] == [run.contact_id]
        assert list(ops.runs("onboarding", status="running", state="held")) == []
