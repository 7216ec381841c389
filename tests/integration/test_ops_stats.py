"""`stepwise stats`: the funnel from the table (run index + one Query per contact) on a simulation, and the same
figures from CloudWatch metrics (moto's put_metric_data, then stats reads them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
from moto import mock_aws

from shared import constants as C
from shared.store.operations import MetricsReader, OperationsStore
from stepwise.ops.stats import CloudWatchSource, TableSource
from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import event, workflow

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


def test_table_funnel_matches_what_the_runner_counted() -> None:
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
        assert f.messages["sent"] == sent
        assert f.reads == {"index_queries": 1, "partition_queries": 10, "partition_pages": 10}
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
