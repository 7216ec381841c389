"""Hostile or broken workflow files: refused fast with a message naming the file, never a hang or a traceback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shared.workflow.compiler import compile_workflow
from shared.workflow.loader import MAX_DEPTH
from shared.workflow.model import WorkflowFileError, load_workflow
from stepwise.cli import main

ARN = "arn:aws:lambda:us-east-1:123456789012:function:f"


def nested_ifs(n: int) -> str:
    text, indent = "name: deep\nsteps:\n", "  "
    for i in range(n):
        text += f"{indent}- id: if{i}\n{indent}  if: {{has_tag: t{i}}}\n{indent}  then:\n"
        indent += "    "
    return text + f"{indent}- {{id: leaf, add_tag: z}}\n"


def problems(path: Path) -> list[str]:
    with pytest.raises(WorkflowFileError) as info:
        load_workflow(path)
    return info.value.problems


def test_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    lines, prev = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'], "a"
    for i in range(1, 10):
        name = chr(ord("a") + i)
        lines.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
        prev = name
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + f"\nname: bomb\nsteps: [{{id: x, add_tag: *{prev}}}]\n")
    started = time.monotonic()
    assert problems(bomb) == [
        f"{bomb}: its aliases expand to more than 200,000 values (an alias bomb?); write the values out"
    ]
    assert time.monotonic() - started < 2


def test_a_few_aliases_still_work(tmp_path: Path) -> None:
    f = tmp_path / "ok.yaml"
    f.write_text("name: ok\nsteps:\n  - {id: a, add_tag: &t [vip, buyer]}\n  - {id: b, remove_tag: *t}\n")
    wf = load_workflow(f)
    assert [s.id for s in wf.steps] == ["a", "b"]


def test_alias_loop_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "loop.yaml"
    f.write_text("name: loop\nx: &a [*a]\nsteps: [{id: a, add_tag: x}]\n")
    assert problems(f) == [f"{f}: line 2: an alias refers to a value that contains it (a loop)"]


def test_file_over_one_mebibyte_is_refused_unread(tmp_path: Path) -> None:
    f = tmp_path / "big.yaml"
    f.write_text("name: big\nsteps:\n" + "  - {id: a, add_tag: x}\n" * 50_000)
    size = f.stat().st_size
    assert problems(f) == [
        f"{f}: {size:,} bytes, over the 1,048,576-byte limit for a workflow file; split it into workflows"
    ]


def test_a_thousand_steps_in_a_row_compile_and_are_refused_for_the_template_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """They compile (no recursion), but the deployment's CloudFormation template would pass its 1,000,000 bytes
    (found by tests/infra/test_synth_hostile.py: 1.23 MB): validate says so; 600 steps validate."""
    f = tmp_path / "many.yaml"
    f.write_text(
        "name: many\nsteps:\n"
        + "".join(f"  - {{id: s{i}, add_tag: t{i}}}\n  - {{id: w{i}, wait: 1h}}\n" for i in range(500))
    )
    assert len(compile_workflow(load_workflow(f), ARN)["States"]) > 1000
    assert main(["validate", str(f)]) == 1
    assert capsys.readouterr().out.splitlines()[0] == (
        f"{f}: field steps: its state machine and dashboard make about 1,453,498 bytes of the deployment's "
        "CloudFormation template, over its limit of 1,000,000; use fewer steps (every workflow of a deployment "
        "shares the one template)"
    )
    f.write_text(
        "name: many\nsteps:\n"
        + "".join(f"  - {{id: s{i}, add_tag: t{i}}}\n  - {{id: w{i}, wait: 1h}}\n" for i in range(300))
    )
    assert main(["validate", str(f)]) == 0


def test_a_thousand_actions_in_a_row_validate_without_a_recursion_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A thousand actions and no waits are one path a thousand deep in the go-to loop check's graph: its walk was
    recursive and raised RecursionError (an internal error) until it was made iterative."""
    f = tmp_path / "actions.yaml"
    f.write_text("name: actions\nsteps:\n" + "".join(f"  - {{id: s{i}, add_tag: t{i}}}\n" for i in range(1000)))
    assert main(["validate", str(f)]) == 0
    assert capsys.readouterr().err == ""


def test_deep_nesting_validates_up_to_the_limit_and_is_refused_past_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok = tmp_path / "ok.yaml"
    ok.write_text(nested_ifs(MAX_DEPTH // 2 - 3))
    assert main(["validate", str(ok)]) == 0
    deep = tmp_path / "deep.yaml"
    deep.write_text(nested_ifs(200))
    capsys.readouterr()
    assert main(["validate", str(deep)]) == 1
    out = capsys.readouterr().out
    assert f"{deep}: line 144: nested more than {MAX_DEPTH} levels deep; move part of it into another workflow" in out
    assert "RecursionError" not in out


def test_deep_inline_flow_nesting_is_refused_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "flow.yaml"
    deep.write_text("name: x\nsteps: " + "[" * 300 + "]" * 300 + "\n")
    started = time.monotonic()
    assert main(["validate", str(deep)]) == 1
    assert time.monotonic() - started < 5
    assert capsys.readouterr().out == (
        f"{deep}: line 2: nested more than {MAX_DEPTH} levels deep; move part of it into another workflow "
        "(start_workflow)\n1 problem in 1 of 1 workflow\n"
    )


def test_non_utf8_file_is_an_error_naming_the_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes("name: caf\ndescription: café\nsteps: [{id: a, add_tag: x}]\n".encode("latin-1"))
    assert problems(f) == [f"{f}: line 2: not UTF-8 text (byte 0xe9); save the file as UTF-8"]


def test_validate_file_ignores_a_broken_sibling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ok.yaml").write_text("name: ok\nsteps: [{id: a, add_tag: x}]\n")
    (tmp_path / "broken.yaml").write_bytes(b"name: broken\ndescription: \xff\xfe\nsteps: []\n")
    assert main(["validate", str(tmp_path / "ok.yaml")]) == 0
    assert capsys.readouterr().out.strip() == "1 workflow OK"


def test_yes_as_a_step_id_stays_the_string_yes(tmp_path: Path) -> None:
    f = tmp_path / "yes.yaml"
    f.write_text("name: y\nsteps:\n  - id: yes\n    add_tag: on\n  - id: no\n    end: off\n")
    wf = load_workflow(f)
    assert [s.id for s in wf.steps] == ["yes", "no"]
    assert wf.steps[0].root.add_tag == ["on"]  # type: ignore[union-attr]
    assert wf.steps[1].root.end.reason == "off"  # type: ignore[union-attr]


def test_a_number_as_step_id_names_the_field(tmp_path: Path) -> None:
    f = tmp_path / "num.yaml"
    f.write_text("name: n\nsteps:\n  - id: 12\n    add_tag: x\n")
    assert problems(f) == [f"{f}: step 12, field id: Input should be a valid string"]
