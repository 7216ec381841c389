"""Erasure figures on the local stack (the real intake and router over moto), from one run, side by side:

- what the archive's index by contact costs per delivery: DynamoDB requests of the intake and router for a routed
  delivery and for a topic with no event (Shopify orders/create), with the index and with it switched off, and the
  bytes it adds to the routed delivery's ACT# item;
- finding one contact's archived objects among --others deliveries of other contacts: through the index (erase's
  dry run: it reads what the real erase reads) against reading the whole bucket (how erase found them before),
  S3 and DynamoDB requests and time, medians of --repeat runs.

    .venv/bin/python -m bench.erase [--others 300] [--deliveries 20] [--repeat 3]"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import yaml

WORKFLOW = """
name: tag-them
triggers: [{event: list.subscribed}]
steps:
  - id: tag
    add_tag: Subscriber
"""
START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
API_KEY = "sw_bench_key_0123456789"
SECRET = "bench-secret"


_current: list[Counter[str]] = []


@contextmanager
def counting() -> Iterator[Counter[str]]:
    """Every AWS request made meanwhile by any boto3 client (the intake's, the router's, the local stack's: the
    delivery's whole path), by service.operation (`install` wraps botocore's one way out)."""
    calls: Counter[str] = Counter()
    _current.append(calls)
    try:
        yield calls
    finally:
        _current.pop()


def install() -> None:
    import botocore.client

    original = botocore.client.BaseClient._make_api_call

    def counted(self: Any, operation_name: str, api_params: Any) -> Any:
        if _current:
            _current[-1][f"{self.meta.service_model.service_name}.{operation_name}"] += 1
        return original(self, operation_name, api_params)

    botocore.client.BaseClient._make_api_call = counted  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--others", type=int, default=300)
    ap.add_argument("--deliveries", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    os.environ["STEPWISE_API_KEY"] = API_KEY
    os.environ["STEPWISE_WEBHOOK_SECRET_SHOPIFY"] = SECRET
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    install()

    from functions.trigger_router import intake, router
    from shared.intake.testing import load_fixture, signed
    from shared.store import archive as archive_module
    from shared.store.contacts import activity_item
    from shared.store.operations import OperationsStore
    from shared.workflow.model import parse_workflow
    from stepwise.local_api import ARCHIVE_BUCKET, LocalApi
    from stepwise.ops.erase import erase

    def post(api: LocalApi, eid: str, email: str) -> None:
        event = {"id": eid, "type": "list.subscribed", "contact": {"email": email}, "data": {"list": "news"}}
        body = json.dumps(event).encode()
        headers = {"content-type": "application/json", "authorization": f"Bearer {API_KEY}"}
        assert api.invoke_intake("POST", "/events", headers, body)["statusCode"] == 202

    def unrouted(api: LocalApi, n: int, email: str) -> None:
        fx = load_fixture("shopify", "orders/create")
        fx["headers"].pop("content-length", None)
        fx["headers"]["x-shopify-webhook-id"] = f"bench-{n}"
        body = json.dumps({**fx["body"], "email": email, "id": n}).encode()
        d = signed(fx, SECRET, api.sim.now, body=body)
        assert api.invoke_intake("POST", "/webhooks/shopify", dict(d.headers), d.body)["statusCode"] == 202

    def per_delivery(api: LocalApi, send: Callable[[int], None], first: int) -> dict[str, float]:
        """Median DynamoDB requests per delivery, by operation, over --deliveries deliveries."""
        runs: list[Counter[str]] = []
        for i in range(first, first + args.deliveries):
            with counting() as calls:
                send(i)
            runs.append(Counter({k: v for k, v in calls.items() if k.startswith("dynamodb.")}))
        ops = sorted({k for r in runs for k in r})
        return {k.split(".")[1]: statistics.median(r[k] for r in runs) for k in ops}

    wf = parse_workflow(yaml.safe_load(WORKFLOW))
    with LocalApi([wf], start=START, activated_at=START - timedelta(days=1)) as api:
        intake.reset()
        router.reset()
        on_routed = per_delivery(api, lambda i: post(api, f"r{i}", f"r{i}@example.com"), 0)
        on_unrouted = per_delivery(api, lambda i: unrouted(api, i, f"u{i}@example.com"), 0)
        original = archive_module.Archive.index_by_identities
        archive_module.Archive.index_by_identities = lambda self, keys, doc, now: 0  # type: ignore[method-assign,assignment]
        try:
            off_routed = per_delivery(api, lambda i: post(api, f"r{i}", f"r{i}@example.com"), 1000)
            off_unrouted = per_delivery(api, lambda i: unrouted(api, i, f"u{i}@example.com"), 1000)
        finally:
            archive_module.Archive.index_by_identities = original  # type: ignore[method-assign]
        act = activity_item("c-0123456789abcdef", "d" * 16, "list.subscribed", {"list": "news"}, START)
        key = "deliveries/2026/11/30/events/events::0123456789abcdef.json"
        with_key = activity_item("c-0123456789abcdef", "d" * 16, "list.subscribed", {"list": "news"}, START, key)

        # The bucket: --others deliveries of other contacts, and the target's 3 (2 routed, 1 with no event).
        for i in range(args.others):
            post(api, f"o{i}", f"other{i}@example.com")
        post(api, "t1", "target@example.com")
        post(api, "t2", "target@example.com")
        unrouted(api, 99999, "target@example.com")
        s3 = boto3.client("s3", region_name=api.sim.stack.region)
        objects = sum(p.get("KeyCount", 0) for p in s3.get_paginator("list_objects_v2").paginate(Bucket=ARCHIVE_BUCKET))
        ops = OperationsStore(api.sim.store, sfn=api.sim.stack.sfn, s3=s3, bucket=ARCHIVE_BUCKET)

        index_runs: list[tuple[float, Counter[str], Counter[str], int]] = []
        scan_runs: list[tuple[float, Counter[str], Counter[str], int]] = []
        needles = ["target@example.com", str(ops.find_contact("target@example.com"))]
        for _ in range(args.repeat):
            with counting() as calls:
                t0 = time.perf_counter()
                found = erase(ops, "target@example.com", dry_run=True, settle_seconds=0).archive_objects
                took = time.perf_counter() - t0
            index_runs.append((took, *_split(calls), found))
            with counting() as calls:
                t0 = time.perf_counter()
                found = len(list(ops.archived_naming(needles)))
                took = time.perf_counter() - t0
            scan_runs.append((took, *_split(calls), found))

    def show(name: str, runs: list[tuple[float, Counter[str], Counter[str], int]]) -> None:
        took = statistics.median(r[0] for r in runs)
        _, s3_calls, ddb_calls, found = runs[0]
        print(f"  {name:<36} {took * 1000:8.1f} ms, {found} objects; S3 {dict(s3_calls)}; DynamoDB {dict(ddb_calls)}")

    print(
        "Per delivery: DynamoDB requests of its whole path (intake, router, the step; median of",
        args.deliveries,
        "deliveries)",
    )
    print(f"  routed delivery       index on  {on_routed}")
    print(f"                        index off {off_routed}")
    print(f"  topic with no event   index on  {on_unrouted}")
    print(f"                        index off {off_unrouted}")
    print(f"  ACT# item: {len(json.dumps(act))} bytes as JSON without archive_key, {len(json.dumps(with_key))} with it")
    print(f"Finding one contact's objects in a bucket of {objects} (median of {args.repeat}):")
    show("through the index (erase --dry-run)", index_runs)
    show("reading the bucket (before)", scan_runs)
    ratio = statistics.median(r[0] for r in scan_runs) / statistics.median(r[0] for r in index_runs)
    print(f"  reading the bucket / the index: {ratio:.1f}x the time")


def _split(calls: Counter[str]) -> tuple[Counter[str], Counter[str]]:
    """(S3 requests, DynamoDB requests) by operation."""
    pick = lambda service: Counter({k.split(".")[1]: v for k, v in calls.items() if k.startswith(service + ".")})  # noqa: E731
    return pick("s3"), pick("dynamodb")


if __name__ == "__main__":
    main()
