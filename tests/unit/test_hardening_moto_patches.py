"""The local stack fails loudly when moto changes: pinned exactly, every patched attribute checked before use."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import moto
import pytest

from stepwise.local.patches import MOTO_VERSION, MotoPatchError, _Patcher

ROOT = Path(__file__).resolve().parents[2]


class Interpreter:
    """Stands in for a moto class whose private method a patch replaces."""

    def _wait_interval(self, env: Any, wait_seconds: float) -> None:
        raise AssertionError("really sleeps")


def test_pyproject_pins_the_moto_release_the_patches_were_written_for() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    (pin,) = re.findall(r'"moto\[[a-z0-9,]+\]==([0-9.]+)"', text)
    assert pin == MOTO_VERSION == moto.__version__


def test_a_renamed_attribute_is_refused_naming_moto_and_the_attribute() -> None:
    patcher = _Patcher()
    with pytest.raises(MotoPatchError) as info:
        patcher.set(Interpreter, "_wait_for_interval", lambda self, env, wait_seconds: None)
    assert str(info.value) == (
        f"moto {moto.__version__}: Interpreter._wait_for_interval does not exist; stepwise's local stack was written "
        f"for moto {MOTO_VERSION}: install moto=={MOTO_VERSION} (pyproject.toml) or update "
        "stepwise/local/patches.py (docs/moto_patches.md)"
    )
    assert not hasattr(Interpreter, "_wait_for_interval")  # nothing was added


def test_a_changed_signature_is_refused() -> None:
    patcher = _Patcher()
    with pytest.raises(MotoPatchError, match=r"Interpreter\._wait_interval now takes \(self, env, wait_seconds\)"):
        patcher.set(Interpreter, "_wait_interval", lambda self, wait_seconds: None)


def test_a_patch_is_set_and_restored() -> None:
    patcher = _Patcher()
    original = Interpreter._wait_interval
    patcher.set(Interpreter, "_wait_interval", lambda self, env, wait_seconds: None)
    Interpreter()._wait_interval(None, 3.0)  # the virtual wait: returns at once
    patcher.restore()
    assert Interpreter._wait_interval is original


def test_every_moto_bug_worked_around_is_written_up() -> None:
    doc = (ROOT / "docs" / "moto_patches.md").read_text()
    code = (ROOT / "stepwise" / "local" / "patches.py").read_text()
    cited = set(re.findall(r"docs/moto_patches\.md #(\d+)", code))
    listed = set(re.findall(r"^## (\d+)\. ", doc, re.MULTILINE))
    assert cited and cited <= listed
    assert f"moto {MOTO_VERSION}" in doc
