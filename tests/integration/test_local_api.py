"""`stepwise local`: the intake Lambda served on 127.0.0.1 over the local stack; a real Shopify delivery starts a
real workflow, the clock moves on request, the contacts and timeline can be looked at."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from shared.intake.testing import body_bytes, load_fixture, signed
from shared.workflow.model import parse_workflow
from stepwise.local_api import LocalApi, call_local, serving

WORKFLOW = """\
name: thank-buyers
triggers:
  - event: order.paid
steps:
  - id: thanks
    send_email: {template: offer-1-intro}
  - id: a-day
    wait: 1d
  - id: follow-up
    send_email: {template: offer-1-reminder}
"""
# The published orders/paid sample is dated 2022-01-01T00:00Z: the local clock starts just before it.
START = datetime(2021, 12, 31, 23, 55, tzinfo=UTC)


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LocalApi, int]]:
    monkeypatch.setenv("STEPWISE_WEBHOOK_SECRET_SHOPIFY", "local-secret")
    wf = parse_workflow(yaml.safe_load(WORKFLOW))
    with LocalApi([wf], start=START) as api, serving(api, 0) as server:
        yield api, server.server_address[1]


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_signed_shopify_delivery_starts_the_workflow_and_advance_fires_the_wait(local: tuple[LocalApi, int]) -> None:
    api, port = local
    fx = load_fixture("shopify", "orders/paid")
    assert call_local(port, "GET", "/health") == {"status": "ok"}
    fx["headers"].pop("content-length")  # the published body's, not ours (compact JSON)
    delivery = signed(fx, "local-secret", api.sim.now)
    status, answer = post(port, "/webhooks/shopify", delivery.body, dict(delivery.headers))
    assert (status, answer["accepted"], answer["duplicate"]) == (202, 1, False)
    # The router has run by the time the API answers: the contact is in the workflow, its first email queued.
    (contact,) = call_local(port, "GET", "/_local/contacts")["contacts"]
    assert contact["email"] == "john@example.com"
    assert [m["template"] for m in contact["messages"]] == ["offer-1-intro"]
    # Redelivered by Shopify: nothing new.
    status, answer = post(port, "/webhooks/shopify", delivery.body, dict(delivery.headers))
    assert (status, answer["duplicate"]) == (200, True)
    moved = call_local(port, "POST", "/_local/advance", {"by": "1d"})
    assert datetime.fromisoformat(moved["now"]) - datetime.fromisoformat(moved["from"]) >= timedelta(days=1)
    (contact,) = call_local(port, "GET", "/_local/contacts")["contacts"]
    assert [m["template"] for m in contact["messages"]] == ["offer-1-intro", "offer-1-reminder"]
    steps = [(r["step"], r["outcome"]) for r in call_local(port, "GET", "/_local/timeline")["rows"]]
    assert ("follow-up", "done") in steps
    assert len(api.sim.execution_arns("thank-buyers")) == 1


def test_bad_input_is_a_4xx_naming_the_problem(local: tuple[LocalApi, int]) -> None:
    _, port = local
    fx = load_fixture("shopify", "orders/paid")
    # The published signature was made with Shopify's secret, not ours.
    headers = {k: str(v) for k, v in fx["headers"].items() if v is not None and k != "content-length"}
    status, answer = post(port, "/webhooks/shopify", body_bytes(fx), headers)
    assert status == 401 and answer["field"] == "X-Shopify-Hmac-Sha256"
    status, answer = post(port, "/webhooks/nosuch", b"{}", {"Content-Type": "application/json"})
    assert status == 404
    status, answer = post(port, "/_local/advance", b'{"by": "soon"}', {"Content-Type": "application/json"})
    assert status == 400 and "field by" in answer["error"]
    assert call_local(port, "GET", "/_local/contacts")["contacts"] == []


def test_unsigned_delivery_without_a_secret_is_accepted_unverified(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEPWISE_WEBHOOK_SECRET_SHOPIFY", raising=False)
    wf = parse_workflow(yaml.safe_load(WORKFLOW))
    fx = load_fixture("shopify", "orders/paid")
    with LocalApi([wf], start=START) as api, serving(api, 0) as server:
        port = server.server_address[1]
        # As `curl -H 'X-Shopify-Topic: orders/paid' -d @sample.json` sends it: no signature.
        status, answer = post(port, "/webhooks/shopify", body_bytes(fx), {"X-Shopify-Topic": "orders/paid"})
        assert (status, answer["accepted"]) == (202, 1)
        (contact,) = call_local(port, "GET", "/_local/contacts")["contacts"]
        assert [m["template"] for m in contact["messages"]] == ["offer-1-intro"]
    # Stopped: the port is closed and no server thread is left.
    assert not [t for t in threading.enumerate() if t.name == "stepwise-local-clock" and t.is_alive()]


def test_replay_lists_a_dead_letter_with_its_error_and_runs_it_again(
    local: tuple[LocalApi, int], capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.intake.pipeline import accept
    from shared.intake.testing import delivery
    from shared.runtime.inbound import event_json
    from stepwise.cli import main

    api, port = local
    fx = load_fixture("shopify", "orders/paid")
    (event,) = accept("shopify", delivery(fx, api.sim.now), lambda _: None, allow_unverified=True).events
    # A delivery too large for SQS whose archived copy is missing: every receive fails, the last one dead-letters it.
    key = "deliveries/2022/01/01/shopify/big.json"
    message = {"dedupe_key": "shopify:big", "archive_key": key, "provider": "shopify", "verified": True}
    api.sqs.send_message(QueueUrl=api.queue_url, MessageBody=json.dumps({**message, "test": True, "events": None}))
    api.drain()
    assert main(["replay", "--local", "--list", "--port", str(port)]) == 0
    listed = capsys.readouterr().out
    assert "queue" in listed and f"LookupError: archived delivery {key} is gone" in listed and "3 attempts" in listed
    # Replayed while still missing: fails again, kept with one more attempt.
    assert main(["replay", "--local", "--port", str(port)]) == 1
    assert "0 replayed, 1 failed again" in capsys.readouterr().out
    api.sim_archive().put_delivery(key, {"events": [event_json(event)]})
    assert main(["replay", "--local", "--port", str(port)]) == 0
    assert "1 replayed, 0 failed again" in capsys.readouterr().out
    (contact,) = call_local(port, "GET", "/_local/contacts")["contacts"]
    assert [m["template"] for m in contact["messages"]] == ["offer-1-intro"]
    assert main(["replay", "--local", "--list", "--port", str(port)]) == 0
    assert capsys.readouterr().out.strip() == "no dead letters"


def test_replay_list_against_a_deployed_bucket(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from moto import mock_aws

    from shared.store.archive import Archive
    from stepwise.cli import main

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="stepwise-prod-archive")
        Archive("stepwise-prod-archive", s3).put_dead_letter("m-1", "stream", {}, "KeyError: 'pk'", START)
        monkeypatch.setenv("STEPWISE_ARCHIVE_BUCKET", "stepwise-prod-archive")
        assert main(["replay", "--list"]) == 0
    out = capsys.readouterr().out
    assert "stream" in out and "KeyError: 'pk'" in out and "1 dead letter(s)" in out
    monkeypatch.delenv("STEPWISE_ARCHIVE_BUCKET")
    assert main(["replay", "--list"]) == 1
    assert "--bucket needed" in capsys.readouterr().err
