"""The `stepwise` command, run through `main([...])`: validate, compile, graph, cost and schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.workflow.compiler import compile_workflow
from shared.workflow.cost import analyse, loops, paths, price, transitions
from shared.workflow.model import STEP_KINDS, load_workflow, workflow_files
from stepwise.cli import DEFAULT_STEP_RUNNER_ARN, main

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
WELCOME = WORKFLOWS / "welcome-series.yaml"
CHECKOUT = WORKFLOWS / "abandoned-checkout.yaml"

BROKEN = """
name: broken
triggers: [{event: tag.added}]
steps:
  - {id: remind, send_email: {template: a}}
  - {id: pause, wait: soon}
"""

LOOPING = """
name: looping
triggers: [{event: tag.added}]
steps:
  - {id: remind, send_email: {template: a}}
  - {id: pause, wait: 1d}
  - id: bought
    if: {has_tag: Purchased}
    then: [{end: true}]
    else: [{goto: remind}]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_validate_examples_folder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(WORKFLOWS)]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"{len(workflow_files(WORKFLOWS))} workflows OK"


def test_validate_names_file_step_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = write(tmp_path, "broken.yaml", BROKEN)
    assert main(["validate", str(broken), str(WELCOME)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{broken}: step pause, field wait: ")
    assert lines[-1] == "1 problem in 1 of 2 workflows"


def test_validate_reports_lint_violations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, "bad.yaml", "name: bad\nsteps:\n  - {id: a, wait: 1d}\n  - {goto: b}\n")
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}: step goto-1, field goto: go-to target 'b' is not a step id of this workflow" in out


def test_validate_missing_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "no/such/place.yaml"]) == 1
    assert "no/such/place.yaml: no such file or folder" in capsys.readouterr().out


def test_compile_prints_asl(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(WELCOME), "--step-runner-arn", "arn:aws:lambda:eu-west-1:1:function:r"]) == 0
    asl = json.loads(capsys.readouterr().out)
    assert asl["StartAt"] == "Entry"
    assert asl["States"]["welcome-sms"]["Parameters"]["FunctionName"] == "arn:aws:lambda:eu-west-1:1:function:r"


def test_compile_refuses_a_file_with_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = write(tmp_path, "broken.yaml", BROKEN)
    assert main(["compile", str(broken)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{broken}: step pause, field wait:" in captured.err


def test_graph_is_a_mermaid_flowchart(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(CHECKOUT)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("flowchart TD")
    assert 'n2{"purchased<br/>if: has tag ' in out  # decision node
    assert 'n2 -->|"then"| n3' in out and 'n2 -->|"else"| n4' in out  # branch names on the edges
    assert "n3 -.-> n5" in out  # the go-to, dashed
    assert 'n5 -->|"timeout"| done' in out
    assert "checkout.abandoned where" in out.splitlines()[1]  # the start node lists the triggers


def test_cost_of_welcome_series(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", str(WELCOME)]) == 0
    out = capsys.readouterr().out
    assert "3 transitions: Entry -> settle-in -> welcome-sms" in out
    assert "fewest 3, most 3 transitions per contact\n" in out  # no trigger delay: no StartDelay state
    assert "$0.0750 (fewest) to $0.0750 (most)" in out


def test_cost_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", str(CHECKOUT), "--json", "--contacts", "2000"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fewest"] == 6 and report["most"] == 8
    assert report["price_usd"] == pytest.approx({"fewest": 0.3, "most": 0.4, "ceiling": 0.4})
    assert report["loops"] == [] and report["ceiling"] == 8  # no loop: the ceiling is the longest path
    # Retries are billed too: five Tasks on the dearest path, three Lambda-error retries each; no webhook.
    assert report["retries"] == {"webhook_most_extra": 0, "errors_most_extra": 15}


def test_cost_counts_webhook_retries_only_on_paths_that_call_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "sync.yaml", SYNC)
    report = analyse(compile_workflow(load_workflow(path), DEFAULT_STEP_RUNNER_ARN))
    # Two paths: the VIP one calls two webhooks (5 retries each), the other none.
    assert sorted(report.path_retries) == [(0, 6), (10, 9)]
    assert (report.webhook_retries, report.error_retries) == (10, 9)
    assert main(["cost", str(path)]) == 0
    out = capsys.readouterr().out
    assert "retries: a webhook that stays down adds up to 10 transitions per contact" in out
    assert "retries: Lambda errors retried to the limit add up to 9 more" in out


def test_cost_paths_follow_every_branch_and_the_wait_timeout() -> None:
    asl = compile_workflow(load_workflow(CHECKOUT), DEFAULT_STEP_RUNNER_ARN)
    head = ["Entry", "remind", "wait-a-day", "purchased", "purchased.branch"]
    assert paths(asl) == [
        [*head, "wait-for-purchase"],
        # Timed out: the Catch goes to a Task that records the timeout and ends (what a Done state would cost).
        [*head, "wait-for-purchase", "wait-for-purchase.timed-out"],
        [*head, "remind-again", "wait-for-purchase"],
        [*head, "remind-again", "wait-for-purchase", "wait-for-purchase.timed-out"],
    ]
    assert [transitions(p) for p in paths(asl)] == [6, 7, 7, 8]


SYNC = """
name: sync
triggers: [{event: list.subscribed}]
steps:
  - id: vip
    if: {has_tag: vip}
    then:
      - id: to-crm
        call_webhook: {url: "https://crm.example.com/hook"}
      - id: wait
        wait: 1h
      - id: to-slack
        call_webhook: {url: "https://hooks.example.com/x"}
    else:
      - id: hello
        send_email: {template: hello}
"""


def test_cost_reports_loops_separately(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "looping.yaml", LOOPING)
    asl = compile_workflow(load_workflow(path), DEFAULT_STEP_RUNNER_ARN)
    assert loops(asl) == [["remind", "pause", "bought", "bought.branch"]]
    report = analyse(asl)
    assert report.fewest == report.most == 6
    assert main(["cost", str(path)]) == 0
    assert "loop remind -> pause -> bought -> bought.branch -> remind: +4 transitions per iteration" in (
        capsys.readouterr().out
    )


def test_price() -> None:
    assert price(4, 1000) == pytest.approx(0.1)


def test_schema_lists_step_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "Stepwise workflow file"
    step_props = {p for d in schema["$defs"].values() for p in d.get("properties", {})}
    assert set(STEP_KINDS) <= step_props
    assert {"if", "else"} <= step_props  # aliases, not the Python names
    wait = schema["$defs"]["WaitStep"]["properties"]["wait"]
    assert {"type": "string", "pattern": r"^(\d+[smhdw])+$"} in wait["anyOf"]  # `1d` is accepted


def test_simulate_and_demo_are_registered() -> None:
    with pytest.raises(SystemExit):
        main(["simulate", str(WELCOME)])  # --events is required
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0


def test_validate_checks_names_across_the_files_of_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "drip.yaml").write_text(
        "name: drip\ntriggers: [{event: campaign.subscribed}]\nsteps:\n  - {id: part-1, send_email: {template: a}}\n"
    )
    (tmp_path / "drip-copy.yaml").write_text(
        "name: drip\ntriggers: [{event: campaign.subscribed}]\nsteps:\n  - {id: p, send_email: {template: a}}\n"
    )
    (tmp_path / "join.yaml").write_text(
        "name: join\ntriggers: [{event: form.submitted}]\nsteps:\n"
        "  - {id: go, start_workflow: {workflow: drip, at: part-9}}\n"
        "  - {id: sub, subscribe: {campaign: newsletter-drip}}\n"
        "  - {id: leave, remove_from_campaign: drip}\n"
    )
    assert main(["validate", str(tmp_path / "join.yaml")]) == 1
    out = capsys.readouterr().out.splitlines()
    join = tmp_path / "join.yaml"
    assert out == [
        f"{join}: step go, field start_workflow.at: 'part-9' is not a step of workflow 'drip'",
        f"{join}: step sub, field subscribe.campaign: no workflow file defines 'newsletter-drip'",
        "2 problems in 1 of 1 workflow",
    ]
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert (
        f"{tmp_path / 'drip.yaml'}: field name: workflow 'drip' is also defined in {tmp_path / 'drip-copy.yaml'}" in out
    )
    assert out[-1] == "3 problems in 2 of 3 workflows"
