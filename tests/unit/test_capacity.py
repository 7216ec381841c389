"""`stepwise capacity`: Little's law over the compiled machine's waits, rates, monthly cost, quota warnings."""

from __future__ import annotations

import io

import pytest
import yaml

from shared.workflow.model import Workflow, parse_workflow
from stepwise.ops.capacity import Assumptions, capacity, print_capacity

WELCOME = """
name: welcome
triggers: [{event: list.subscribed}]
steps:
  - id: hello
    send_email: {template: welcome-email}
  - id: rest
    wait: 2d
  - id: bought
    wait_until: {event: order.paid, timeout: 3d}
  - id: tag
    add_tag: Done
"""

DELAYED = """
name: nudge
triggers: [{event: checkout.started, delay: 1d}]
steps:
  - id: vip
    if: {has_tag: VIP}
    then:
      - id: long-rest
        wait: 6d
    else:
      - id: short-rest
        wait: 1d
  - id: nudge
    send_sms: {template: welcome-sms}
"""


def wf(text: str) -> Workflow:
    return parse_workflow(yaml.safe_load(text))


def test_exact_figures_for_one_workflow() -> None:
    r = capacity([wf(WELCOME)], {"welcome": 1000})
    (w,) = r.workflows
    # Inside: 2 days of wait + the wait_until's full 3-day timeout.
    assert w.days_inside == 5.0
    assert w.open_executions == 5000.0  # 1,000 a day x 5 days
    # Entry, hello, rest, bought, tag: 5 transitions; hello, bought (the callback) and tag invoke the runner.
    assert (w.transitions_per_contact, w.invocations_per_contact) == (5, 3)
    assert w.start_per_second == pytest.approx(1000 / 86400)
    assert w.transitions_per_second == pytest.approx(5000 / 86400)
    m = w.monthly_usd
    assert m["step_functions"] == pytest.approx(3.75)  # 30,000 contacts x 5 x $0.025 / 1,000
    # 90,000 invocations: $0.018 of requests + 4,500 GB-s (0.1 s x 0.5 GB) x $0.0000166667.
    assert m["lambda"] == pytest.approx(0.018 + 4500 * 0.0000166667)
    # Reads 30,000 x (2 + 3 x 2) = 240,000 -> $0.03; writes 30,000 x (5 + 3 x 4) = 510,000 -> $0.31875.
    assert m["dynamodb"] == pytest.approx(0.34875)
    assert r.warnings == []


def test_longest_waiting_path_and_start_delay() -> None:
    r = capacity([wf(DELAYED)], {"nudge": 200})
    (w,) = r.workflows
    assert w.days_inside == 7.0  # the 1-day start delay + the 6-day branch
    assert w.days_inside_shortest == 2.0
    assert w.open_executions == 1400.0
    # Entry, StartDelay, vip, vip.branch, long-rest, nudge (and a Done if the compiler adds one): the Step
    # Functions cost follows the transitions exactly.
    assert w.monthly_usd["step_functions"] == pytest.approx(200 * 30 * w.transitions_per_contact * 0.025 / 1000)


def test_warns_near_and_over_the_open_executions_quota() -> None:
    near = capacity([wf(WELCOME)], {"welcome": 170_000})  # 850,000 open: 85%
    assert any(x.startswith("near quota: open executions") and "85%" in x for x in near.warnings)
    over = capacity([wf(WELCOME)], {"welcome": 250_000})  # 1,250,000 open
    assert any(x.startswith("OVER QUOTA: open executions") for x in over.warnings)
    below = capacity([wf(WELCOME)], {"welcome": 150_000})  # 750,000: 75%, no warning
    assert not any("open executions" in x for x in below.warnings)


def test_start_rate_quota_depends_on_the_region() -> None:
    per_day = 0.9 * 150 * 86400  # 135/s on average
    a = Assumptions(peak_factor=1)
    east = capacity([wf(WELCOME)], {"welcome": per_day}, "us-east-1", a)
    assert not any("StartExecution" in x for x in east.warnings)  # 45% of 300/s
    other = capacity([wf(WELCOME)], {"welcome": per_day}, "eu-central-1", a)
    assert other.quotas["start_execution_per_second"] == 150
    assert any(x.startswith("near quota: StartExecution") and "90%" in x for x in other.warnings)


def test_unknown_workflow_and_printed_assumptions() -> None:
    with pytest.raises(KeyError, match="no workflow named nope"):
        capacity([wf(WELCOME)], {"nope": 1})
    out = io.StringIO()
    print_capacity(capacity([wf(WELCOME)], {"welcome": 1000}), out)
    text = out.getvalue()
    assert "5,000 open executions at steady state" in text
    assert "Lambda 100 ms at 512 MB" in text and "Little's law" in text
