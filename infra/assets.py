"""Lambda code and layer folders built without Docker: plain file copies and `pip install --target`."""

from __future__ import annotations

import compileall
import hashlib
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build"
IGNORED_DIRS = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache"})
IGNORED_SUFFIXES = (".pyc", ".pyo")

# The Lambda platform the layer's wheels must match (Runtime PYTHON_3_12 on x86_64 in step_runner.py).
LAMBDA_PYTHON = "3.12"
LAMBDA_PLATFORM = "manylinux2014_x86_64"
# The Python that runs this build, as LAMBDA_PYTHON spells it. Bytecode carries the magic number of the interpreter
# that compiled it (py_compile and compileall have no target-version option), and a .pyc of another version is
# ignored at import, so an asset ships bytecode only when the build runs the Lambda's own Python.
BUILD_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


class AssetBuildError(Exception):
    """A Lambda asset or layer folder could not be built (pip failed, a source folder is missing)."""


def _files(root: Path, rel: str) -> Iterable[tuple[Path, str]]:
    """(source, relative destination) of every file under root/rel that belongs in a Lambda package."""
    src = root / rel
    if src.is_file():
        yield src, rel
        return
    if not src.is_dir():
        raise AssetBuildError(f"{src} does not exist")
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_DIRS)
        for name in sorted(filenames):
            if name.endswith(IGNORED_SUFFIXES):
                continue
            path = Path(dirpath) / name
            yield path, path.relative_to(root).as_posix()


STALE_AFTER = 24 * 3600  # seconds: older builds of the same asset are removed when a new one is published


def _publish(tmp: Path, final: Path, name: str) -> Path:
    """Move a finished build into place; another process that built the same content first wins the race.
    Builds of the same asset older than a day go (a younger one may still be read by a concurrent synth)."""
    try:
        tmp.rename(final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.is_dir():
            raise
    now = time.time()
    for old in final.parent.glob(f"{name}-*"):
        if old != final and old.is_dir() and now - old.stat().st_mtime > STALE_AFTER:
            shutil.rmtree(old, ignore_errors=True)
    return final


def stage_code(
    parts: Iterable[str],
    name: str,
    *,
    generated: Mapping[str, bytes] | None = None,
    root: Path = REPO,
    out: Path = BUILD / "assets",
    bytecode_for: str = LAMBDA_PYTHON,
) -> Path:
    """A folder holding `parts` (paths relative to the repo) with their relative paths kept, so the handler's
    imports (`functions.step_runner...`, `shared...`) are the same in AWS as in the tests, plus `generated`
    files (relative path -> content) made at synth, such as the workflows' entry plans.

    The folder's name carries a hash of its content: rebuilding unchanged code is free, and concurrent builds
    (pytest workers, a synth beside a test run) never write into one folder at once.

    Lambda's code folder is read-only, so without bytecode in the asset every cold start compiles every module it
    imports. When this build runs the Python the Lambda runs (`bytecode_for`), the asset carries __pycache__/ with
    unchecked-hash .pyc files: valid whatever the files' timestamps become in the zip, and never re-checked against
    the source (the asset is immutable). Another build Python ships none (see BUILD_PYTHON)."""
    contents: dict[str, Path | bytes] = {dest: src for part in parts for src, dest in _files(root, part)}
    for dest, data in (generated or {}).items():
        if dest in contents:
            raise AssetBuildError(f"generated file {dest} would replace a file of the code")
        contents[dest] = data
    files = sorted(contents.items())
    digest = hashlib.sha256()
    for dest, src in files:
        digest.update(dest.encode() + b"\0" + (src if isinstance(src, bytes) else src.read_bytes()) + b"\0")
    bytecode = bytecode_for == BUILD_PYTHON
    digest.update(f"bytecode:{BUILD_PYTHON if bytecode else 'none'}".encode())
    final = out / f"{name}-{digest.hexdigest()[:16]}"
    if final.is_dir():
        return final
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out))
    for dest, src in files:
        target = tmp / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, bytes):
            target.write_bytes(src)
        else:
            shutil.copyfile(src, target)
    if bytecode and not compileall.compile_dir(
        tmp, quiet=1, workers=1, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    ):
        shutil.rmtree(tmp, ignore_errors=True)
        raise AssetBuildError(f"asset {name}: a module does not compile (run `python -m compileall` on its parts)")
    return _publish(tmp, final, name)


def build_layer(requirements: Path, name: str, *, out: Path = BUILD / "layers") -> Path:
    """A layer folder (`python/` inside) with the pinned requirements installed as Lambda-platform wheels.

    Wheels only (`--only-binary=:all:`) for the Lambda's Python and platform, so nothing compiles here and the
    result is what Lambda can load, whatever machine builds it. Rebuilt only when the requirements change."""
    spec = requirements.read_bytes()
    key = hashlib.sha256(spec + f"{LAMBDA_PYTHON}|{LAMBDA_PLATFORM}".encode()).hexdigest()[:16]
    final = out / f"{name}-{key}"
    if final.is_dir():
        return final
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--requirement",
        str(requirements),
        "--target",
        str(tmp / "python"),
        "--platform",
        LAMBDA_PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        LAMBDA_PYTHON,
        "--only-binary=:all:",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise AssetBuildError(f"pip could not build layer {name} from {requirements}:\n{done.stderr.strip()}")
    for cache in (tmp / "python").rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    return _publish(tmp, final, name)


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
