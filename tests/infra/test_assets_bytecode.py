"""The Lambda assets ship python3.12 bytecode (the runtime's, infra/constructs/function.py RUNTIME) that is exactly
the compile of the sources beside it; without a CPython 3.12 they ship none and the build image compiles them."""

from __future__ import annotations

import _imp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.assets import (
    ENV_LAMBDA_PYTHON,
    LAMBDA_CACHE_TAG,
    LAMBDA_MAGIC,
    LAMBDA_TASK_ROOT,
    PYODIDE,
    AssetBuildError,
    has_bytecode,
    lambda_compiler,
    pyc_path,
    stage_code,
)
from infra.constructs import senders, step_runner, trigger_router
from tests.infra.conftest import REPO

PARTS = ("shared/__init__.py", "shared/clock.py", "shared/constants.py")
ASSETS = {
    "step-runner": step_runner.CODE_PARTS,
    "trigger-router": trigger_router.CODE_PARTS,
    "senders": senders.CODE_PARTS,
}
UNCHECKED_HASH = 0b01  # PEP 552 flags: hash-based, never checked against the source


def pycs(asset: Path) -> list[str]:
    return sorted(p.relative_to(asset).as_posix() for p in asset.rglob("*.pyc"))


def test_the_build_has_a_cpython_312() -> None:
    # `make install` (and so .ci/run) installs package.json's Pyodide; without it the assets would ship no bytecode.
    compiler = lambda_compiler()
    assert compiler is not None, f"no CPython 3.12: run `make install` (Pyodide) or set {ENV_LAMBDA_PYTHON}"
    assert int.from_bytes(LAMBDA_MAGIC[:2], "little") == 3531  # CPython 3.12's magic (3.11: 3495, 3.13: 3571)


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_every_shipped_source_has_312_bytecode_of_exactly_its_content(name: str) -> None:
    asset = stage_code(ASSETS[name], name)
    sources = sorted(p.relative_to(asset).as_posix() for p in asset.rglob("*.py"))
    assert sources and pycs(asset) == sorted(pyc_path(s) for s in sources)  # one each, nothing else (no 3.11)
    key = int.from_bytes(LAMBDA_MAGIC, "little")
    for source in sources:
        data = (asset / pyc_path(source)).read_bytes()
        assert data[:4] == LAMBDA_MAGIC, source
        assert int.from_bytes(data[4:8], "little") == UNCHECKED_HASH, source
        # The header's hash is the source's SipHash keyed by 3.12's magic: this .pyc was made from this file.
        assert data[8:16] == _imp.source_hash(key, (asset / source).read_bytes()), source
    assert has_bytecode(asset)


def _pyodide(script: str, asset: Path) -> subprocess.CompletedProcess[str]:
    js = (
        "const [dir, asset, code] = process.argv.slice(1); const { loadPyodide } = require(dir);"
        "(async () => { const py = await loadPyodide();"
        ' py.FS.mkdir("/var"); py.FS.mkdir("/var/task");'
        ' py.FS.mount(py.FS.filesystems.NODEFS, { root: asset }, "/var/task");'
        " console.log(py.runPython(code)); })().catch((e) => { console.error(String(e)); process.exit(2); });"
    )
    node = shutil.which("node")
    assert node is not None
    return subprocess.run([node, "-e", js, str(PYODIDE), str(asset), script], capture_output=True, text=True)


def test_cpython_312_loads_the_bytecode_as_the_compile_of_the_source_and_imports_from_it(tmp_path: Path) -> None:
    """In a CPython 3.12 (Pyodide's, the machine has no other): each .pyc unmarshals to the code object that
    compiling its source gives, with the /var/task file name Lambda's tracebacks show; an import reads the .pyc,
    never the source (the source is replaced after the build, and the module still imports)."""
    asset = tmp_path / "asset"
    shutil.copytree(stage_code(ASSETS["step-runner"], "step-runner"), asset)
    (asset / "shared/clock.py").write_text("raise RuntimeError('compiled from source')\n")
    script = f"""
import importlib.util, json, marshal, pathlib, sys
assert sys.version_info[:2] == (3, 12) and importlib.util.MAGIC_NUMBER == {LAMBDA_MAGIC!r}
root = pathlib.Path("{LAMBDA_TASK_ROOT}")
checked = []
for py in sorted(root.rglob("*.py")):
    if py.name == "clock.py" and py.parent.name == "shared":
        continue
    rel = py.relative_to(root).as_posix()
    pyc = pathlib.Path(importlib.util.cache_from_source(str(py)))
    code = marshal.loads(pyc.read_bytes()[16:])
    assert code == compile(py.read_bytes(), str(py), "exec", dont_inherit=True), rel
    assert code.co_filename == str(py), (rel, code.co_filename)
    checked.append(rel)
sys.dont_write_bytecode = True
sys.path.insert(0, str(root))
import shared.clock, shared.constants
json.dumps({{"checked": len(checked), "cached": shared.clock.__cached__, "tag": sys.implementation.cache_tag}})
"""
    out = _pyodide(script, asset)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["tag"] == LAMBDA_CACHE_TAG
    assert found["cached"] == f"{LAMBDA_TASK_ROOT}/shared/__pycache__/clock.{LAMBDA_CACHE_TAG}.pyc"
    assert found["checked"] == len(list(asset.rglob("*.py"))) - 1


def test_without_a_cpython_312_an_asset_ships_no_bytecode_in_its_own_folder(tmp_path: Path) -> None:
    plain = stage_code(PARTS, "probe", out=tmp_path, compiler=False)
    assert pycs(plain) == [] and not has_bytecode(plain)
    compiled = stage_code(PARTS, "probe", out=tmp_path)
    assert compiled != plain and pycs(compiled) == [pyc_path(p) for p in PARTS]


def test_the_setting_names_the_compiler_or_turns_it_off() -> None:
    assert lambda_compiler({ENV_LAMBDA_PYTHON: "none"}) is None
    if sys.implementation.cache_tag != LAMBDA_CACHE_TAG:  # this machine's 3.11 is refused, not used
        with pytest.raises(AssetBuildError, match=rf"{ENV_LAMBDA_PYTHON}=.* is not a CPython 3\.12 executable"):
            lambda_compiler({ENV_LAMBDA_PYTHON: sys.executable})
    with pytest.raises(AssetBuildError, match=r"is not a CPython 3\.12 executable"):
        lambda_compiler({ENV_LAMBDA_PYTHON: "/nonexistent/python3.12"})


FAKE_DOCKER = """#!/bin/sh
# Stands in for `docker run`: records the call, then does what the build image's command would (less compiling).
echo "$@" >> "$FAKE_DOCKER_LOG"
for a in "$@"; do case "$a" in
  *:/asset-input:*) src="${a%%:/asset-input:*}";;
  *:/asset-output:*) out="${a%%:/asset-output:*}";;
esac; done
[ -n "$src" ] && cp -R "$src/." "$out/"
exit 0
"""


def test_without_a_cpython_312_the_function_code_is_bundled_by_the_python312_build_image(tmp_path: Path) -> None:
    """The fallback of a deploy with no local 3.12: CDK bundles the asset in RUNTIME's build image, whose
    command compiles it. A stand-in docker records the call (the synth runs in a child: jsii reads the
    environment once)."""
    docker = tmp_path / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    log = tmp_path / "docker.log"
    probe = (
        "import aws_cdk as cdk; from pathlib import Path; import sys\n"
        "from infra.assets import stage_code\n"
        "from infra.constructs.function import lambda_code, RUNTIME\n"
        "app = cdk.App(outdir=sys.argv[1]); stack = cdk.Stack(app, 'Probe')\n"
        "cdk.aws_lambda.Function(stack, 'Fn', runtime=RUNTIME, handler='shared.clock.x',\n"
        "    code=lambda_code(stage_code(('shared/__init__.py', 'shared/clock.py'), 'probe', out=Path(sys.argv[2]))))\n"
        "app.synth()\n"
    )
    env = {
        **os.environ,
        ENV_LAMBDA_PYTHON: "none",
        "CDK_DOCKER": str(docker),
        "FAKE_DOCKER_LOG": str(log),
        "PYTHONPATH": str(REPO),
    }
    out = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "cdk.out"), str(tmp_path / "assets")],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = [line for line in log.read_text().splitlines() if line.startswith("run ")]
    assert len(run) == 1
    assert "public.ecr.aws/sam/build-python3.12" in run[0]
    assert f"python -m compileall -q -d {LAMBDA_TASK_ROOT} --invalidation-mode unchecked-hash /asset-output" in run[0]
