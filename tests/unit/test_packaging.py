"""What a plain `pip install .` brings, and what `make` pins: the CLI's local stack must run without extras."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from stepwise.local.patches import MOTO_VERSION

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def base_requirements() -> dict[str, Requirement]:
    return {Requirement(r).name.lower(): Requirement(r) for r in PYPROJECT["project"]["dependencies"]}


def test_moto_is_a_base_dependency_at_the_version_the_patches_were_written_for() -> None:
    moto = base_requirements()["moto"]
    assert str(moto.specifier) == f"=={MOTO_VERSION}"
    # the services the local stack serves whose moto backends need an extra's packages
    assert {"stepfunctions", "dynamodb", "awslambda", "events", "s3", "ssm"} <= moto.extras


def test_constraints_pin_every_base_dependency_exactly() -> None:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not name==version"
            pins[name.lower().replace("_", "-")] = version
    assert "stepwise" not in pins
    for name, req in base_requirements().items():
        assert name in pins, f"constraints.txt does not pin {name} (make constraints)"
        assert req.specifier.contains(pins[name]), f"constraints.txt pins {name}=={pins[name]}, outside {req}"
