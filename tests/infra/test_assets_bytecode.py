"""Lambda assets carry bytecode when the build runs the Lambda's Python, and none that Lambda would ignore."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from infra.assets import BUILD_PYTHON, LAMBDA_PYTHON, stage_code

PARTS = ("shared/__init__.py", "shared/clock.py", "shared/constants.py")


def pycs(asset: Path) -> list[Path]:
    return sorted(asset.rglob("*.pyc"))


def test_asset_built_by_the_lambdas_python_ships_unchecked_bytecode_that_is_used(tmp_path: Path) -> None:
    asset = stage_code(PARTS, "probe", out=tmp_path, bytecode_for=BUILD_PYTHON)
    tag = sys.implementation.cache_tag
    assert [p.relative_to(asset).as_posix() for p in pycs(asset)] == [
        f"shared/__pycache__/{m}.{tag}.pyc" for m in ("__init__", "clock", "constants")
    ]
    header = (asset / f"shared/__pycache__/clock.{tag}.pyc").read_bytes()[:8]
    assert int.from_bytes(header[4:8], "little") == 0b01  # hash-based, source never checked
    # The source changed after the build: an unchecked .pyc is still what runs, so the import never compiles.
    (asset / "shared/clock.py").write_text("raise RuntimeError('compiled from source')\n")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path[:] = [sys.argv[1]] + [p for p in sys.path if p != ''];"
            "import shared.clock; print(shared.clock.__cached__)",
            str(asset),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONDONTWRITEBYTECODE": "1"},
        cwd="/",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(asset / f"shared/__pycache__/clock.{tag}.pyc")


def test_asset_for_another_python_ships_no_bytecode(tmp_path: Path) -> None:
    other = "3.99"
    asset = stage_code(PARTS, "probe", out=tmp_path, bytecode_for=other)
    assert pycs(asset) == []
    assert asset != stage_code(PARTS, "probe", out=tmp_path, bytecode_for=BUILD_PYTHON)  # never one folder
    if LAMBDA_PYTHON != BUILD_PYTHON:  # this machine (3.11) cannot compile for the Lambda's 3.12
        assert pycs(stage_code(PARTS, "probe", out=tmp_path)) == []
