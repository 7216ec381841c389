"""Intake figures: handler time per delivery in-process against moto (median, p99; target p99 < 50 ms) and the cold
import time of the intake handler's module against a bare `import boto3` (subprocesses, medians of 5; target 2x).

    .venv/bin/python -m bench.intake [--deliveries 300]"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def handler_times(n: int) -> list[float]:
    from moto import mock_aws

    os.environ.update(
        {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    )
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    with mock_aws():
        from tests.integration.intake_support import (
            Context,
            create_resources,
            http_event,
            intake_env,
            shopify_delivery,
        )

        resources = create_resources()
        os.environ.update(intake_env(resources["queue_url"]))  # before the import: the logger reads its level
        from functions.trigger_router import intake

        intake.reset()
        events = []
        for i in range(n):
            body, headers = shopify_delivery("orders.paid", email=f"c{i}@example.com", event_id=f"e{i}")
            events.append(http_event("POST", "/webhooks/shopify", body, headers))
        intake.handler(events[0], Context())  # the cold start (clients, SSM) is not a delivery's time
        times = []
        for ev in events[1:]:
            t0 = time.perf_counter()
            out = intake.handler(ev, Context())
            times.append(time.perf_counter() - t0)
            assert out["statusCode"] == 202, out
        intake.reset()
        return times


def import_seconds(statement: str, runs: int = 5) -> float:
    """Median wall time of a fresh interpreter running `statement`, less that of an empty interpreter."""

    def once(code: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        return time.perf_counter() - t0

    empty = statistics.median(once("pass") for _ in range(runs))
    return statistics.median(once(statement) for _ in range(runs)) - empty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=300)
    args = parser.parse_args()
    times = sorted(handler_times(args.deliveries))
    median = statistics.median(times) * 1000
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))] * 1000
    print(f"intake handler, signed Shopify orders/paid, moto in-process, {len(times)} deliveries:")
    print(f"  median {median:.1f} ms, p99 {p99:.1f} ms (target p99 < 50 ms: {'met' if p99 < 50 else 'NOT met'})")
    boto = import_seconds("import boto3")
    ours = import_seconds("import functions.trigger_router.intake")
    ratio = ours / boto if boto > 0 else float("inf")
    print("cold import, medians of 5 subprocesses (less an empty interpreter):")
    print(f"  import boto3 {boto * 1000:.0f} ms, import functions.trigger_router.intake {ours * 1000:.0f} ms")
    print(f"  ratio {ratio:.2f}x (target at most 2x: {'met' if ratio <= 2 else 'NOT met'})")


if __name__ == "__main__":
    main()
