"""Cold start: each Lambda handler's import time against a bare `import boto3`, side by side in one run.

Each figure is the median of 7 fresh interpreters (rounds interleaved, so a busy machine weighs on all alike),
timing only the import itself (interpreter start-up excluded), in wall and CPU time. Ratios are against boto3
measured in the same rounds (issue 11 target: at most 1.5x; issue 8's intake target: at most 2x).

Modes:
  source    our modules compiled from source at every import, as in Lambda today: the asset folder is read-only
            there and no bytecode for the runtime's Python 3.12 can be built on this 3.11 machine (infra/assets.py)
  bytecode  our modules' bytecode already compiled (a warmed PYTHONPYCACHEPREFIX): what shipping bytecode buys

    .venv/bin/python bench/coldstart.py [--runs 7] [--mode source|bytecode|both]"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Handler module -> modules that are compile-time only and must not be loaded by its import.
HANDLERS = {
    "functions.trigger_router.intake": "intake (HTTP webhooks)",
    "functions.trigger_router.router": "router (queue, stream, schedules)",
    "functions.step_runner.handler": "step runner",
    "functions.senders.handler": "sender",
}
BASELINE = "boto3"
PROBE = (
    "import sys, time\n"
    "w, c = time.perf_counter(), time.process_time()\n"
    "__import__(sys.argv[1])\n"
    "print(time.perf_counter() - w, time.process_time() - c, len(sys.modules))\n"
)


def probe_env(pycache: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONPYCACHEPREFIX")}
    env["PYTHONPATH"] = str(ROOT)
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def once(module: str, env: dict[str, str]) -> tuple[float, float, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, module], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"import {module} failed:\n{out.stderr.strip()}")
    wall, cpu, mods = out.stdout.split()
    return float(wall), float(cpu), int(mods)


def measure(runs: int, pycache: str | None) -> dict[str, tuple[float, float, int]]:
    """Median (wall s, cpu s, modules loaded) per module, rounds interleaved."""
    env = probe_env(pycache)
    modules = [BASELINE, *HANDLERS]
    if pycache is not None:  # warm: compile every module once so the timed runs read bytecode
        for module in modules:
            once(module, env)
    samples: dict[str, list[tuple[float, float, int]]] = {m: [] for m in modules}
    for _ in range(runs):
        for module in modules:
            samples[module].append(once(module, env))
    return {
        m: (statistics.median(s[0] for s in v), statistics.median(s[1] for s in v), v[-1][2])
        for m, v in samples.items()
    }


def report(title: str, figures: dict[str, tuple[float, float, int]], runs: int) -> None:
    bw, bc, bm = figures[BASELINE]
    print(f"{title} (medians of {runs} fresh interpreters):")
    print(f"  {'module':36} {'wall ms':>8} {'ratio':>6} {'cpu ms':>8} {'ratio':>6} {'modules':>8}")
    print(f"  {'import boto3':36} {bw * 1000:8.0f} {1:6.2f} {bc * 1000:8.0f} {1:6.2f} {bm:8d}")
    for module, label in HANDLERS.items():
        w, c, m = figures[module]
        print(f"  {label:36} {w * 1000:8.0f} {w / bw:6.2f} {c * 1000:8.0f} {c / bc:6.2f} {m:8d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--mode", choices=("source", "bytecode", "both"), default="both")
    args = parser.parse_args()
    if args.mode in ("source", "both"):
        report("source: our modules compiled at import, as in Lambda", measure(args.runs, None), args.runs)
    if args.mode in ("bytecode", "both"):
        with tempfile.TemporaryDirectory(prefix="coldstart-pyc-") as pycache:
            report("bytecode: our modules precompiled", measure(args.runs, pycache), args.runs)
    print("targets: each handler at most 1.5x boto3 (issue 11), the intake at most 2x (issue 8)")


if __name__ == "__main__":
    main()
