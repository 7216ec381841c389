"""The run and funnel index keys are sharded by contact (RUN#<workflow>#<shard>, FUNNEL#<workflow>#<shard>), so one
workflow's index writes spread over SHARDS partition keys instead of one. The readers (`runs`, `funnel`, and through
them stuck, stats and diff) Query every shard plus the unsharded key items written before sharding still carry:
SHARDS + 1 Query pages per key range, never one per contact, never a Scan; and they still find every run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from moto import mock_aws

from shared import constants as C
from shared.store.contacts import ContactStore, contact_pk, create_table
from shared.store.operations import OperationsStore
from shared.store.run_index import (
    FUNNEL_PREFIX,
    RUN_INDEX_PREFIX,
    SHARDS,
    funnel_pk,
    funnel_sk,
    index_pks,
    progress_sk,
    run_index_pk,
    shard_of,
)
from stepwise.ops.diff import waiting_by_step
from stepwise.ops.erase import erase
from stepwise.ops.stats import TableSource
from stepwise.ops.stuck import find_stuck
from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import contact, event, workflow
from tests.integration.test_ops_diff import V1
from tests.integration.test_ops_stats import count_requests


def test_a_contacts_shard_is_pinned_and_the_readers_keys_are_every_shard_then_the_unsharded_one() -> None:
    # Pinned: a different hash would put a contact's new keys on another shard than its old ones.
    assert [shard_of(c) for c in ("c-00000", "c-00001", "ada", "c-572228646dad9407")] == [6, 0, 8, 2]
    assert all(0 <= shard_of(f"c-{i}") < SHARDS for i in range(200))
    assert run_index_pk("w", "ada") == "RUN#w#8" and funnel_pk("w", "ada") == "FUNNEL#w#8"
    keys = index_pks(RUN_INDEX_PREFIX, "w")
    assert keys == [f"RUN#w#{s}" for s in range(SHARDS)] + ["RUN#w"] and len(set(keys)) == SHARDS + 1
    assert index_pks(FUNNEL_PREFIX, "w")[-1] == "FUNNEL#w"


def _unshard(sim: Simulation, contact_id: str) -> int:
    """Rewrite a contact's index keys as they were before sharding (the unsharded partition key): an item written
    before this change. Returns how many items were rewritten."""
    ops = OperationsStore(sim.store)
    moved = 0
    for item in ops.partition(contact_id).items:
        pk = str(item.get(C.GSI1_PK, ""))
        for prefix in (RUN_INDEX_PREFIX, FUNNEL_PREFIX):
            if pk.startswith(prefix):
                sim.store.put_item({**item, C.GSI1_PK: pk.rsplit("#", 1)[0]})
                moved += 1
    return moved


def _index_items(sim: Simulation, pk: str) -> list[dict[str, Any]]:
    page = sim.store.client.query(
        TableName=sim.store.table,
        IndexName=C.GSI1,
        KeyConditionExpression="#g = :g",
        ExpressionAttributeNames={"#g": C.GSI1_PK},
        ExpressionAttributeValues={":g": {"S": pk}},
    )
    return list(page["Items"])


def test_stuck_stats_diff_and_erase_find_every_run_over_the_shards_and_the_unsharded_key() -> None:
    with Simulation([workflow(V1)]) as sim:
        emails = [f"s{i}@example.com" for i in range(12)]
        for i, email in enumerate(emails):
            sim.send(event(f"e{i}", "list.subscribed", {"list": "news"}, email=email))
        sim.advance(DEFAULT_START + timedelta(days=1))  # everyone at the 5-day wait
        ids = [contact(sim, email=e)["id"] for e in emails]

        # Each contact's keys are on its own shard; one workflow's contacts are on several.
        records = {c: sim.store.get_item(contact_pk(c), "ENROLL#onboarding") for c in ids}
        assert all(r is not None and r[C.GSI1_PK] == run_index_pk("onboarding", c) for c, r in records.items())
        assert len({shard_of(c) for c in ids}) >= 4
        history = [i for c in ids for i in OperationsStore(sim.store).partition(c).items if i[C.SK].startswith("HIST#")]
        assert history and all(
            i[C.GSI1_PK] == funnel_pk("onboarding", i[C.PK].removeprefix("CONTACT#")) for i in history
        )

        # One contact's items written before sharding: on the unsharded keys.
        old = ids[0]
        assert _unshard(sim, old) >= 3  # its ENROLL#, its ENTERED# marker, its history records
        assert len(_index_items(sim, "RUN#onboarding")) == 1 and _index_items(sim, "FUNNEL#onboarding")

        ops = OperationsStore(sim.store, sfn=sim.stack.sfn, workers=1)
        calls = count_requests(sim.store.client)
        assert sorted(r.contact_id for r in ops.runs("onboarding")) == sorted(ids)
        assert calls == {"Query": SHARDS + 1}

        calls.clear()
        waiting, read = waiting_by_step(ops, "onboarding")
        assert waiting == {"think-about-it": 12} and read == 12
        assert calls == {"Query": SHARDS + 1}  # one page a key, not one Query per contact; no Scan

        calls.clear()
        f = TableSource(ops).funnel("onboarding", DEFAULT_START - timedelta(days=1))
        assert f.entered == 12 and f.reached["hello"] == 12 and f.reached["think-about-it"] == 12
        assert f.waiting == {"think-about-it": 12}
        assert f.reads == {"funnel_index_pages": SHARDS + 1, "run_index_pages": SHARDS + 1, "partition_queries": 0}
        assert calls == {"Query": 2 * (SHARDS + 1)}

        calls.clear()
        report = find_stuck(ops, "onboarding", sim.machines["onboarding"], now=sim.now + timedelta(days=10))
        assert {s.contact_id for s in report.stuck} == set(ids)
        assert {(s.problem, s.step) for s in report.stuck} == {("overdue", "think-about-it")}
        assert calls["Query"] == SHARDS + 1 and "Scan" not in calls

        # Erasing the contact of the unsharded items, and one of a shard, takes their index keys with them.
        sharded = ids[1]
        erase(ops, emails[0], settle_seconds=0)
        erase(ops, emails[1], settle_seconds=0)
        assert _index_items(sim, "RUN#onboarding") == [] and _index_items(sim, "FUNNEL#onboarding") == []
        left = {i[C.GSI1_SK]["S"] for i in _index_items(sim, run_index_pk("onboarding", sharded))}
        assert not any(sk.endswith(f"#{sharded}") for sk in left)
        assert sorted(r.contact_id for r in ops.runs("onboarding")) == sorted(ids[2:])
        assert TableSource(ops).funnel("onboarding", DEFAULT_START - timedelta(days=1)).entered == 10


def test_hundreds_of_contacts_are_read_in_shards_plus_one_queries_merged_in_key_order() -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "t")
        store = ContactStore("t", client)
        at = datetime(2026, 11, 1, tzinfo=UTC)
        contacts = [f"c-{i:05d}" for i in range(300)]
        items: list[dict[str, Any]] = []
        for i, c in enumerate(contacts):
            when = (at + timedelta(minutes=i)).isoformat()
            progress = {"state": "waiting", "step": "wait", "at": when, "until": "", "version": "v1"}
            items.append(
                {
                    C.PK: contact_pk(c),
                    C.SK: "ENROLL#w",
                    "status": "running",
                    C.GSI1_PK: run_index_pk("w", c),
                    C.GSI1_SK: progress_sk("running", progress, c),
                }
            )
            items.append(
                {
                    C.PK: contact_pk(c),
                    C.SK: f"ENTERED#w#run-{i}",
                    C.GSI1_PK: funnel_pk("w", c) if i % 50 else "FUNNEL#w",  # some written before sharding
                    C.GSI1_SK: funnel_sk(when, "entered", "", "", f"run-{i}"),
                }
            )
        for item in items:
            store.put_item(item)
        assert len({shard_of(c) for c in contacts}) == SHARDS

        ops = OperationsStore(store)
        calls = count_requests(client)
        runs = list(ops.runs("w", status="running", state="waiting"))
        assert sorted(r.contact_id for r in runs) == contacts
        assert calls == {"Query": SHARDS + 1} and ops.index_pages == SHARDS + 1

        calls.clear()
        entries = list(ops.funnel("w", at + timedelta(minutes=100)))
        # Merged in the order of one partition's keys: by time, as the readers had them before the shards.
        assert [e.run for e in entries] == [f"run-{i}" for i in range(100, 300)]
        assert calls == {"Query": SHARDS + 1}
