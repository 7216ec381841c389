"""Figures of the CDK app: synth time, template size and resources per workflow and shared, each function's asset
size and its import (cold-start) time against a bare `import boto3`. Run: .venv/bin/python bench/infra.py [--cli]"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from infra.assets import build_layer, folder_size, stage_code  # noqa: E402
from infra.constructs import senders, trigger_router  # noqa: E402
from infra.constructs.step_runner import CODE_PARTS, REQUIREMENTS  # noqa: E402
from shared import constants as C  # noqa: E402

# The examples send email and SMS: a synth needs a sending identity (placeholders; nothing is deployed here).
SENDING = {"email_from": "news@example.com", "sms_origination": "pool-0123456789abcdef0123456789abcdef"}
IMPORT_PROBE = (
    "import sys, time; repo, asset, module = sys.argv[1:4];"
    "sys.path[:] = [asset] + [p for p in sys.path if p not in ('', repo)];"
    "t = time.perf_counter(); __import__(module); print(time.perf_counter() - t)"
)


def zipped(folder: Path) -> int:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(folder).as_posix())
    return len(buf.getvalue())


def import_ms(asset: Path, module: str, runs: int) -> float:
    """Median wall time of importing `module` in a fresh interpreter (what a cold start pays), in ms."""
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE, str(REPO), str(asset), module],
            capture_output=True,
            text=True,
            check=True,
            cwd="/",
        )
        times.append(float(out.stdout.strip()) * 1000)
    return statistics.median(times)


def synth_in_process() -> tuple[float, Any, dict[str, Any]]:
    """Seconds for one synth from cdk.json's context (the build of the step runner's folders included)."""
    from infra.app import build_app

    context = {**json.loads((REPO / "cdk.json").read_text())["context"], **SENDING}
    with tempfile.TemporaryDirectory(prefix="bench-cdk-") as out:
        t = time.perf_counter()
        app, stack = build_app(context=context, outdir=out)
        assembly = app.synth()
        elapsed = time.perf_counter() - t
        return elapsed, stack, assembly.get_stack_artifact(stack.artifact_id).template


def synth_cli() -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env.update(CDK_DISABLE_CLI_TELEMETRY="true", AWS_EC2_METADATA_DISABLED="true")
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        subprocess.run(
            [
                str(REPO / "node_modules/.bin/cdk"),
                "synth",
                "--quiet",
                *(arg for key, value in SENDING.items() for arg in ("-c", f"{key}={value}")),
                *("-o", out),
            ],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - t


def per_workflow(stack: Any, template: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Resources and template bytes each workflow adds (its machine, version, alias, log group, dashboard, alarms)."""
    from aws_cdk import CfnElement

    out: dict[str, dict[str, int]] = {}
    for name in stack.state_machines.machines:
        scopes = [f"{stack.node.path}/StateMachines/{name}/", f"{stack.node.path}/Observability/{name}"]
        ids = [
            stack.get_logical_id(c)
            for c in stack.node.find_all()
            if isinstance(c, CfnElement) and any(c.node.path.startswith(s) for s in scopes)
        ]
        resources = {i: template["Resources"][i] for i in ids if i in template["Resources"]}
        machine = next(r for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine")
        out[name] = {
            "resources": len(resources),
            "bytes": len(json.dumps(resources, separators=(",", ":"))),
            "definition_bytes": len(machine["Properties"]["DefinitionString"]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cli", action="store_true", help="also time `cdk synth` through the CLI (node)")
    parser.add_argument("--runs", type=int, default=7, help="interpreter starts per import timing")
    args = parser.parse_args()

    elapsed, stack, template = synth_in_process()
    total = len(json.dumps(template, separators=(",", ":")))
    print(f"synth (in process, cdk-nag included): {elapsed:.1f} s")
    if args.cli:
        print(f"synth (cdk synth through the CLI):    {synth_cli():.1f} s")
    print(f"template: {total / 1024:.1f} KiB compact, {len(template['Resources'])} resources (limit 500)")
    rows = per_workflow(stack, template)
    for name, row in sorted(rows.items()):
        print(
            f"  {name:22} {row['resources']:3} resources {row['bytes'] / 1024:6.1f} KiB "
            f"(definition {row['definition_bytes'] / 1024:.1f} KiB)"
        )
    shared = len(template["Resources"]) - sum(r["resources"] for r in rows.values())
    print(f"  {'(shared)':22} {shared:3} resources")
    each = max(r["resources"] for r in rows.values())
    print(f"workflows per stack: {(500 - shared) // each} ({each} resources each, {shared} shared, limit 500)")

    asset = stage_code(CODE_PARTS, "step-runner")
    layer = build_layer(REQUIREMENTS, "step-runner-deps")
    print(
        f"step runner asset: {folder_size(asset) / 1024:.0f} KiB, {zipped(asset) / 1024:.0f} KiB zipped (target < 1 MB)"
    )
    print(f"dependency layer (PyYAML): {folder_size(layer) / 1024:.0f} KiB, {zipped(layer) / 1024:.0f} KiB zipped")
    boto = import_ms(asset, "boto3", args.runs)
    print(f"import time, median of {args.runs} fresh interpreters (Python {sys.version.split()[0]} here):")
    print(f"  {'import boto3':44} {boto:6.0f} ms")
    router_asset = stage_code(trigger_router.CODE_PARTS, "trigger-router")
    sender_asset = stage_code(senders.CODE_PARTS, "senders")
    for module, code in (
        ("functions.step_runner.handler", asset),
        (C.HANDLER_INTAKE.rsplit(".", 1)[0], router_asset),
        (C.HANDLER_ROUTER_QUEUE.rsplit(".", 1)[0], router_asset),
        (C.HANDLER_SENDER.rsplit(".", 1)[0], sender_asset),
    ):
        ms = import_ms(code, module, args.runs)
        print(f"  import {module:37} {ms:6.0f} ms ({ms / boto:.1f}x boto3; +{ms - boto:.0f} ms)")
    for name, code in (("trigger router", router_asset), ("senders", sender_asset)):
        print(f"{name} asset: {folder_size(code) / 1024:.0f} KiB, {zipped(code) / 1024:.0f} KiB zipped")
    sender_layer = build_layer(senders.REQUIREMENTS, "senders-deps")
    print(f"sender layer (Jinja2, MarkupSafe, PyYAML): {zipped(sender_layer) / 1024:.0f} KiB zipped")


if __name__ == "__main__":
    main()
