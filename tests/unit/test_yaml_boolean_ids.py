"""`id: true` (a YAML boolean, any case) as a step id or go-to target: the message says to quote it (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepwise.cli import check_file, main


def _problems(f: Path) -> list[str]:
    return check_file(f)[1]


def test_true_as_a_step_id_says_to_quote_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "t.yaml"
    f.write_text("name: t\ntriggers:\n  - event: x.y\nsteps:\n  - id: true\n    add_tag: a\n")
    assert _problems(f) == [f'{f}: step true, field id: true is a YAML boolean, not text: write id: "true" in quotes']
    assert main(["validate", str(f)]) == 1
    assert 'write id: "true" in quotes' in capsys.readouterr().out


def test_false_as_an_end_id_and_true_as_a_goto_target(tmp_path: Path) -> None:
    f = tmp_path / "f.yaml"
    f.write_text("name: f\nsteps:\n  - id: a\n    add_tag: x\n  - id: FALSE\n    end: true\n  - goto: True\n")
    assert _problems(f) == [
        f'{f}: step false, field id: false is a YAML boolean, not text: write id: "false" in quotes',
        f'{f}: field steps.2.goto: true is a YAML boolean, not text: write goto: "true" in quotes',
    ]


def test_quoted_true_is_a_valid_step_id(tmp_path: Path) -> None:
    f = tmp_path / "q.yaml"
    f.write_text('name: q\nsteps:\n  - id: "true"\n    add_tag: x\n  - id: yes\n    add_tag: y\n')
    wf, problems = check_file(f)
    assert problems == []
    assert wf is not None and [s.id for s in wf.steps] == ["true", "yes"]
