"""docs/workflows.md: every YAML example loads as (part of) a workflow, and the reference lists what the code has."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.events import CATALOGUE
from shared.workflow.conditions import CONDITION_KEYS
from shared.workflow.lint import CHECKS, lint
from shared.workflow.model import STEP_KINDS, Workflow, parse_workflow

DOC = Path(__file__).resolve().parents[2] / "docs" / "workflows.md"
TEXT = DOC.read_text()
BLOCKS = [(TEXT[: m.start()].count("\n") + 2, m.group(1)) for m in re.finditer(r"```yaml\n(.*?)```", TEXT, re.S)]
WORKFLOW_KEYS = set(Workflow.model_fields) | {"steps"}


def as_workflow(example: Any) -> tuple[dict[str, Any], bool]:
    """The example made into a workflow file, and whether it was one already (then it must lint clean too)."""
    name = "doc-example"
    if isinstance(example, list):
        return {"name": name, "steps": example}, False
    assert isinstance(example, dict), "a YAML example is a workflow, part of one, a step list or a condition"
    if "steps" in example:
        return {"name": name, **example}, "name" in example
    if any(k in CONDITION_KEYS for k in example):
        return {"name": name, "steps": [{"id": "check", "if": example}]}, False
    assert set(example) <= WORKFLOW_KEYS, f"not a workflow part: {sorted(set(example) - WORKFLOW_KEYS)}"
    return {"name": name, **example, "steps": [{"id": "pause", "wait": "1m"}]}, False


def test_every_yaml_block_of_the_doc_is_checked() -> None:
    # Each ```yaml fence is one example the tests below load; a fence the pattern misses would go unchecked.
    assert len(BLOCKS) == TEXT.count("```yaml")
    assert all(block.strip() for _, block in BLOCKS)


@pytest.mark.parametrize(("line", "block"), BLOCKS, ids=[f"line-{line}" for line, _ in BLOCKS])
def test_yaml_example_loads(line: int, block: str) -> None:
    data, whole = as_workflow(yaml.safe_load(block))
    wf = parse_workflow(data, f"{DOC.name}:{line}")
    if whole:
        assert [str(v) for v in lint(wf)] == []


def test_every_step_kind_has_an_example() -> None:
    kinds: set[str] = set()
    for _, block in BLOCKS:
        data, _ = as_workflow(yaml.safe_load(block))
        kinds |= {step.kind for step, _ in parse_workflow(data).walk()}
    assert kinds == set(STEP_KINDS)


def test_every_condition_kind_is_documented() -> None:
    for key in CONDITION_KEYS:
        assert f"| `{key}` |" in TEXT, key


def test_the_event_catalogue_matches_the_code() -> None:
    rows = dict(re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \| ([a-z_, ]*) \|$", TEXT, re.M))
    documented = {k: set(v.split(", ")) if v else set() for k, v in rows.items()}
    assert documented == {k: set(v) for k, v in CATALOGUE.items()}


def test_every_lint_check_is_documented() -> None:
    for name in CHECKS:
        assert f"| `{name}` |" in TEXT, name
