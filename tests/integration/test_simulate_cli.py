"""`stepwise simulate PATH --events FILE`: a folder of workflows run together, raw provider deliveries judged by
the API's own intake code (unverified without a secret, refused with a bad signature), errors without tracebacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from shared.intake.testing import load_fixture
from stepwise.cli import main
from stepwise.simulate import delivery_bytes

ORDERS = """\
name: thank-buyers
triggers:
  - event: order.paid
steps:
  - id: join
    subscribe: {campaign: buyers}
"""
CAMPAIGN = """\
name: buyers
reentry: once
steps:
  - id: thanks
    send_email: {template: offer-1-intro, campaign: buyers}
"""
# The published orders/paid sample is dated 2022-01-01T00:00Z: the virtual clock starts just before it.
START = "2021-12-31T23:59:00Z"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "orders.yaml").write_text(ORDERS)
    (tmp_path / "buyers.yaml").write_text(CAMPAIGN)
    return tmp_path


def shopify_line(at: str, secret: str | None = None) -> dict[str, Any]:
    fx = load_fixture("shopify", "orders/paid")
    headers = {k: v for k, v in fx["headers"].items() if v is not None}
    if secret is not None:
        digest = hmac.new(secret.encode(), delivery_bytes(fx["body"]), hashlib.sha256).digest()
        headers["x-shopify-hmac-sha256"] = base64.b64encode(digest).decode()
    return {"at": at, "provider": "shopify", "headers": headers, "body": fx["body"]}


def simulate(capsys: pytest.CaptureFixture[str], path: Path, events: Path) -> tuple[int, list[dict], str]:
    code = main(["simulate", str(path), "--events", str(events), "--start", START])
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    return code, rows, err


def write_events(tmp_path: Path, *lines: dict[str, Any]) -> Path:
    p = tmp_path / "events.jsonl"
    p.write_text("# source: tests/events/shopify/orders.paid.json\n" + "\n".join(json.dumps(x) for x in lines))
    return p


def test_a_raw_shopify_delivery_starts_the_folder_workflows_unverified(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STEPWISE_WEBHOOK_SECRET_SHOPIFY", raising=False)
    events = write_events(tmp_path, shopify_line("+2m"), shopify_line("+5m"))
    code, rows, err = simulate(capsys, folder, events)
    assert code == 0, err
    summary = rows.pop()["summary"]
    (contact,) = summary["contacts"]
    assert contact["email"] == "john@example.com"  # the customer's address, lower-cased
    # Subscribed to the campaign of the other file, whose email is queued; the redelivery changed nothing.
    assert [m["template"] for m in contact["messages"]] == ["offer-1-intro"]
    intake = [r for r in rows if r["workflow"] == "(intake)"]
    assert [(r["outcome"], r["at"]) for r in intake] == [
        ("unverified", "2022-01-01T00:01:00+00:00"),
        ("duplicate", "2022-01-01T00:04:00+00:00"),
    ]
    assert intake[0]["why"] == f"order.paid from {events}:2 (no STEPWISE_WEBHOOK_SECRET_SHOPIFY, test mode)"
    assert ("thank-buyers", "entered") in [(r["workflow"], r["outcome"]) for r in rows]


def test_with_a_secret_a_bad_signature_is_refused_and_says_why(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STEPWISE_WEBHOOK_SECRET_SHOPIFY", "our-secret")
    events = write_events(tmp_path, shopify_line("+2m", secret="not-our-secret"), shopify_line("+3m", "our-secret"))
    code, rows, err = simulate(capsys, folder, events)
    assert code == 0, err
    refused, accepted = [r for r in rows[:-1] if r["workflow"] == "(intake)"]
    assert refused["outcome"] == "refused 401" and "X-Shopify-Hmac-Sha256" in refused["why"]
    assert refused["why"].endswith(f"({events}:2)")
    assert accepted["outcome"] == "accepted" and accepted["at"] == "2022-01-01T00:02:00+00:00"
    (contact,) = rows[-1]["summary"]["contacts"]
    assert [m["template"] for m in contact["messages"]] == ["offer-1-intro"]


def test_errors_name_file_line_and_field_without_a_traceback(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"at": "+1m", "provider": "shopify", "headers": {}, "body": {}, "signature": "x"}\n')
    code, _, err = simulate(capsys, folder, bad)
    assert code == 1 and err.strip() == f"{bad}:1: field signature: Extra inputs are not permitted"
    # One file alone does not have the campaign it subscribes to: said as validate says it, with the way out.
    code, _, err = simulate(capsys, folder / "orders.yaml", bad)
    assert code == 1
    assert f"{folder / 'orders.yaml'}: step join, field subscribe.campaign: no workflow file defines 'buyers'" in err
    assert f"stepwise simulate {folder}" in err
    code, _, err = simulate(capsys, folder, tmp_path / "missing.jsonl")
    assert code == 1 and "missing.jsonl: cannot read" in err and "Traceback" not in err


def test_activated_at_after_the_order_keeps_it_out(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STEPWISE_WEBHOOK_SECRET_SHOPIFY", raising=False)
    events = write_events(tmp_path, shopify_line("+2m"))
    code = main(["simulate", str(folder), "--events", str(events), "--start", START, "--activated-at", "+1h"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    (refused,) = [r for r in rows[:-1] if r["workflow"] == "thank-buyers"]
    assert refused["outcome"] == "not entered" and "before the workflow was activated" in refused["why"]
    assert rows[-1]["summary"]["messages_sent"] == 0


def test_the_demo_runs_every_example_from_the_sample_deliveries(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "workflows"]) == 0
    out = capsys.readouterr().out
    blocks = {b.split()[0]: b for b in out.split("── ")[1:]}
    ana, bo, carla = blocks["ana.rossi@example.com"], blocks["bo@example.com"], blocks["carla@example.com"]
    # Shopify checkouts/create, then no order: abandoned once idle more than 10 minutes.
    assert "(intake)             (shopify delivery)       unverified     checkout.started" in ana
    assert "+10m1s" in ana and "messages: email:cart-reminder, email:holiday-1, email:cart-reminder-2" in ana
    assert "filter failed: cart_value gt 50" in bo and "messages: none" in bo
    assert "purchased                branch then" in carla
    # A Typeform answer: stepwise.yaml's settings.forms says form lT4Z3j is the funnel form, so it enters two-offers.
    laura = blocks["laura@example.com"]
    assert "(typeform delivery)      unverified     form.submitted" in laura
    assert "two-offers           (form.submitted)         entered" in laura
    assert "messages: email:offer-1-intro, email:offer-1-reminder" in laura
    entered = {line.split()[5] for line in out.splitlines() if " entered " in f" {line} " and "(" in line}
    assert {"abandoned-checkout", "two-offers", "welcome-series", "lead-score-alert", "sms-not-delivered"} <= entered
    assert "holiday-series       (broadcast_batch)" in out and "campaign-2           offer-2-intro" in out
