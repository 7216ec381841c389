"""`stepwise stats`: the funnel from the table (the funnel and run indexes on GSI1: bounded Query pages, nothing per
contact, no Scan) on a simulation, per entry, with who waits at each step now; the same figures from CloudWatch
metrics (moto's put_metric_data, then stats reads them); and the enrolment record's current step as the step runner
keeps it (in the step's own transaction, forward only, this run's only)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from shared import constants as C
from shared.store.contacts import ContactStore, contact_pk, create_table
from shared.store.operations import MetricsReader, OperationsStore
from shared.store.run_index import SHARDS, FunnelEntry, IndexedRun, funnel_keys, parse_funnel_sk, parse_run_sk
from stepwise.ops.stats import CloudWatchSource, TableSource
from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import contact, event, workflow

ROOT = Path(__file__).resolve().parents[2]


def count_requests(client: Any) -> Counter[str]:
    """Every DynamoDB operation `client` sends from now on, by name (botocore's before-call event)."""
    calls: Counter[str] = Counter()

    def note(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    client.meta.events.register("before-call.dynamodb.*", note)
    return calls


PROMO = """
name: promo
triggers: [{event: list.subscribed}]
steps:
  - id: subject
    split:
      - {name: a, percent: 50, steps: [{id: offer-a, send_email: {template: welcome-email, subject: A}}]}
      - {name: b, percent: 50, steps: [{id: offer-b, send_email: {template: welcome-email, subject: B}}]}
  - id: vip
    if: {has_tag: VIP}
    then: [{id: tag-gold, add_tag: Gold}]
  - id: rest
    wait: 1d
  - id: bought
    goal: {event: order.paid}
"""


def test_table_funnel_matches_what_the_runner_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(C.ENV_TEMPLATES_DIR, str(ROOT / "templates"))  # the messages go out (SES on moto)
    with Simulation([workflow(PROMO)]) as sim:
        for i in range(10):
            if i < 3:
                sim.send(event(f"t{i}", "tag.added", {"tag": "VIP"}, email=f"p{i}@example.com"))
            sim.send(event(f"s{i}", "list.subscribed", {"list": "news"}, email=f"p{i}@example.com"))
        sim.advance(DEFAULT_START + timedelta(hours=2))
        for i in (0, 5):
            sim.send(event(f"o{i}", "order.paid", {"total": 5}, email=f"p{i}@example.com"))
        sim.advance(DEFAULT_START + timedelta(days=2))
        ops = OperationsStore(sim.store)
        f = TableSource(ops).funnel("promo", DEFAULT_START - timedelta(days=7))

        assert f.entered == 10
        assert sum(f.branches["subject"].values()) == 10
        assert f.branches["vip"] == {"else": 7, "then": 3}
        assert f.shares()["vip"]["then"] == 0.3
        assert f.reached["tag-gold"] == 3
        assert f.goals == {"bought": 2}
        # Every figure the step runner counted as a metric, the records say too.
        for (name, wf, step), n in sim.metrics.items():
            if name == C.METRIC_BRANCH_TAKEN and wf == "promo":
                assert f.reached[step] == n, step
        a, b = f.branches["subject"].get("a", 0), f.branches["subject"].get("b", 0)
        assert f.reached.get("offer-a", 0) == a and f.reached.get("offer-b", 0) == b
        assert set(f.splits) == {"subject"} and f.splits["subject"]["winner"] is None
        sent = sum(1 for c in sim.contacts() for m in sim.store.messages(c) if m.get("status") == "sent")
        assert sent == 10 and f.messages["sent"] == sent
        # One page of each shard and of the unsharded key, for each index.
        assert f.reads == {"funnel_index_pages": SHARDS + 1, "run_index_pages": SHARDS + 1, "partition_queries": 0}
        # Entered later than `since`: nobody.
        assert TableSource(ops).funnel("promo", DEFAULT_START + timedelta(days=1)).entered == 0


@mock_aws
def test_cloudwatch_funnel_reads_the_step_runner_metrics() -> None:
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    now = datetime.now(UTC) - timedelta(minutes=5)  # metrics of the last few minutes

    def put(name: str, step: str, value: float, **extra: str) -> None:
        dims = [{"Name": "workflow", "Value": "promo"}, {"Name": "step", "Value": step}]
        dims += [{"Name": k, "Value": v} for k, v in extra.items()]
        cw.put_metric_data(
            Namespace=C.METRICS_NAMESPACE,
            MetricData=[{"MetricName": name, "Dimensions": dims, "Value": value, "Unit": "Count", "Timestamp": now}],
        )

    put(C.METRIC_ENTERED, C.METRIC_ENTRY_STEP, 6)
    put(C.METRIC_ENTERED, C.METRIC_ENTRY_STEP, 4)
    put(C.METRIC_BRANCH_TAKEN, "subject", 6, branch="a")
    put(C.METRIC_BRANCH_TAKEN, "subject", 4, branch="b")
    put(C.METRIC_STEP_COMPLETED, "offer-a", 6)
    put(C.METRIC_MESSAGE_SENT, "offer-a", 6)
    put(C.METRIC_MESSAGE_SENT, "offer-b", 4)
    put(C.METRIC_MESSAGE_OPENED, "offer-a", 3)
    put(C.METRIC_GOAL_REACHED, "bought", 2)
    put(C.METRIC_WAIT_STARTED, "rest", 10)
    # Another workflow's metric is not counted.
    cw.put_metric_data(
        Namespace=C.METRICS_NAMESPACE,
        MetricData=[
            {
                "MetricName": C.METRIC_ENTERED,
                "Dimensions": [{"Name": "workflow", "Value": "other"}, {"Name": "step", "Value": "entry"}],
                "Value": 99,
                "Timestamp": now,
            }
        ],
    )
    f = CloudWatchSource(MetricsReader(cw), split_steps={"subject"}).funnel("promo", now - timedelta(days=7))
    assert f.entered == 10
    assert f.branches == {"subject": {"a": 6, "b": 4}}
    assert f.shares()["subject"] == {"a": 0.6, "b": 0.4}
    assert f.reached == {"bought": 2, "offer-a": 6, "rest": 10, "subject": 10}
    assert f.goals == {"bought": 2}
    assert f.messages == {"sent": 10, "delivered": None, "opened": 3, "clicked": 0}
    assert f.splits == {"subject": {"paths": {"a": 6, "b": 4}, "winner": None}}


NURTURE = """
name: nurture
triggers: [{event: list.subscribed}]
reentry: always
steps:
  - id: hello
    add_tag: New
  - id: first-wait
    wait: 2d
  - id: nudge
    add_tag: Nudged
  - id: second-wait
    wait: 5d
  - id: bye
    add_tag: Done
"""


def test_waiting_per_step_and_entries_come_from_the_indexes_in_bounded_pages() -> None:
    with Simulation([workflow(NURTURE)]) as sim:
        # Re-entry: Rae goes through the whole workflow, then enters again and waits at the first wait.
        sim.send(event("r1", "list.subscribed", {"list": "news"}, email="rae@example.com"))
        sim.advance(DEFAULT_START + timedelta(days=8))
        for i in range(3):
            sim.send(event(f"a{i}", "list.subscribed", {"list": "news"}, email=f"a{i}@example.com"))
        sim.advance(DEFAULT_START + timedelta(days=11))  # a0..a2 are past first-wait, at second-wait
        for i in range(2):
            sim.send(event(f"b{i}", "list.subscribed", {"list": "news"}, email=f"b{i}@example.com"))
        sim.send(event("r2", "list.subscribed", {"list": "news"}, email="rae@example.com"))
        sim.advance(DEFAULT_START + timedelta(days=12))

        rae = contact(sim, email="rae@example.com")["id"]
        enrol = sim.store.get_item(contact_pk(rae), "ENROLL#nurture")
        assert enrol is not None and enrol["count"] == 2
        # The enrolment record's current step, as the step runner left it, and the run index key with it.
        assert enrol["progress"]["step"] == "first-wait" and enrol["progress"]["state"] == "waiting"
        indexed = parse_run_sk(enrol[C.GSI1_SK])
        assert (indexed.status, indexed.state, indexed.step, indexed.contact_id) == (
            "running",
            "waiting",
            "first-wait",
            rae,
        )

        calls = count_requests(sim.store.client)
        ops = OperationsStore(sim.store)
        f = TableSource(ops).funnel("nurture", DEFAULT_START - timedelta(days=1))
        # Rae counts twice: each entry is one.
        assert f.entered == 7
        assert f.reached["hello"] == 7 and f.reached["first-wait"] == 7
        assert f.reached["nudge"] == 4 and f.reached["second-wait"] == 4 and f.reached["bye"] == 1
        assert f.waiting == {"first-wait": 3, "second-wait": 3}
        # Two key ranges of the index (the funnel's, the running enrolments), each a Query of every shard and of
        # the unsharded key: nothing per contact, no Scan.
        assert calls == Counter({"Query": 2 * (SHARDS + 1)})
        assert f.reads["partition_queries"] == 0

        # Since the second round of entries: Rae's second entry and b0, b1 only.
        later = TableSource(ops).funnel("nurture", DEFAULT_START + timedelta(days=10, hours=12))
        assert later.entered == 3 and later.reached == {"first-wait": 3, "hello": 3}


def test_the_step_runners_write_keeps_the_current_step_in_its_one_transaction() -> None:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(ddb, "t")
        store = ContactStore("t", ddb)
        pk, run = contact_pk("c1"), "arn:aws:states:us-east-1:123456789012:execution:stepwise-w:run-1"
        store.put_item({C.PK: pk, C.SK: "ENROLL#w", "workflow": "w", "execution_arn": run, "status": "running"})

        def record(step: str, at: str, outcome: str, execution: str = run) -> dict[str, Any]:
            return {
                C.SK: f"HIST#{execution.rsplit(':', 1)[-1]}#0000#{step}",
                "workflow": "w",
                "version": "v1",
                "execution": execution,
                "step": step,
                "kind": "wait",
                "outcome": outcome,
                "at": at,
                "seq": 1,
                "entered": at,
            }

        calls = count_requests(ddb)
        assert store.commit_step("c1", record("later", "2026-11-02T00:00:00+00:00", "waiting"), [])
        assert calls == Counter({"TransactWriteItems": 1})  # the current step rides in the step's transaction
        current = store.get_item(pk, "ENROLL#w")
        assert current is not None and current["progress"]["step"] == "later"
        assert current[C.GSI1_SK].startswith("running#waiting#later#2026-11-02T00:00:00+00:00#-#v1#c1")

        # A record ordered before the current one (a resumed wait committed after the next step) is written,
        # and the current step stays.
        assert store.commit_step("c1", record("sooner", "2026-11-01T00:00:00+00:00", "done"), [])
        assert store.get_item(pk, "HIST#run-1#0000#sooner") is not None
        current = store.get_item(pk, "ENROLL#w")
        assert current is not None and current["progress"]["step"] == "later"
        # Another run's record (a run replaced, a step runner's late retry) never moves this run's step.
        other = "arn:aws:states:us-east-1:123456789012:execution:stepwise-w:run-0"
        assert store.commit_step("c1", record("elsewhere", "2026-11-03T00:00:00+00:00", "done", other), [])
        current = store.get_item(pk, "ENROLL#w")
        assert current is not None and current["progress"]["step"] == "later"
        # A contact with no enrolment (erased meanwhile) gets no half ENROLL# item.
        assert store.commit_step("c2", record("x", "2026-11-03T00:00:00+00:00", "done"), [])
        assert store.get_item(contact_pk("c2"), "ENROLL#w") is None
        # A repeat of a committed step is refused as before, and moves nothing.
        assert not store.commit_step("c1", record("later", "2026-11-02T00:00:00+00:00", "waiting"), [])


def test_index_keys_say_what_each_record_counts_as() -> None:
    run = "arn:aws:states:us-east-1:123456789012:execution:stepwise-w:run-1"
    base = {"workflow": "w", "execution": run, "at": "2026-11-01T00:00:00+00:00", "version": "v1", "seq": 1}

    def keys(sk: str, **rec: Any) -> FunnelEntry | None:
        got = funnel_keys({C.SK: f"HIST#run-1#0000#{sk}", **base, **rec}, "c1")
        return parse_funnel_sk(got[C.GSI1_SK]) if got else None

    assert keys("pick", step="pick", kind="branch", outcome="branch vip", branch="vip") == FunnelEntry(
        base["at"], "step", "pick", "vip", "run-1"
    )
    assert keys("bought", step="bought", kind="goal", outcome="reached") == FunnelEntry(
        base["at"], "goal", "bought", "", "run-1"
    )
    goal_not_met = keys("bought", step="bought", kind="goal", outcome="not reached")
    assert goal_not_met is not None and goal_not_met.mark == "unmet"  # passed, not met: not reaching the goal
    held = keys("offer#held-2026-11-02T09:00:00Z", step="offer", kind="send_email", outcome="held")
    assert held is not None and (held.mark, held.name) == ("held", "offer")  # held there: not reached until sent
    assert keys("wait#resumed", step="wait", kind="wait_until", outcome="resumed") is None  # its wait counted it
    # The run index reads both key shapes: with the current step, and the earlier one (a stopped run's).
    assert parse_run_sk("stopped#2026-11-01T00:00:00+00:00#c1") == IndexedRun(
        "c1", "stopped", "2026-11-01T00:00:00+00:00"
    )
    assert parse_run_sk("running#held#offer#2026-11-01T00:00:00+00:00#2026-11-02T09:00:00Z#v1#c1") == IndexedRun(
        "c1", "running", "", "held", "offer", "2026-11-01T00:00:00+00:00", "2026-11-02T09:00:00Z", "v1"
    )
    assert parse_run_sk("running#entered#-#2026-11-01T00:00:00+00:00#-#-#c1").step == ""
