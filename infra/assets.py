"""Lambda code and layer folders built without Docker: plain file copies, `pip install --target`, and the
bytecode of the Lambda's own Python (CPython 3.12), compiled by a local 3.12 interpreter."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build"
IGNORED_DIRS = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache"})
IGNORED_SUFFIXES = (".pyc", ".pyo")

# The Lambda platform the layer's wheels and the assets' bytecode must match (infra/constructs/function.py RUNTIME).
LAMBDA_PYTHON = "3.12"
LAMBDA_PLATFORM = "manylinux2014_x86_64"
LAMBDA_CACHE_TAG = "cpython-312"  # sys.implementation.cache_tag of python3.12: the .pyc names it imports
LAMBDA_MAGIC = (3531).to_bytes(2, "little") + b"\r\n"  # importlib.util.MAGIC_NUMBER of every CPython 3.12.x
LAMBDA_TASK_ROOT = "/var/task"  # where Lambda unpacks the code: the file names the bytecode's tracebacks show

# Modules only `stepwise validate`, `cdk synth` and the tests use: no handler imports them on any path (the
# import closure test in tests/infra/test_asset_runtime.py proves it), so the assets leave them out.
COMPILE_TIME_ONLY = frozenset(
    {
        "shared/workflow/lint.py",
        "shared/workflow/compiler.py",
        "shared/workflow/loader.py",
        "shared/workflow/cost.py",
        "shared/workflow/reference.py",
        "shared/messaging/template_lint.py",
        "shared/intake/testing.py",
    }
)

# Which CPython 3.12 compiles the bytecode, in this order:
#   STEPWISE_LAMBDA_PYTHON   a python3.12 executable; or "none" (ship no bytecode: the constructs then bundle with
#                            the Lambda's build image in Docker, infra/constructs/function.py lambda_code)
#   python3.12 on PATH, or the build's own Python when it is 3.12
#   Pyodide (CPython 3.12.7 built for WebAssembly, the npm package pinned in package.json, run by node), which
#                            `make install` and .ci/run install: the machines here have Python 3.11 only
ENV_LAMBDA_PYTHON = "STEPWISE_LAMBDA_PYTHON"
PYODIDE = REPO / "node_modules" / "pyodide"
PYODIDE_PYTHON = "3.12"  # pyodide 0.26.x and 0.27.x are CPython 3.12; 0.28 moved to 3.13
# Node side of the Pyodide compiler: the folder is mounted into Pyodide's file system and compiled there.
_PYODIDE_JS = """
const [pyodideDir, ddir, folder] = process.argv.slice(1);
const { loadPyodide } = require(pyodideDir);
(async () => {
  const py = await loadPyodide({ stdout: (s) => console.log(s), stderr: (s) => console.error(s) });
  py.FS.mkdir("/asset");
  py.FS.mount(py.FS.filesystems.NODEFS, { root: folder }, "/asset");
  if (!ddir) throw new Error("no ddir");
  py.globals.set("ddir", ddir);
  const ok = py.runPython(`
import compileall, py_compile, sys
assert sys.implementation.cache_tag == "cpython-312", sys.implementation.cache_tag
compileall.compile_dir("/asset", ddir=ddir, quiet=1, workers=1,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
`);
  process.exit(ok ? 0 : 3);
})().catch((e) => { console.error(e); process.exit(2); });
"""


class AssetBuildError(Exception):
    """A Lambda asset or layer folder could not be built (pip failed, a source folder is missing)."""


@dataclass(frozen=True)
class Compiler:
    """A CPython 3.12 that writes unchecked-hash bytecode for a folder: `command` + [folder] compiles it in place."""

    name: str  # as the folder hash and the error messages name it
    command: tuple[str, ...]

    def compile(self, folder: Path) -> None:
        done = subprocess.run([*self.command, str(folder)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise AssetBuildError(
                f"{self.name} could not compile {folder}: {(done.stderr or done.stdout).strip()[-2000:]}"
            )


def _native(executable: str) -> Compiler:
    return Compiler(
        f"python {executable}",
        (executable, "-I", "-m", "compileall", "-q", "-d", LAMBDA_TASK_ROOT, "--invalidation-mode", "unchecked-hash"),
    )


def _cache_tag(executable: str) -> str | None:
    try:
        done = subprocess.run(
            [executable, "-I", "-c", "import sys; print(sys.implementation.cache_tag)"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _pyodide(root: Path = PYODIDE) -> Compiler | None:
    node = shutil.which("node")
    try:
        version = json.loads((root / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    if node is None or not str(version).startswith(("0.26.", "0.27.")):
        return None
    return Compiler(f"pyodide {version}", (node, "-e", _PYODIDE_JS, str(root), LAMBDA_TASK_ROOT))


def lambda_compiler(environ: Mapping[str, str] = os.environ) -> Compiler | None:
    """The CPython 3.12 that compiles the assets' bytecode (see ENV_LAMBDA_PYTHON), or None when there is none."""
    chosen = environ.get(ENV_LAMBDA_PYTHON, "").strip()
    if chosen.lower() == "none":
        return None
    if chosen:
        if _cache_tag(chosen) != LAMBDA_CACHE_TAG:
            raise AssetBuildError(f"{ENV_LAMBDA_PYTHON}={chosen} is not a CPython {LAMBDA_PYTHON} executable")
        return _native(chosen)
    if sys.implementation.cache_tag == LAMBDA_CACHE_TAG:
        return _native(sys.executable)
    found = shutil.which("python3.12")
    if found and _cache_tag(found) == LAMBDA_CACHE_TAG:
        return _native(found)
    return _pyodide()


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


def pyc_path(source: str) -> str:
    """Where python3.12 looks for the bytecode of `source` (a relative .py path): PEP 3147's __pycache__/."""
    folder, _, file = source.rpartition("/")
    return f"{folder}/__pycache__/{file[:-3]}.{LAMBDA_CACHE_TAG}.pyc".lstrip("/")


def _bytecode(sources: Mapping[str, bytes], compiler: Compiler, cache: Path) -> dict[str, bytes]:
    """Relative .pyc path -> bytecode of every source. A .pyc depends only on its path (the file name it records)
    and its content, so each is kept in `cache` under a hash of both, and the compiler runs once per asset build
    for the files no earlier build compiled (starting Pyodide takes seconds; the entry plans change per stack)."""
    keys = {
        rel: hashlib.sha256(f"{LAMBDA_CACHE_TAG}|{LAMBDA_TASK_ROOT}/{rel}\0".encode() + data).hexdigest()
        for rel, data in sources.items()
    }
    missing = [rel for rel, key in keys.items() if not (cache / f"{key}.pyc").is_file()]
    if missing:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".compile-", dir=cache) as work:
            for rel in missing:
                (Path(work) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(work) / rel).write_bytes(sources[rel])
            compiler.compile(Path(work))
            for rel in missing:
                pyc = Path(work) / pyc_path(rel)
                if not pyc.is_file() or pyc.read_bytes()[:4] != LAMBDA_MAGIC:
                    raise AssetBuildError(f"{compiler.name} wrote no Python {LAMBDA_PYTHON} bytecode for {rel}")
                os.replace(pyc, cache / f"{keys[rel]}.pyc")  # atomic: a concurrent build reads whole files
    return {pyc_path(rel): (cache / f"{key}.pyc").read_bytes() for rel, key in keys.items()}


def stage_code(
    parts: Iterable[str],
    name: str,
    *,
    generated: Mapping[str, bytes] | None = None,
    root: Path = REPO,
    out: Path = BUILD / "assets",
    compiler: Compiler | bool = True,
    exclude: Sequence[str] = tuple(sorted(COMPILE_TIME_ONLY)),
) -> Path:
    """A folder holding `parts` (paths relative to the repo) with their relative paths kept, so the handler's
    imports (`functions.step_runner...`, `shared...`) are the same in AWS as in the tests, less the `exclude`d
    files (compile-time only), plus `generated` files (relative path -> content) made at synth, such as the
    workflows' entry plans.

    The folder's name carries a hash of its content: rebuilding unchanged code is free, and concurrent builds
    (pytest workers, a synth beside a test run) never write into one folder at once.

    Lambda's code folder is read-only, so without bytecode in the asset every cold start compiles every module it
    imports. With a CPython 3.12 (`compiler`; True: lambda_compiler() finds one) the asset carries __pycache__/
    with unchecked-hash .pyc files beside the sources: valid whatever the files' timestamps become in the zip,
    never re-checked against the source (the asset is immutable), recording /var/task paths for tracebacks.
    Without one (False, or none found) it ships none, and has_bytecode() says so."""
    chosen = lambda_compiler() if compiler is True else compiler or None
    skip = set(exclude)
    contents: dict[str, Path | bytes] = {
        dest: src for part in parts for src, dest in _files(root, part) if dest not in skip
    }
    for dest, data in (generated or {}).items():
        if dest in contents:
            raise AssetBuildError(f"generated file {dest} would replace a file of the code")
        contents[dest] = data
    files = {dest: src if isinstance(src, bytes) else src.read_bytes() for dest, src in sorted(contents.items())}
    digest = hashlib.sha256()
    for dest, data in files.items():
        digest.update(dest.encode() + b"\0" + data + b"\0")
    digest.update(f"bytecode:{LAMBDA_CACHE_TAG if chosen else 'none'}".encode())
    final = out / f"{name}-{digest.hexdigest()[:16]}"
    if final.is_dir():
        return final
    if chosen:
        sources = {dest: data for dest, data in files.items() if dest.endswith(".py")}
        files.update(_bytecode(sources, chosen, out / ".pyc-cache"))
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out))
    for dest, data in files.items():
        target = tmp / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return _publish(tmp, final, name)


def has_bytecode(asset: Path) -> bool:
    """Whether a stage_code folder carries python3.12 bytecode (else the Lambda's build image must compile it)."""
    return any(asset.rglob(f"*.{LAMBDA_CACHE_TAG}.pyc"))


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
