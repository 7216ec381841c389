"""Operating-command figures on moto, from one run: DynamoDB requests by operation (Scan must be 0: the bench fails
otherwise), GSI1 Query pages and time for `history` of a contact with 1,000 records, and for `stuck`, `stats`
(table source) and `diff`'s waiting count on a workflow with 10,000 enrolments. Beside them, in the same run:
`diff` and `stuck` on a workflow whose enrolments are in the run index's earlier shape (no current step on the key:
the per-contact path they keep for those), and the step runner's DynamoDB requests per contact through a small
workflow with the current-step write and without it.

The data is written through the store's own key builders (shared/store/run_index.py, contacts.activity_item),
in BatchWriteItem batches of 25, as the engine leaves it: ENROLL# with the current step on the run index, HIST#
and ENTERED# and message events on the funnel index, MSG#.

    .venv/bin/python -m bench.ops [--records 1000] [--enrolments 10000] [--legacy 1000]"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

WORKFLOW = "welcome-series"
LEGACY = "welcome-legacy"
START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
VERSION = "2ff60b4b732e"
STEPS = ("hello", "first-wait", "nudge", "second-wait", "bye")
DEFINITION = {
    "StartAt": "hello",
    "States": {
        "hello": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"Payload": {"op": "actions", "version": VERSION}},
            "Next": "first-wait",
        },
        "first-wait": {"Type": "Wait", "Seconds": 2 * 86400, "Next": "nudge"},
        "nudge": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"Payload": {"op": "actions", "version": VERSION}},
            "Next": "second-wait",
        },
        "second-wait": {"Type": "Wait", "Seconds": 5 * 86400, "Next": "bye"},
        "bye": {"Type": "Succeed"},
    },
}


class RequestCounter:
    """Counts the DynamoDB operations a client sends (botocore's before-call event), by name, and the time spent
    inside them (before-call to after-call: moto's own work, in process, which a real endpoint does elsewhere)."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.inside = 0.0
        self._started: dict[int, float] = {}
        client.meta.events.register("before-call.dynamodb.*", self._count)
        client.meta.events.register("after-call.dynamodb.*", self._done)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1
        self._started[threading.get_ident()] = time.perf_counter()

    def _done(self, **_: Any) -> None:
        began = self._started.pop(threading.get_ident(), None)
        if began is not None:
            self.inside += time.perf_counter() - began

    def reset(self) -> None:
        self.calls.clear()
        self.inside = 0.0


def _hist(
    contact: str, n: int, at: datetime, step: str, execution: str, outcome: str, wf: str, seq: int = 1
) -> dict[str, Any]:
    from shared import constants as C
    from shared.store.contacts import contact_pk, epoch
    from shared.store.run_index import funnel_keys

    rec = {
        C.PK: contact_pk(contact),
        C.SK: f"HIST#{execution.rsplit(':', 1)[-1]}#{n:04d}#{step}",
        "contact_id": contact,
        "workflow": wf,
        "version": VERSION,
        "execution": execution,
        "step": step,
        "kind": "wait" if "wait" in step else "if",
        "outcome": outcome,
        "why": "score 20 >= 10",
        "conditions": [{"condition": "score >= 10", "value": 20, "result": True}],
        "at": at.isoformat(),
        "seq": seq,
        "entered": f"{at.isoformat()}|{n:020d}",
        C.TTL_ATTRIBUTE: epoch(at + timedelta(days=30)),
    }
    if wf == WORKFLOW:
        rec |= funnel_keys(rec, contact)  # as ContactStore.commit_step writes it
    return rec


def _write(ddb: Any, table: str, items: list[dict[str, Any]]) -> None:
    from shared.store.contacts import serialise

    for i in range(0, len(items), 25):
        request = {table: [{"PutRequest": {"Item": serialise(it)}} for it in items[i : i + 25]]}
        while request:
            request = ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}


def _enrolment(contact: str, execution: str, at: datetime, last: dict[str, Any] | None, wf: str) -> dict[str, Any]:
    """The ENROLL# item as the engine leaves it: the current step (the run's latest record) on the run index
    key, as ContactStore.progress_write writes it; or, for `LEGACY`, the key shape before (no step, unsharded)."""
    from shared import constants as C
    from shared.store.contacts import contact_pk
    from shared.store.run_index import (
        PROGRESS,
        RUN_INDEX_PREFIX,
        order_key,
        progress_sk,
        progress_state,
        run_index_pk,
        run_index_sk,
    )

    item: dict[str, Any] = {
        C.PK: contact_pk(contact),
        C.SK: f"ENROLL#{wf}",
        "workflow": wf,
        "execution_arn": execution,
        "status": "running",
        "entered_at": at.isoformat(),
        "count": 1,
        "goals": [],
        "rev": 1,
        C.GSI1_PK: f"{RUN_INDEX_PREFIX}{wf}" if wf == LEGACY else run_index_pk(wf, contact),
        C.GSI1_SK: run_index_sk("running", at.isoformat(), contact),
    }
    if wf == WORKFLOW and last is not None:
        progress = {
            "step": last["step"],
            "state": progress_state(last),
            "at": last["at"],
            "until": "",
            "version": VERSION,
            "execution": execution,
            "order": order_key(last),
        }
        item |= {PROGRESS: progress, C.GSI1_SK: progress_sk("running", progress, contact), "entry": "x"}
    return item


def _entered(contact: str, execution: str, at: datetime) -> dict[str, Any]:
    from shared import constants as C
    from shared.store.contacts import contact_pk, epoch
    from shared.store.run_index import ENTERED_PREFIX, funnel_pk, funnel_sk

    name = execution.rsplit(":", 1)[-1]
    return {  # as shared/enrollment.py entry_marker writes it
        C.PK: contact_pk(contact),
        C.SK: f"{ENTERED_PREFIX}{WORKFLOW}#{name}",
        "workflow": WORKFLOW,
        "execution_arn": execution,
        "entered_at": at.isoformat(),
        C.GSI1_PK: funnel_pk(WORKFLOW, contact),
        C.GSI1_SK: funnel_sk(at.isoformat(), "entered", "", "", name),
        C.TTL_ATTRIBUTE: epoch(at + timedelta(days=30)),
    }


def _seed_workflow(n: int, wf: str, now: datetime) -> list[dict[str, Any]]:
    """`n` contacts in `wf`, spread over the last 6 days: each at hello -> first-wait -> (nudge -> second-wait)
    as far as its entry time takes it; one contact in a hundred is a day overdue at first-wait (entered 3 days
    before a step that should have let it go after 2, its nudge never recorded)."""
    from shared import constants as C
    from shared.store.contacts import activity_item, contact_pk

    items: list[dict[str, Any]] = []
    for i in range(n):
        c = f"{'old' if wf == LEGACY else 'c'}-{i:05d}"
        entered = now - timedelta(days=3 if i % 100 == 0 else 6 * (i + 1) / (n + 1))
        run = f"arn:aws:states:us-east-1:123456789012:execution:stepwise-{wf}:{wf[-6:]}-r{i}"
        recs = [
            _hist(c, 0, entered, "hello", run, "done", wf, 1),
            _hist(c, 0, entered, "first-wait", run, "waiting", wf, 2),
        ]
        if entered + timedelta(days=2) <= now and i % 100:
            later = entered + timedelta(days=2)
            recs += [
                _hist(c, 0, later, "nudge", run, "done", wf, 1),
                _hist(c, 0, later, "second-wait", run, "waiting", wf, 2),
            ]
        items += recs
        items.append(_enrolment(c, run, entered, recs[-1], wf))
        mid = f"m{i}"
        items.append(
            {
                C.PK: contact_pk(c),
                C.SK: f"MSG#{mid}",
                "message_id": mid,
                "workflow": wf,
                "step": "hello",
                "status": "sent",
                "at": entered.isoformat(),
                "channel": "email",
            }
        )
        if wf == WORKFLOW:
            items.append(_entered(c, run, entered))
            sent = {"message_id": mid, "workflow": wf, "step": "hello"}
            items.append(activity_item(c, f"e{i}", "email.sent", sent, entered))
            if i % 3 == 0:
                items.append(activity_item(c, f"d{i}", "email.delivered", sent, entered + timedelta(minutes=1)))
    return items


def partition_queries_for_moto() -> None:
    """moto's Query on the base table walks every item of the table (O(table)), DynamoDB's reads one partition
    (O(items returned)). With 100,000 items that is a second per Query on moto, so the per-contact Queries of
    the earlier key shape would time moto, not us: for the timing the base-table lookup is narrowed to the
    partition's own items. Requests and pages are counted the same either way; `--no-patch` shows moto as it is."""
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

    Table.all_items = all_items  # type: ignore[method-assign]
    Table.query = query  # type: ignore[method-assign]


def index_bytes(ddb: Any, table: str, pk: str) -> int:
    """The size DynamoDB would count for the index entries under `pk` (KEYS_ONLY: the four key attributes),
    to say how many 1 MB pages AWS would return where moto returns one."""
    from shared import constants as C

    total, kwargs = (
        0,
        {
            "TableName": table,
            "IndexName": C.GSI1,
            "KeyConditionExpression": "#g = :g",
            "ExpressionAttributeNames": {"#g": C.GSI1_PK},
            "ExpressionAttributeValues": {":g": {"S": pk}},
        },
    )
    while True:
        page = ddb.query(**kwargs)
        for item in page["Items"]:
            total += sum(len(k) + len(v["S"].encode()) for k, v in item.items())
        if "LastEvaluatedKey" not in page:
            return total
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def timed(counter: RequestCounter, fn: Any, repeat: int = 3) -> tuple[Any, dict[str, int], float, float]:
    """(result, requests of one call by operation, median seconds over `repeat` calls, median seconds of those
    spent outside the requests: Stepwise's own work)."""
    times, own, calls, result = [], [], {}, None
    for _ in range(repeat):
        counter.reset()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        own.append(max(0.0, times[-1] - counter.inside))
        calls = dict(counter.calls)
        assert calls.get("Scan", 0) == 0, "an operating command scanned the table"
    return result, calls, statistics.median(times), statistics.median(own)


def step_runner_requests(contacts: int) -> dict[str, dict[str, float]]:
    """DynamoDB requests per contact by operation, from its entry to its run's end, through a 5-step workflow on
    the local stack (router, enroller, step runner in process), with the current-step write and with it taken out
    (ContactStore.progress_write returning None), in the same run; and the items those transactions carry."""
    import boto3

    from shared.store.contacts import ContactStore
    from shared.workflow.model import parse_workflow
    from stepwise.simulate import DEFAULT_START, Simulation

    wf = parse_workflow(
        {
            "name": "steps",
            "triggers": [{"event": "list.subscribed"}],
            "steps": [
                {"id": "hello", "add_tag": "New"},
                {"id": "first-wait", "wait": "2d"},
                {"id": "nudge", "add_tag": "Nudged"},
                {"id": "second-wait", "wait": "5d"},
                {"id": "bye", "add_tag": "Done"},
            ],
        }
    )
    from shared.events import ContactEvent

    out: dict[str, dict[str, float]] = {}
    original = ContactStore.progress_write
    for label, on in (("with the current-step write", True), ("without it", False)):
        if not on:
            ContactStore.progress_write = lambda self, contact_id, history: None  # type: ignore[method-assign]
        try:
            calls: Counter[str] = Counter()

            def note(model: Any, _calls: Counter[str] = calls, **_: Any) -> None:
                _calls[model.name] += 1

            def items(params: Any, _calls: Counter[str] = calls, **_: Any) -> None:
                _calls["(items in TransactWriteItems)"] += len(params.get("TransactItems", []))

            with Simulation([wf]) as sim:
                # The router's and enroller's client, and the one the in-process step runner makes on its first
                # call (from boto3's default session, which moto's mock has just replaced).
                boto3.setup_default_session()
                for events in (sim.store.client.meta.events, boto3.DEFAULT_SESSION.events):  # type: ignore[attr-defined]
                    events.register("before-call.dynamodb.*", note)
                    events.register("before-parameter-build.dynamodb.TransactWriteItems", items)
                for i in range(contacts):
                    sim.send(
                        ContactEvent.model_validate(
                            {
                                "id": f"s{i}",
                                "type": "list.subscribed",
                                "data": {"list": "news"},
                                "contact": {"email": f"s{i}@example.com"},
                            }
                        )
                    )
                sim.advance(DEFAULT_START + timedelta(days=8))
        finally:
            ContactStore.progress_write = original  # type: ignore[method-assign]
        out[label] = {k: v / contacts for k, v in sorted(calls.items())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=1000, help="history records of the one contact")
    parser.add_argument("--enrolments", type=int, default=10_000, help="enrolments of the workflow")
    parser.add_argument("--legacy", type=int, default=1_000, help="enrolments in the earlier key shape (0: none)")
    parser.add_argument("--steps-contacts", type=int, default=10, help="contacts through the step-runner count")
    parser.add_argument("--no-patch", action="store_true", help="time moto's O(table) Query as it is")
    parser.add_argument("--workers", type=int, default=8, help="partition Queries in flight (default 8)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
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
    from shared.store.run_index import FUNNEL_PREFIX, RUN_INDEX_PREFIX, SHARDS, index_pks
    from stepwise.ops.diff import waiting_by_step
    from stepwise.ops.history import contact_history
    from stepwise.ops.stats import TableSource
    from stepwise.ops.stuck import find_stuck

    now = START + timedelta(days=20)
    clock.use(lambda: now)
    figures: dict[str, Any] = {}
    with mock_aws():
        ddb = boto3.client("dynamodb")
        sfn = boto3.client("stepfunctions")
        role = "arn:aws:iam::123456789012:role/bench"
        machines = {
            wf: sfn.create_state_machine(name=f"stepwise-{wf}", definition=json.dumps(DEFINITION), roleArn=role)[
                "stateMachineArn"
            ]
            for wf in (WORKFLOW, LEGACY)
        }
        table = "bench-ops"
        create_table(ddb, table)
        ops = OperationsStore(ContactStore(table, ddb), sfn=sfn, workers=args.workers)
        counter = RequestCounter(ddb)

        # history: one contact, `records` history records (a decision each, with its condition) + its identity.
        cid = "c-bench"
        arn = f"arn:aws:states:us-east-1:123456789012:execution:stepwise-{WORKFLOW}:run-1"
        items: list[dict[str, Any]] = [
            {C.PK: contact_pk(cid), C.SK: "PROFILE", "contact_id": cid, "email": "bench@example.com"},
            {C.PK: "IDENT#email#bench@example.com", C.SK: "IDENT", "contact_id": cid},
        ]
        hist = [
            _hist(cid, n, START + timedelta(minutes=n), f"step-{n % 20}", arn, "branch then", "bench-history")
            for n in range(args.records)
        ]
        items += [*hist, _enrolment(cid, arn, START, hist[-1], "bench-history")]
        _write(ddb, table, items)
        report, calls, took, own = timed(counter, lambda: contact_history(ops, "bench@example.com"))
        figures["history"] = {"records": args.records, "requests": calls, "pages": report["reads"]["pages"], "s": took}
        print(
            f"history of a contact with {args.records:,} records: {len(report['steps']):,} shown, "
            f"{sum(calls.values())} DynamoDB requests {calls}, {report['reads']['pages']} Query page(s), "
            f"{took * 1000:.0f} ms median of 3, of which {own * 1000:.0f} ms outside moto"
        )

        t0 = time.perf_counter()
        batch = _seed_workflow(args.enrolments, WORKFLOW, now)
        batch += _seed_workflow(args.legacy, LEGACY, now)
        _write(ddb, table, batch)
        print(
            f"(seeded {len(batch):,} items through BatchWriteItem for {args.enrolments:,} + {args.legacy:,} "
            f"enrolments in {time.perf_counter() - t0:.1f} s)"
        )
        sizes = {
            family: [index_bytes(ddb, table, pk) / 1024 for pk in index_pks(family, WORKFLOW)]
            for family in (RUN_INDEX_PREFIX, FUNNEL_PREFIX)
        }
        run_kb, funnel_kb = (sizes[f] for f in (RUN_INDEX_PREFIX, FUNNEL_PREFIX))
        print(
            f"(index sizes over {SHARDS} shards + the unsharded key: run index {sum(run_kb):,.0f} KB = "
            f"{sum(int(kb // 1024) + 1 for kb in run_kb)} page(s) of 1 MB in DynamoDB, funnel index "
            f"{sum(funnel_kb):,.0f} KB = {sum(int(kb // 1024) + 1 for kb in funnel_kb)} page(s); moto returns each"
            " key in one)"
        )
        since = now - timedelta(days=30)
        runs: list[tuple[str, str, int, Any]] = [
            ("stuck", WORKFLOW, args.enrolments, lambda: find_stuck(ops, WORKFLOW, machines[WORKFLOW], now=now)),
            ("stats", WORKFLOW, args.enrolments, lambda: TableSource(ops).funnel(WORKFLOW, since)),
            ("diff (contacts waiting)", WORKFLOW, args.enrolments, lambda: waiting_by_step(ops, WORKFLOW)),
        ]
        if args.legacy:
            runs += [
                (
                    "stuck, earlier key shape",
                    LEGACY,
                    args.legacy,
                    lambda: find_stuck(ops, LEGACY, machines[LEGACY], now=now),
                ),
                ("diff, earlier key shape", LEGACY, args.legacy, lambda: waiting_by_step(ops, LEGACY)),
            ]
        for name, _wf, n, run_it in runs:
            repeat = 3 if n <= 2_000 else 1
            pages = ops.index_pages
            result, calls, took, own = timed(counter, run_it, repeat=repeat)
            pages = (ops.index_pages - pages) // repeat
            extra = ""
            if name.startswith("stuck"):
                extra = f"{len(result.stuck)} stuck of {result.running:,} running; "
            elif name == "stats":
                extra = f"{result.entered:,} entered, waiting {result.waiting}, sent {result.messages['sent']:,}; "
            elif name.startswith("diff"):
                extra = f"waiting {dict(result[0])}; "
            figures[name] = {"enrolments": n, "requests": calls, "index_pages": pages, "s": took, "own_s": own}
            how = "median of 3" if repeat > 1 else "one run"
            print(
                f"{name} on a workflow with {n:,} enrolments: {extra}{sum(calls.values()):,} DynamoDB requests "
                f"{calls}, {pages} index page(s) from moto, {took:.2f} s ({how}),"
                f" of which {own:.2f} s outside moto ({own / max(1, n) * 1e6:.0f} µs per enrolment)"
            )

    per = step_runner_requests(args.steps_contacts)
    figures["step runner requests per contact"] = per
    for label, calls in per.items():
        print(
            f"entry + step runner through 5 steps, DynamoDB requests per contact {label}: "
            f"{sum(v for k, v in calls.items() if not k.startswith('(')):g} "
            f"{ ({k: round(v, 2) for k, v in calls.items()}) }"
        )
    if args.json:
        print(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
