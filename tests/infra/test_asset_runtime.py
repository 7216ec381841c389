"""Each Lambda asset holds what its handler imports on every path, and none of what only compile time needs.

The assets leave out infra/assets.py COMPILE_TIME_ONLY (lint, the compiler, the YAML loader, cost, the reference
interpreter, the template checks, the intake's test fixtures). Proved two ways: each handler imported from its
asset folder alone (the repository off sys.path, its editable finder removed, no bytecode written into the asset),
with the modules it loads later by name (every webhook provider, every schedule kind, Jinja2's first render); and
every import statement of every shipped module, at module level or inside a function, resolving to a shipped file
(or to a package outside the project)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.assets import COMPILE_TIME_ONLY, stage_code
from infra.constructs import senders, step_runner, trigger_router
from tests.infra.conftest import REPO

ASSETS = {
    "step-runner": (step_runner.CODE_PARTS, ["functions.step_runner.handler"]),
    "trigger-router": (
        trigger_router.CODE_PARTS,
        ["functions.trigger_router.intake", "functions.trigger_router.router"],
    ),
    "senders": (senders.CODE_PARTS, ["functions.senders.handler"]),
}
PROJECT = ("functions", "shared")
# Imports of a left-out module that only compile-time functions of a shipped module make: model.py's
# load_workflow and load_deployment_settings read YAML files (the CLI, synth), which no handler calls (and the
# handler-from-the-asset test above would fail if one did on its import).
COMPILE_TIME_CALLERS = {("shared/workflow/model.py", "shared.workflow.loader")}
# What a handler loads by name after its import: each provider (shared.intake.provider), each schedule kind
# (shared.runtime.schedules), a template render (Jinja2 through shared.messaging.templates).
LATER = {
    "trigger-router": (
        "from shared import intake; assert len(intake.PROVIDERS) == len(intake.CLASSES);"
        "from shared.runtime import schedules; assert schedules.kinds();"
    ),
    "senders": (
        "from shared.messaging.templates import TemplateSet;"
        "assert TemplateSet(None, {}).parts('', 'alert', 'hi')['html'];"
        "from shared.messaging import templates; templates._environment(True).from_string('{{ a }}').render(a=1);"
        "assert templates.split_front_matter('---\\nsubject: Hi\\n---\\n<p/>', 'x')[0] == {'subject': 'Hi'};"
    ),
    "step-runner": "",
}
PROBE = """\
import json, sys
asset = sys.argv[1]
sys.path[:] = [asset] + [p for p in sys.path if p not in ("", sys.argv[2])]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
for handler in json.loads(sys.argv[3]):
    __import__(handler)
exec(sys.argv[4])
ours = {n: m.__file__ for n, m in sys.modules.items() if n.split(".")[0] in ("functions", "shared")}
print(json.dumps({"ours": ours, "all": sorted(sys.modules)}))
"""


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_each_handler_imports_from_its_asset_alone(name: str) -> None:
    parts, handlers = ASSETS[name]
    asset = stage_code(parts, name)
    shipped = {p.relative_to(asset).as_posix() for p in asset.rglob("*.py")}
    assert not shipped & COMPILE_TIME_ONLY
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(asset), str(REPO), json.dumps(handlers), LATER[name]],
        capture_output=True,
        text=True,
        cwd="/",
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "AWS_DEFAULT_REGION": "us-east-1"},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.splitlines()[-1])
    ours = loaded["ours"]
    assert all(handler in ours for handler in handlers)
    outside = {n: f for n, f in ours.items() if not str(f).startswith(str(asset))}
    assert outside == {}, f"loaded from outside the asset: {outside}"
    assert "yaml" not in loaded["all"]  # the sender reads front matter without it (shared/messaging/front_matter.py)
    assert "pydantic" not in loaded["all"] or name != "senders"  # the sender validates nothing it did not write


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, relative ones resolved against its package."""
    found = []
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names]  # `from pkg import module`
    return found


def _is_module(dotted: str) -> bool:
    """Whether a project name is a module or package of the repository (else it is a name inside one)."""
    path = REPO.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_every_import_of_a_shipped_module_resolves_inside_the_asset(name: str) -> None:
    asset = stage_code(ASSETS[name][0], name)
    modules = {
        p.relative_to(asset).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
        for p in asset.rglob("*.py")
    }
    missing = []
    for path in sorted(asset.rglob("*.py")):
        rel = path.relative_to(asset)
        package = ".".join(rel.parts[:-1])
        for line, module in _imports(path, package):
            if (rel.as_posix(), module) in COMPILE_TIME_CALLERS:
                continue
            if module.split(".")[0] in PROJECT and module not in modules and _is_module(module):
                missing.append(f"{rel}:{line} imports {module}, which the asset leaves out")
    assert missing == []
    assert {"shared.workflow.model", "shared.workflow.conditions"} <= modules  # the runtime's models are there
