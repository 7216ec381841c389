"""Hostile or broken workflow files through the CDK app's synth (issue 11 item 2: "the same limits hold for synth").

Each test puts one file in a workflows folder and builds the app over it in process, as `cdk synth` runs
infra/app.py: a file `stepwise validate` refuses makes the synth refuse it with validate's exact line, at once (the
time bound only guards against a hang), never a RecursionError or a traceback; a file validate accepts (a
thousand steps in a row, nesting up to the limit) synthesizes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.app import build_app
from infra.constructs.state_machines import WorkflowLintError
from shared.workflow.loader import MAX_DEPTH
from tests.infra.conftest import REPO, SENDING_CONTEXT, cdk_json_context
from tests.infra.test_cli_synth import offline_env
from tests.unit.test_hardening_files import nested_ifs

HANG_GUARD = 10.0  # seconds; a refusal takes milliseconds, the limits are what keep it so


def refusal(folder: Path, tmp_path: Path) -> tuple[list[str], float]:
    """The problems the synth refuses the folder's files with, and how long building the app took."""
    started = time.monotonic()
    with pytest.raises(WorkflowLintError) as info:
        build_app(context={**cdk_json_context(), **SENDING_CONTEXT, "workflows": str(folder)}, outdir=str(tmp_path))
    return info.value.problems, time.monotonic() - started


def alias_bomb() -> str:
    lines, prev = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'], "a"
    for i in range(1, 10):
        name = chr(ord("a") + i)
        lines.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
        prev = name
    return "\n".join(lines) + f"\nname: bomb\nsteps: [{{id: x, add_tag: *{prev}}}]\n"


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    folder = tmp_path / "workflows"
    folder.mkdir()
    return folder


def test_synth_refuses_an_alias_bomb_at_once(flows: Path, tmp_path: Path) -> None:
    bomb = flows / "bomb.yaml"
    bomb.write_text(alias_bomb())
    problems, took = refusal(flows, tmp_path / "out")
    assert problems == [
        f"{bomb}: its aliases expand to more than 200,000 values (an alias bomb?); write the values out"
    ]
    assert took < HANG_GUARD


def test_synth_refuses_an_alias_loop(flows: Path, tmp_path: Path) -> None:
    f = flows / "loop.yaml"
    f.write_text("name: loop\nx: &a [*a]\nsteps: [{id: a, add_tag: x}]\n")
    problems, took = refusal(flows, tmp_path / "out")
    assert problems == [f"{f}: line 2: an alias refers to a value that contains it (a loop)"]
    assert took < HANG_GUARD


def test_synth_refuses_a_file_over_the_size_limit_unread(flows: Path, tmp_path: Path) -> None:
    big = flows / "big.yaml"
    big.write_text("name: big\nsteps:\n" + "  - {id: a, add_tag: x}\n" * 50_000)
    size = big.stat().st_size
    assert size > 1_048_576
    problems, took = refusal(flows, tmp_path / "out")
    assert problems == [
        f"{big}: {size:,} bytes, over the 1,048,576-byte limit for a workflow file; split it into workflows"
    ]
    assert took < HANG_GUARD


def test_synth_refuses_nesting_past_the_limit_without_a_recursion_error(flows: Path, tmp_path: Path) -> None:
    deep = flows / "deep.yaml"
    deep.write_text(nested_ifs(200))
    problems, took = refusal(flows, tmp_path / "out")
    assert problems == [
        f"{deep}: line 144: nested more than {MAX_DEPTH} levels deep; move part of it into another workflow "
        "(start_workflow)"
    ]
    assert took < HANG_GUARD


def test_synth_refuses_a_deep_flow_mapping_without_a_recursion_error(flows: Path, tmp_path: Path) -> None:
    """Nesting written inline (`[[[[...]]]]`): the depth check reads the parser's events, so no recursion at all."""
    f = flows / "brackets.yaml"
    f.write_text("name: b\nsteps: [{id: a, add_tag: " + "[" * 5000 + "x" + "]" * 5000 + "}]\n")
    problems, took = refusal(flows, tmp_path / "out")
    assert problems == [
        f"{f}: line 2: nested more than {MAX_DEPTH} levels deep; move part of it into another workflow (start_workflow)"
    ]
    assert took < HANG_GUARD


def test_synth_refuses_a_non_utf8_file_naming_it(flows: Path, tmp_path: Path) -> None:
    f = flows / "latin1.yaml"
    f.write_bytes("name: caf\ndescription: café\nsteps: [{id: a, add_tag: x}]\n".encode("latin-1"))
    problems, took = refusal(flows, tmp_path / "out")
    assert problems == [f"{f}: line 2: not UTF-8 text (byte 0xe9); save the file as UTF-8"]
    assert took < HANG_GUARD


def test_synth_names_only_the_broken_file_beside_good_ones(flows: Path, tmp_path: Path) -> None:
    (flows / "ok.yaml").write_text("name: ok\nsteps: [{id: a, add_tag: x}]\n")
    broken = flows / "broken.yaml"
    broken.write_bytes(b"name: broken\ndescription: \xff\xfe\nsteps: []\n")
    problems, took = refusal(flows, tmp_path / "out")
    assert problems == [f"{broken}: line 2: not UTF-8 text (byte 0xff); save the file as UTF-8"]
    assert took < HANG_GUARD


def test_cdk_synth_prints_the_refusal_not_a_traceback(flows: Path) -> None:
    """infra/app.py as `cdk synth` runs it (cdk.json's "app"): a process given the context in CDK_CONTEXT_JSON.
    The bound covers the interpreter's and the CDK's start (a few seconds); the refusal itself is milliseconds."""
    (flows / "bomb.yaml").write_text(alias_bomb())
    (flows / "deep.yaml").write_text(nested_ifs(200))
    context = {**cdk_json_context(), **SENDING_CONTEXT, "workflows": str(flows)}
    env = {**offline_env(), "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(flows.parent / "out")}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "infra/app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("[WARNING]")]
    assert lines == [
        "Refused to synthesize: 2 problems in the workflow files (`stepwise validate` reports the same):",
        f"{flows / 'bomb.yaml'}: its aliases expand to more than 200,000 values (an alias bomb?); write the values out",
        f"{flows / 'deep.yaml'}: line 144: nested more than {MAX_DEPTH} levels deep; move part of it into another "
        "workflow (start_workflow)",
    ]
    assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr
    assert took < 60, took


def steps_in_a_row(name: str, pairs: int) -> str:
    return f"name: {name}\nsteps:\n" + "".join(
        f"  - {{id: s{i}, add_tag: t{i}}}\n  - {{id: w{i}, wait: 1h}}\n" for i in range(pairs)
    )


def test_synth_refuses_a_thousand_steps_in_a_row_for_the_template_size(flows: Path, tmp_path: Path) -> None:
    """Found here: they validated, then the template was 1.23 MB, past CloudFormation's 1,000,000 bytes (a deploy
    would fail); lint's template-too-large now refuses them, at synth as at validate."""
    many = flows / "many.yaml"
    many.write_text(steps_in_a_row("many", 500))
    problems, took = refusal(flows, tmp_path / "out")
    assert problems == [
        f"{many}: field steps: its state machine and dashboard make about 1,453,498 bytes of the deployment's "
        "CloudFormation template, over its limit of 1,000,000; use fewer steps (every workflow of a deployment "
        "shares the one template)"
    ]
    assert took < HANG_GUARD


def test_synth_refuses_workflows_that_only_together_pass_the_template_size(flows: Path, tmp_path: Path) -> None:
    (flows / "a.yaml").write_text(steps_in_a_row("a", 300))
    (flows / "b.yaml").write_text(steps_in_a_row("b", 300))
    problems, took = refusal(flows, tmp_path / "out")
    assert len(problems) == 1
    assert problems[0].startswith(f"{flows / 'a.yaml'}: field steps: the 2 workflows make about 1,")
    assert problems[0].endswith(
        "bytes of the deployment's CloudFormation template, over its limit of 1,000,000; use fewer steps (every "
        "workflow of a deployment shares the one template)"
    )
    assert took < HANG_GUARD


def _synth_template(folder: Path, out: Path) -> tuple[dict[str, object], float]:
    started = time.monotonic()
    app, stack = build_app(context={**cdk_json_context(), **SENDING_CONTEXT, "workflows": str(folder)}, outdir=str(out))
    template = app.synth().get_stack_artifact(stack.artifact_id).template
    return template, time.monotonic() - started


def _definition(template: dict[str, object], workflow: str) -> dict[str, object]:
    for res in template["Resources"].values():  # type: ignore[attr-defined]
        props = res.get("Properties", {})
        if res["Type"] == "AWS::StepFunctions::StateMachine" and workflow in json.dumps(props.get("StateMachineName")):
            return json.loads(props["DefinitionString"])  # type: ignore[no-any-return]
    raise AssertionError(f"no state machine for {workflow}")


def test_synth_builds_what_validate_accepts_near_the_limits(flows: Path, tmp_path: Path) -> None:
    """500 steps in a row and ifs nested as deep as the loader allows:
    synthesized, and the template stays under CloudFormation's limit, so lint's estimate is a safe one."""
    (flows / "many.yaml").write_text(steps_in_a_row("many", 250))
    (flows / "deep.yaml").write_text(nested_ifs(MAX_DEPTH // 2 - 3).replace("name: deep", "name: deep-ok"))
    template, took = _synth_template(flows, tmp_path / "out")
    assert len(_definition(template, "many")["States"]) > 500  # type: ignore[arg-type]
    assert "if44" in json.dumps(_definition(template, "deep-ok"))
    written = next((tmp_path / "out").glob("*.template.json")).stat().st_size  # what `cdk deploy` uploads
    assert written < 1_000_000, written
    assert took < 120  # a whole synth (cdk-nag included); only a hang guard
