"""`stepwise stats` figures the audit of issue 10 found untested: the delivered and clicked counts (SES's Delivery and
Click events through the feedback Lambda's own code, routed in), a split whose winner is decided (the `winner` field
and the winner's path count), and the CloudWatch source fed by what the step runner and the router emit as EMF,
figure for figure against the table source (entered, each step reached, branches, goals, sent / opened / clicked)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from shared import constants as C
from shared.messaging.feedback import handle as feedback
from shared.metrics import emit_metric
from shared.store.operations import MetricsReader, OperationsStore
from shared.workflow.model import SplitStep
from stepwise.ops.stats import CloudWatchSource, Funnel, TableSource, print_funnel
from stepwise.outbox import LOCAL_CONFIGURATION_SET
from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import event, workflow

ROOT = Path(__file__).resolve().parents[2]
PROMO = """
name: promo
triggers: [{event: list.subscribed}]
steps:
  - id: subject
    split:
      - {name: a, percent: 50, steps: [{id: offer-a, send_email: {template: welcome-email, subject: A}}]}
      - {name: b, percent: 50, steps: [{id: offer-b, send_email: {template: welcome-email, subject: B}}]}
    winner: {by: email_clicked, min_contacts: 10, after: 1h}
  - id: vip
    if: {has_tag: VIP}
    then: [{id: tag-gold, add_tag: Gold}]
  - id: rest
    wait: 1d
  - id: bought
    goal: {event: order.paid}
"""
FIRST, LATER = 30, 6  # contacts before the winner is decided, and after
# A send window: the two who enter at 09:00 are held at `hello` until 10:00; the one who enters at 11:00 is not.
NIGHTLY = """
name: nightly
triggers: [{event: tag.added, where: {tag: nightly}}]
settings: {send_window: {between: "10:00-20:00", timezone: UTC}}
steps:
  - {id: hello, send_email: {template: welcome-email}}
  - {id: greeted, add_tag: greeted}
"""


class EmfSimulation(Simulation):
    """The simulation whose metrics also reach moto's CloudWatch the way EMF lines reach CloudWatch in AWS: each
    count is written by the real EMF sink (shared.metrics.emit_metric), and the line it prints is put as the
    metric datapoints its `_aws.CloudWatchMetrics` directive declares (what CloudWatch Logs does with it)."""

    def __enter__(self) -> EmfSimulation:
        super().__enter__()
        self.cloudwatch = boto3.client("cloudwatch", region_name=self.stack.region)
        self.emf_lines = 0
        return self

    def _count_metric(self, name: str, workflow: str, step: str, dims: dict[str, str]) -> None:
        super()._count_metric(name, workflow, step, dims)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            emit_metric(C.METRICS_NAMESPACE)(name, workflow, step, dims)
        lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
        assert len(lines) == 1, f"{name}: the EMF sink printed {out.getvalue()!r}"
        self.emf_lines += 1
        doc = lines[0]
        stamp = datetime.fromtimestamp(doc["_aws"]["Timestamp"] / 1000, UTC)
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for dim_set in directive["Dimensions"]:
                for metric in directive["Metrics"]:
                    values = doc[metric["Name"]]
                    self.cloudwatch.put_metric_data(
                        Namespace=directive["Namespace"],
                        MetricData=[
                            {
                                "MetricName": metric["Name"],
                                "Dimensions": [{"Name": d, "Value": str(doc[d])} for d in dim_set],
                                "Value": float(v),
                                "Unit": metric.get("Unit", "None"),
                                "Timestamp": stamp,
                            }
                            for v in (values if isinstance(values, list) else [values])
                        ],
                    )


def ses(sim: Simulation, kind: str, contact_id: str, msg: dict[str, Any], at: datetime, **body: Any) -> None:
    """SES's EventBridge event of `kind` (Delivery, Open, Click) for our message, through the feedback Lambda's
    domain step, then routed as the router's consumer does."""
    stamp = at.isoformat().replace("+00:00", "Z")
    tags = {
        "message_id": [msg["message_id"]],
        "contact_id": [contact_id],
        "workflow": [msg["workflow"]],
        "step": [msg["step"]],
        "ses:configuration-set": [LOCAL_CONFIGURATION_SET],
    }
    mail = {"timestamp": stamp, "messageId": msg.get("provider_id") or "ses-id", "tags": tags}
    detail = {"eventType": kind, "mail": mail, kind[0].lower() + kind[1:]: {"timestamp": stamp, **body}}
    assert sim.delivery is not None
    for ev in feedback(
        {"source": "aws.ses", "detail-type": f"Email {kind}", "detail": detail}, sim.delivery.messages, sim.now
    ):
        sim.send(ev)


class Scenario:
    def __init__(self, sim: EmfSimulation) -> None:
        self.sim = sim
        self.path: dict[str, str] = {}  # contact id -> split path taken
        self.first: dict[str, str] = {}  # the same, of the contacts before the winner was decided
        self.delivered: set[str] = set()
        self.opened: set[str] = set()
        self.clicked: set[str] = set()
        self.bought: set[str] = set()
        self.vip: set[str] = set()
        self.wall_start = datetime.now(UTC) - timedelta(minutes=1)
        self.while_held: tuple[Funnel, Funnel, str] | None = None  # nightly's table, CloudWatch, printed (09:10)

    def contact_of(self, email: str) -> str:
        return next(c["id"] for c in self.sim.summary()["contacts"] if c.get("email") == email)

    def message(self, contact_id: str) -> dict[str, Any]:
        (msg,) = [m for m in self.sim.store.messages(contact_id) if m.get("step") in ("offer-a", "offer-b")]
        return msg

    def paths(self) -> dict[str, str]:
        out = {}
        for cid in self.sim.contacts():
            for h in self.sim.store.history(cid):
                if h["step"] == "subject":
                    out[cid] = str(h["branch"])
        return out


@pytest.fixture(scope="module")
def scenario() -> Iterator[Scenario]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(C.ENV_TEMPLATES_DIR, str(ROOT / "templates"))  # the messages go out (SES on moto)
        with EmfSimulation([workflow(PROMO), workflow(NIGHTLY)]) as sim:
            s = Scenario(sim)
            for i in range(FIRST):
                if i < 3:
                    sim.send(event(f"t{i}", "tag.added", {"tag": "VIP"}, email=f"p{i}@example.com"))
                sim.send(event(f"s{i}", "list.subscribed", {"list": "news"}, email=f"p{i}@example.com"))
            s.vip = {s.contact_of(f"p{i}@example.com") for i in range(3)}
            first = s.first = s.paths()
            assert min(sum(1 for p in first.values() if p == x) for x in "ab") >= 10  # both reach min_contacts
            for i in range(2):
                sim.send(event(f"n{i}", "tag.added", {"tag": "nightly"}, email=f"n{i}@example.com"))
            sim.advance(DEFAULT_START + timedelta(minutes=10))
            ops = OperationsStore(sim.store)
            held = TableSource(ops).funnel("nightly", DEFAULT_START - timedelta(days=7))
            out = io.StringIO()
            print_funnel(held, out)
            s.while_held = (
                held,
                CloudWatchSource(MetricsReader(sim.cloudwatch)).funnel("nightly", s.wall_start),
                out.getvalue(),
            )
            on_a = sorted(c for c, p in first.items() if p == "a")
            on_b = sorted(c for c, p in first.items() if p == "b")
            # Every message of the first round is delivered, one twice (SES's own retry: the same event).
            for cid in sorted(first):
                ses(sim, "Delivery", cid, s.message(cid), sim.now)
                s.delivered.add(s.message(cid)["message_id"])
            ses(sim, "Delivery", on_a[0], s.message(on_a[0]), sim.now)
            # Opens: 5 of a's, 2 of b's. Clicks: 4 of a's (one clicks twice, two links), 1 of b's.
            for cid in on_a[:5] + on_b[:2]:
                ses(sim, "Open", cid, s.message(cid), sim.now)
                s.opened.add(s.message(cid)["message_id"])
            for cid in on_a[:4] + on_b[:1]:
                ses(sim, "Click", cid, s.message(cid), sim.now, link="https://example.com/offer")
                s.clicked.add(s.message(cid)["message_id"])
            ses(sim, "Click", on_a[0], s.message(on_a[0]), sim.now, link="https://example.com/other")
            # Two buy during the wait: the goal's jump.
            sim.advance(DEFAULT_START + timedelta(hours=2))
            for cid in (on_a[0], on_b[0]):
                sim.send(event(f"o-{cid}", "order.paid", {"total": 5}, contact_id=cid))
                s.bought.add(cid)
            # Past `after` (1h) with both paths at min_contacts and clicks: the next contacts take the winner.
            for i in range(FIRST, FIRST + LATER):
                sim.send(event(f"s{i}", "list.subscribed", {"list": "news"}, email=f"p{i}@example.com"))
            sim.send(event("n2", "tag.added", {"tag": "nightly"}, email="n2@example.com"))  # 11:00: in the window
            sim.advance(DEFAULT_START + timedelta(days=2))
            s.path = s.paths()
            yield s


def test_table_counts_delivered_and_clicked_and_the_decided_winner_exactly(scenario: Scenario) -> None:
    sim, s = scenario.sim, scenario
    later = {c: p for c, p in s.path.items() if c not in s.first}
    assert len(s.first) == FIRST and set(later.values()) == {"a"} and len(later) == LATER
    n_a = sum(1 for p in s.path.values() if p == "a")
    n_b = sum(1 for p in s.path.values() if p == "b")
    f = TableSource(OperationsStore(sim.store)).funnel("promo", DEFAULT_START - timedelta(days=7))

    assert f.entered == FIRST + LATER
    # The delivered and clicked figures: one per message, however many events SES sent about it.
    assert f.messages == {
        "sent": FIRST + LATER,
        "delivered": FIRST,
        "opened": len(s.opened),
        "clicked": len(s.clicked),
    }
    assert (len(s.delivered), len(s.opened), len(s.clicked)) == (FIRST, 7, 5)
    # The winner: a (4 clicks of first_a against 1 of n_b); the later contacts all took it.
    assert f.splits == {"subject": {"paths": {"a": n_a, "b": n_b}, "winner": "a"}}
    assert f.branches["subject"] == {"a": n_a, "b": n_b}
    assert f.reached["offer-a"] == n_a and f.reached["offer-b"] == n_b
    assert f.branches["vip"] == {"else": FIRST + LATER - 3, "then": 3} and f.reached["tag-gold"] == 3
    # A goal step is reached by the entries that met it (the dashboard's goal line): the 34 who passed it unmet
    # did not reach it.
    assert f.reached["rest"] == FIRST + LATER and f.reached["bought"] == 2
    assert f.goals == {"bought": 2}


def test_cloudwatch_metrics_emitted_are_the_table_figures(scenario: Scenario) -> None:
    sim, s = scenario.sim, scenario
    splits = {st.id for st, _ in workflow(PROMO).walk() if isinstance(st.root, SplitStep) and st.id}
    ops = OperationsStore(sim.store)
    table: Funnel = TableSource(ops).funnel("promo", DEFAULT_START - timedelta(days=7))
    cw = CloudWatchSource(MetricsReader(sim.cloudwatch), splits, ops).funnel("promo", s.wall_start)
    assert sim.emf_lines > 0 and cw.reads["metrics"] > 0

    assert cw.entered == table.entered
    assert cw.branches == table.branches
    assert cw.goals == table.goals
    assert cw.splits == table.splits  # the winner from the table, the paths from the metrics
    # Messages: delivered is not a step-runner metric (n/a there); the rest the same.
    assert cw.messages == {**table.messages, "delivered": None}
    # Each step reached: arrivals (CloudWatch) and contacts (table) are the same figure with no loop.
    assert cw.reached == table.reached


def test_a_held_send_is_held_not_reached_in_both_sources_then_counted_once(scenario: Scenario) -> None:
    """A send held by its window has not reached its step (nothing went): the table shows it held there, as the
    dashboard (StepCompleted / MessageSent come when the send goes) shows nothing; once sent, both count it once."""
    assert scenario.while_held is not None
    table, cw, printed = scenario.while_held
    assert (table.entered, table.reached, table.messages["sent"], table.held) == (2, {}, 0, {"hello": 2})
    assert (cw.entered, cw.reached, cw.messages["sent"]) == (table.entered, table.reached, table.messages["sent"])
    assert "held now (send not yet gone): hello 2" in printed and "hello:" not in printed
    ops = OperationsStore(scenario.sim.store)
    table = TableSource(ops).funnel("nightly", DEFAULT_START - timedelta(days=7))
    cw = CloudWatchSource(MetricsReader(scenario.sim.cloudwatch)).funnel("nightly", scenario.wall_start)
    assert (table.entered, table.reached, table.held) == (3, {"greeted": 3, "hello": 3}, {})
    assert table.messages == {"sent": 3, "delivered": 0, "opened": 0, "clicked": 0}
    assert (cw.entered, cw.reached, cw.messages) == (
        table.entered,
        table.reached,
        {**table.messages, "delivered": None},
    )
