"""Intake figures: handler time per delivery in-process against moto (target: our handler's p99 < 50 ms), and the
cold import time of the intake handler's module against a bare `import boto3` (subprocesses, medians of 5; target 2x).

    .venv/bin/python -m bench.intake [--deliveries 2000] [--per-provider 300] [--no-freeze] [--no-import]

Each delivery's wall time is split in three, measured around the calls themselves:
  moto     moto's emulation of S3, DynamoDB and SQS (the botocore `before-send` stubber: in AWS this is the network
           round trip and the service's own time, which no code of ours can shorten);
  ours     everything else: Powertools' resolver and logger, verification, normalisation, pydantic, JSON, and
           botocore's client side (serialise, sign, parse), which runs in the Lambda too;
  total    the two together.
CPU time (thread_time) is reported beside wall time: a wall p99 far above the CPU p99 is the machine's scheduler
(2 shared cores here), not work. GC pauses during a delivery are timed with gc.callbacks; after the cold start the
heap is frozen (gc.freeze(), as a Lambda handler module can do once its imports and clients exist) unless
--no-freeze, so a run shows both.

The deployed environment is kept: log level INFO, metrics on (EMF lines), both written to /dev/null here. Between
deliveries, untimed, the queue is emptied (the router drains it in AWS; moto's SendMessage walks every message still
in the queue, so an undrained queue makes moto slower with each delivery, which says nothing of ours), and for a
repeated sample its dedupe claim is deleted, so each delivery does a new delivery's whole work."""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"
PROVIDERS = ("shopify", "woocommerce", "stripe", "typeform", "tally", "calendly", "webflow", "jotform")


@dataclass
class Clock:
    """Time spent inside moto's stubber and in the garbage collector, accumulated while a delivery runs."""

    moto_wall: float = 0.0
    moto_cpu: float = 0.0
    sdk_wall: float = 0.0  # inside botocore's _make_api_call, moto's part included
    gc_wall: float = 0.0
    calls: int = 0
    _gc_start: float = 0.0

    def reset(self) -> None:
        self.moto_wall = self.moto_cpu = self.sdk_wall = self.gc_wall = 0.0
        self.calls = 0

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc_wall += time.perf_counter() - self._gc_start


@dataclass
class Sample:
    total: float
    cpu: float
    moto: float
    moto_cpu: float
    sdk: float
    calls: int
    gc: float

    @property
    def ours(self) -> float:
        return self.total - self.moto

    @property
    def botocore(self) -> float:
        """botocore's client side: serialise, sign, parse (in AWS too), less moto's emulation."""
        return self.sdk - self.moto

    @property
    def ours_cpu(self) -> float:
        return self.cpu - self.moto_cpu


@dataclass
class Series:
    label: str
    samples: list[Sample] = field(default_factory=list)
    outcome: str = ""


def instrument(clock: Clock) -> None:
    from moto.core import botocore_stubber

    original = botocore_stubber.BotocoreStubber.__call__

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        w, c = time.perf_counter(), time.thread_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            clock.moto_wall += time.perf_counter() - w
            clock.moto_cpu += time.thread_time() - c

    botocore_stubber.BotocoreStubber.__call__ = timed  # type: ignore[method-assign]

    from botocore.client import BaseClient

    make_api_call = BaseClient._make_api_call

    def sdk(self: Any, *args: Any, **kwargs: Any) -> Any:
        w = time.perf_counter()
        try:
            return make_api_call(self, *args, **kwargs)
        finally:
            clock.sdk_wall += time.perf_counter() - w
            clock.calls += 1

    BaseClient._make_api_call = sdk  # type: ignore[method-assign]
    gc.callbacks.append(clock.on_gc)


def run(freeze: bool, deliveries: int, per_provider: int) -> list[Series]:
    from moto import mock_aws

    os.environ.update(
        {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    )
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    clock = Clock()
    instrument(clock)
    with mock_aws():
        from tests.integration.intake_support import (
            SECRETS_PREFIX,
            TABLE,
            Context,
            create_resources,
            http_event,
            intake_env,
            shopify_delivery,
        )

        resources = create_resources()
        env = intake_env(resources["queue_url"])
        env.pop("POWERTOOLS_METRICS_DISABLED")  # as deployed: metrics on, log level INFO
        env.pop("POWERTOOLS_LOG_LEVEL")
        os.environ.update(env)
        for provider in PROVIDERS:
            resources["ssm"].put_parameter(
                Name=f"{SECRETS_PREFIX}/webhooks/{provider}", Value=SECRET, Type="SecureString", Overwrite=True
            )
        from functions.trigger_router import intake
        from shared.constants import PK, SK
        from shared.intake.testing import all_fixtures, load_fixture, signed
        from shared.store.deliveries import delivery_pk

        intake.reset()
        sqs, ddb, queue_url = resources["sqs"], resources["dynamodb"], resources["queue_url"]

        def drain(dedupe_key: str | None) -> None:
            while got := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages"):
                sqs.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
                )
            if dedupe_key:
                ddb.delete_item(
                    TableName=TABLE,
                    Key={PK: {"S": delivery_pk(dedupe_key)}, SK: {"S": "DELIVERY"}},
                )

        def timed(event: dict[str, Any], expect: set[int]) -> tuple[Sample, dict[str, Any]]:
            clock.reset()
            w, c = time.perf_counter(), time.thread_time()
            out = intake.handler(event, Context())
            sample = Sample(
                time.perf_counter() - w,
                time.thread_time() - c,
                clock.moto_wall,
                clock.moto_cpu,
                clock.sdk_wall,
                clock.calls,
                clock.gc_wall,
            )
            assert out["statusCode"] in expect, out
            return sample, out

        # The headline: distinct signed Shopify orders/paid deliveries (new event id, new email each), as before.
        events = []
        for i in range(deliveries + 1):
            body, headers = shopify_delivery("orders.paid", secret=SECRET, email=f"c{i}@example.com", event_id=f"e{i}")
            events.append(http_event("POST", "/webhooks/shopify", body, headers))
        intake.handler(events[0], Context())  # the cold start (clients, SSM, provider modules) is not a delivery's
        drain(None)
        # Every published sample, so each provider module is imported before the heap is frozen.
        fixtures = [(p, t) for p, t in all_fixtures() if p in PROVIDERS]
        for provider, topic in fixtures:
            _, response = timed(_fixture_event(load_fixture(provider, topic), signed, http_event), {202})
            drain(json.loads(response["body"])["id"])
        gc.collect()
        if freeze:
            gc.freeze()
        warm = min(200, deliveries // 10)  # warm-up: not counted
        headline = Series(f"shopify orders/paid x{deliveries}")
        for n, ev in enumerate(events[1:]):
            sample, _ = timed(ev, {202})
            if n >= warm:
                headline.samples.append(sample)
            drain(None)
        out = [headline]
        by_provider: dict[str, Series] = {}
        for provider, topic in fixtures if per_provider else []:
            fixture = load_fixture(provider, topic)
            series = by_provider.setdefault(provider, Series(f"{provider} (every sample)"))
            ev = _fixture_event(fixture, signed, http_event)
            outcomes = set()
            for n in range(per_provider + 10):
                sample, response = timed(ev, {202})
                if n >= 10:
                    series.samples.append(sample)
                body = json.loads(response["body"])
                outcomes.add(f"{topic}: {'unresolved' if body.get('unresolved') else str(body['accepted']) + ' ev'}")
                drain(None if body.get("unresolved") else body["id"])
            series.outcome = ", ".join(sorted({*series.outcome.split(", "), *outcomes} - {""}))
        out.extend(by_provider.values())
        if freeze:
            gc.unfreeze()
        intake.reset()
        return out


def _fixture_event(fixture: dict[str, Any], signed: Callable[..., Any], http_event: Callable[..., Any]) -> Any:
    """A published sample signed as its provider signs (now), as an HTTP API event; unsigned providers on the token."""
    d = signed(fixture, SECRET, datetime.now(UTC))
    path = f"/webhooks/{d.provider}" + (f"/{d.path_token}" if d.path_token else "")
    return http_event("POST", path, d.body, dict(d.headers))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def report(series: list[Series], freeze: bool) -> None:
    print(f"intake handler per delivery, moto in-process, ms (gc.freeze after init: {'yes' if freeze else 'no'})")
    print("  ours = total less moto's emulation; of it, botocore = the SDK's client side, code = the rest")
    print(
        f"{'deliveries':<26}{'n':>5} {'calls':>5} | {'total p50':>9} {'p95':>6} {'p99':>6} | {'ours p50':>8} {'p95':>6}"
        f" {'p99':>6} {'cpu p50':>7} {'cpu p99':>7} | {'botocore p50':>12} {'code p50':>8} | {'moto p50':>8} {'p99':>6}"
        f" | {'gc':>3} {'gc max':>6}"
    )
    for s in series:
        if not s.samples:
            continue
        x = s.samples
        total = [v.total for v in x]
        ours = [v.ours for v in x]
        cpu = [v.ours_cpu for v in x]
        print(
            f"{s.label:<26}{len(x):>5} {statistics.median(v.calls for v in x):>5.0f} |"
            f" {pct(total, 0.5):>9.1f} {pct(total, 0.95):>6.1f} {pct(total, 0.99):>6.1f} |"
            f" {pct(ours, 0.5):>8.1f} {pct(ours, 0.95):>6.1f} {pct(ours, 0.99):>6.1f}"
            f" {pct(cpu, 0.5):>7.1f} {pct(cpu, 0.99):>7.1f} |"
            f" {pct([v.botocore for v in x], 0.5):>12.1f} {pct([v.ours - v.botocore for v in x], 0.5):>8.1f} |"
            f" {pct([v.moto for v in x], 0.5):>8.1f} {pct([v.moto for v in x], 0.99):>6.1f} |"
            f" {sum(1 for v in x if v.gc > 0):>3} {max(v.gc for v in x) * 1000:>6.1f}"
        )
    print("  calls: AWS calls per delivery (median); gc: deliveries during which a collection ran")
    head = series[0]
    p99 = pct([x.ours for x in head.samples], 0.99)
    cpu99 = pct([x.ours_cpu for x in head.samples], 0.99)
    total99 = pct([x.total for x in head.samples], 0.99)
    print(
        f"  {head.label}: our handler's p99 {p99:.1f} ms wall, {cpu99:.1f} ms CPU (target < 50 ms: "
        f"{'met' if p99 < 50 else 'NOT met'}); with moto's emulation {total99:.1f} ms"
    )
    rows = [s for s in series[1:] if s.samples]
    if rows:
        medians = [pct([x.ours for x in s.samples], 0.5) for s in rows]
        p99s = [pct([x.ours for x in s.samples], 0.99) for s in rows]
        print(
            f"  spread across providers, ours: p50 {min(medians):.1f}-{max(medians):.1f} ms, "
            f"p99 {min(p99s):.1f}-{max(p99s):.1f} ms"
        )
        for s in rows:
            print(f"    {s.label}: {s.outcome}")


def import_seconds(statement: str, runs: int = 5) -> float:
    """Median wall time of a fresh interpreter running `statement`, less that of an empty interpreter."""

    def once(code: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        return time.perf_counter() - t0

    empty = statistics.median(once("pass") for _ in range(runs))
    return statistics.median(once(statement) for _ in range(runs)) - empty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--per-provider", type=int, default=300, help="deliveries of each published sample")
    parser.add_argument("--no-freeze", action="store_true")
    parser.add_argument("--no-import", action="store_true", help="skip the cold-import figure")
    args = parser.parse_args()
    # The handler's log lines and EMF metrics go to /dev/null (as deployed they go to stdout); our report to the
    # original stdout.
    report_fd = os.dup(1)
    sink = os.open(os.devnull, os.O_WRONLY)
    sys.stdout.flush()
    os.dup2(sink, 1)
    out = os.fdopen(report_fd, "w", buffering=1)
    try:
        series = run(not args.no_freeze, args.deliveries, args.per_provider)
    finally:
        sys.stdout.flush()
        os.dup2(report_fd, 1)
    sys.stdout = out
    report(series, not args.no_freeze)
    if args.no_import:
        return
    boto = import_seconds("import boto3")
    ours = import_seconds("import functions.trigger_router.intake")
    ratio = ours / boto if boto > 0 else float("inf")
    print("cold import, medians of 5 subprocesses (less an empty interpreter):")
    print(f"  import boto3 {boto * 1000:.0f} ms, import functions.trigger_router.intake {ours * 1000:.0f} ms")
    print(f"  ratio {ratio:.2f}x (target at most 2x: {'met' if ratio <= 2 else 'NOT met'})")


if __name__ == "__main__":
    main()
