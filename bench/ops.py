"""Operating-command figures on moto: DynamoDB requests (by operation, Scan must be 0), Query pages and time for
`history` of a contact with 1,000 records, and for `stats` (table source) and `diff`'s waiting count on a workflow
with 10,000 enrolments. Items are written as the engine writes them (ENROLL# with the run index keys, HIST#, MSG#).

    .venv/bin/python -m bench.ops [--records 1000] [--enrolments 10000]"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

WORKFLOW = "welcome-series"
START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


class RequestCounter:
    """Counts the DynamoDB operations a client sends (botocore's before-call event), by name."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        client.meta.events.register("before-call.dynamodb.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def reset(self) -> None:
        self.calls.clear()


def _hist(contact: str, n: int, at: datetime, step: str, execution: str) -> dict[str, Any]:
    from shared import constants as C
    from shared.store.contacts import contact_pk, epoch

    return {
        C.PK: contact_pk(contact),
        C.SK: f"HIST#{execution.rsplit(':', 1)[-1]}#{n:04d}#{step}",
        "contact_id": contact,
        "workflow": WORKFLOW,
        "version": "2ff60b4b732e",
        "execution": execution,
        "step": step,
        "kind": "if",
        "outcome": "branch then",
        "branch": "then",
        "why": "score 20 >= 10",
        "conditions": [{"condition": "score >= 10", "value": 20, "result": True}],
        "at": at.isoformat(),
        "seq": 1,
        "entered": f"{at.isoformat()}|{n:020d}",
        C.TTL_ATTRIBUTE: epoch(at + timedelta(days=30)),
    }


def _write(ddb: Any, table: str, items: list[dict[str, Any]]) -> None:
    from shared.store.contacts import serialise

    for i in range(0, len(items), 25):
        request = {table: [{"PutRequest": {"Item": serialise(it)}} for it in items[i : i + 25]]}
        while request:
            request = ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}


def _enrolment(contact: str, execution: str, at: datetime) -> dict[str, Any]:
    from shared import constants as C
    from shared.store.contacts import contact_pk
    from shared.store.operations import run_index_pk, run_index_sk

    return {
        C.PK: contact_pk(contact),
        C.SK: f"ENROLL#{WORKFLOW}",
        "workflow": WORKFLOW,
        "execution_arn": execution,
        "status": "running",
        "entered_at": at.isoformat(),
        "count": 1,
        "goals": [],
        C.GSI1_PK: run_index_pk(WORKFLOW),
        C.GSI1_SK: run_index_sk("running", at.isoformat(), contact),
    }


def partition_queries_for_moto() -> None:
    """moto's Query on the base table walks every item of the table (O(table)), DynamoDB's reads one partition
    (O(items returned)). With 50,000 items that is ~1 s per Query on moto, so the 10,000 per-contact Queries would
    time moto, not us: for the timing the base-table lookup is narrowed to the partition's own items. Requests and
    pages are counted the same either way; `--no-patch` shows moto as it is."""
    import threading

    from moto.dynamodb.models.table import Table

    original_query, original_all = Table.query, Table.all_items
    local = threading.local()  # partition Queries run on several threads at once

    def all_items(self: Any) -> Any:
        own = getattr(local, "own", None)
        return own if own is not None else original_all(self)

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name is not None or hash_key is None or not self.range_key_attr:
            return original_query(self, hash_key, *args, **kwargs)
        local.own = list(self.items.get(hash_key, {}).values())
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            local.own = None

    Table.all_items = all_items
    Table.query = query


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000, help="history records of the one contact")
    parser.add_argument("--enrolments", type=int, default=10_000, help="enrolments of the workflow")
    parser.add_argument("--no-patch", action="store_true", help="time moto's O(table) Query as it is")
    parser.add_argument("--workers", type=int, default=8, help="partition Queries in flight (default 8)")
    args = parser.parse_args()
    if not args.no_patch:
        partition_queries_for_moto()
    os.environ.update(
        {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    )
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    import boto3
    from moto import mock_aws

    from shared import clock
    from shared import constants as C
    from shared.store.contacts import ContactStore, contact_pk, create_table
    from shared.store.operations import OperationsStore
    from stepwise.ops.diff import waiting_by_step
    from stepwise.ops.history import contact_history
    from stepwise.ops.stats import TableSource

    clock.use(lambda: START + timedelta(days=20))
    with mock_aws():
        ddb = boto3.client("dynamodb")
        table = "bench-ops"
        create_table(ddb, table)
        ops = OperationsStore(ContactStore(table, ddb), workers=args.workers)
        counter = RequestCounter(ddb)

        # history: one contact, `records` history records (a decision each, with its condition) + its identity.
        cid = "c-bench"
        arn = f"arn:aws:states:us-east-1:123456789012:execution:stepwise-{WORKFLOW}:run-1"
        items: list[dict[str, Any]] = [
            {C.PK: contact_pk(cid), C.SK: "PROFILE", "contact_id": cid, "email": "bench@example.com"},
            {C.PK: "IDENT#email#bench@example.com", C.SK: "IDENT", "contact_id": cid},
            _enrolment(cid, arn, START),
        ]
        items += [_hist(cid, n, START + timedelta(minutes=n), f"step-{n % 20}", arn) for n in range(args.records)]
        _write(ddb, table, items)
        counter.reset()
        t0 = time.perf_counter()
        report = contact_history(ops, "bench@example.com")
        took = time.perf_counter() - t0
        print(
            f"history of a contact with {args.records} records: {len(report['steps'])} shown, "
            f"{sum(counter.calls.values())} DynamoDB requests {dict(counter.calls)}, "
            f"{report['reads']['pages']} Query page(s), {took * 1000:.0f} ms"
        )

        # stats / diff: `enrolments` contacts in one workflow, each with 3 history records and 1 message.
        t0 = time.perf_counter()
        batch: list[dict[str, Any]] = []
        for i in range(args.enrolments):
            c = f"c-{i:05d}"
            at = START + timedelta(seconds=i * 60)
            run = f"arn:aws:states:us-east-1:123456789012:execution:stepwise-{WORKFLOW}:r{i}"
            batch.append(_enrolment(c, run, at))
            batch += [_hist(c, 0, at + timedelta(minutes=k), s, run) for k, s in enumerate(("a", "b", "c"))]
            batch.append(
                {
                    C.PK: contact_pk(c),
                    C.SK: f"MSG#m{i}",
                    "workflow": WORKFLOW,
                    "step": "a",
                    "status": "sent",
                    "at": at.isoformat(),
                    "channel": "email",
                }
            )
        _write(ddb, table, batch)
        print(f"(wrote {len(batch):,} items for {args.enrolments:,} enrolments in {time.perf_counter() - t0:.1f} s)")
        for name, run_it in (
            ("stats", lambda: TableSource(ops).funnel(WORKFLOW, START - timedelta(days=1))),
            ("diff (contacts waiting)", lambda: waiting_by_step(ops, WORKFLOW)),
        ):
            counter.reset()
            t0 = time.perf_counter()
            result = run_it()
            took = time.perf_counter() - t0
            calls = dict(counter.calls)
            entered = getattr(result, "entered", None)
            print(
                f"{name} on a workflow with {args.enrolments:,} enrolments"
                f"{f' ({entered:,} entered)' if entered is not None else ''}: "
                f"{sum(calls.values()):,} DynamoDB requests {calls}, {took:.1f} s"
                f" ({took / max(1, args.enrolments) * 1000:.2f} ms per enrolment)"
            )
            assert calls.get("Scan", 0) == 0, "an operating command scanned the table"


if __name__ == "__main__":
    main()
