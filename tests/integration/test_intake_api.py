"""The intake Lambda through API Gateway HTTP API v2 events, on moto: archive, dedupe, enqueue, refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from functions.trigger_router import intake
from shared.intake.base import MAX_BODY_BYTES
from shared.intake.shopify import Shopify
from tests.integration.intake_support import (
    API_KEY,
    BUCKET,
    SHOPIFY_SECRET,
    Context,
    create_resources,
    http_event,
    intake_env,
    response_json,
    shopify_delivery,
)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        resources = create_resources()
        for k, v in intake_env(resources["queue_url"]).items():
            monkeypatch.setenv(k, v)
        intake.reset()
        yield resources
    intake.reset()


def post(path: str, body: bytes | str, headers: dict[str, str], **kw: Any) -> dict[str, Any]:
    return intake.handler(http_event("POST", path, body, headers, **kw), Context())  # type: ignore[arg-type]


def queued(aws: dict[str, Any]) -> list[dict[str, Any]]:
    got = aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10, VisibilityTimeout=0)
    return [json.loads(m["Body"]) for m in got.get("Messages", [])]


def archived(aws: dict[str, Any], prefix: str = "deliveries/") -> dict[str, dict[str, Any]]:
    listing = aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: json.loads(aws["s3"].get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()) for o in listing}


def test_a_signed_shopify_delivery_is_archived_and_enqueued_once(aws: dict[str, Any]) -> None:
    body, headers = shopify_delivery("orders.paid")
    first = post("/webhooks/shopify", body, headers)
    assert first["statusCode"] == 202
    answer = response_json(first)
    assert answer["accepted"] == 1 and answer["duplicate"] is False

    (key, doc), *more = archived(aws).items()
    assert not more
    assert key.startswith("deliveries/") and key.endswith(f"/shopify/{answer['id']}.json")
    assert doc["body"].encode() == body  # the raw bytes, never re-serialised
    assert doc["headers"]["x-shopify-topic"] == "orders/paid"
    assert "x-shopify-hmac-sha256" not in doc["headers"]  # no proof is archived
    assert doc["provider"] == "shopify" and doc["received_at"]

    (message,) = queued(aws)
    assert message["dedupe_key"] == answer["id"] and message["archive_key"] == key
    assert message["provider"] == "shopify" and message["verified"] is True and message["test"] is True
    (event,) = message["events"]
    assert event["type"] == "order.paid" and event["contact"]["email"] == "john@example.com"

    again = post("/webhooks/shopify", body, headers)  # Shopify's retry of the same delivery
    assert again["statusCode"] == 200
    assert response_json(again) == {**answer, "duplicate": True}
    assert queued(aws) == [message]  # still the one message (not yet received for good)


def test_equal_event_id_with_another_body_is_not_a_duplicate(aws: dict[str, Any]) -> None:
    body, headers = shopify_delivery("orders.paid", event_id="same")
    other, other_headers = shopify_delivery("orders.paid", event_id="same", email="ann@example.com")
    assert response_json(post("/webhooks/shopify", body, headers))["duplicate"] is False
    assert response_json(post("/webhooks/shopify", other, other_headers))["duplicate"] is False
    assert len(queued(aws)) == 2


def test_a_bad_signature_is_refused_naming_the_header_and_nothing_is_kept(aws: dict[str, Any]) -> None:
    body, headers = shopify_delivery("orders.paid", secret="not-the-secret")
    out = post("/webhooks/shopify", body, headers)
    assert out["statusCode"] == 401
    assert response_json(out)["field"] == "X-Shopify-Hmac-Sha256"
    assert "X-Shopify-Hmac-Sha256" in response_json(out)["error"]
    missing = post("/webhooks/shopify", body, {k: v for k, v in headers.items() if "hmac" not in k})
    assert missing["statusCode"] == 401 and response_json(missing)["field"] == "X-Shopify-Hmac-Sha256"
    assert archived(aws) == {} and queued(aws) == []


def test_malformed_unknown_and_too_large_deliveries(aws: dict[str, Any]) -> None:
    body, headers = shopify_delivery("orders.paid")
    not_json = b"{not json"
    signed = {**headers, **Shopify().sign(not_json, SHOPIFY_SECRET, datetime.now(UTC))}
    out = post("/webhooks/shopify", not_json, signed)
    assert out["statusCode"] == 400 and response_json(out)["field"] == "body"

    out = post("/webhooks/no-such-shop", body, headers)
    assert out["statusCode"] == 404 and "no-such-shop" in response_json(out)["error"]

    big = b"x" * (MAX_BODY_BYTES + 1)
    out = post("/webhooks/shopify", big, headers)
    assert out["statusCode"] == 413 and response_json(out)["field"] == "body"
    out = post("/webhooks/no-such-shop", big, headers, base64_body=True)  # 413 before anything else
    assert out["statusCode"] == 413
    assert archived(aws) == {} and queued(aws) == []


def test_a_base64_body_is_verified_on_its_decoded_bytes(aws: dict[str, Any]) -> None:
    body, headers = shopify_delivery("orders.paid")
    out = post("/webhooks/shopify", body, headers, base64_body=True)
    assert out["statusCode"] == 202
    bad = http_event("POST", "/webhooks/shopify", body, headers)
    bad.update(isBase64Encoded=True, body="***not base64***")
    out = intake.handler(bad, Context())  # type: ignore[arg-type]
    assert out["statusCode"] == 400 and response_json(out)["field"] == "body"


def test_a_secret_in_the_query_string_or_path_is_never_archived(aws: dict[str, Any]) -> None:
    body, headers = shopify_delivery("orders.paid")
    headers = {**headers, "authorization": "Basic abc"}
    out = post("/webhooks/shopify", body, headers, query={"token": "s3cr3t", "a": "1"})
    assert out["statusCode"] == 202
    (doc,) = archived(aws).values()
    assert doc["query"] == {"a": "1"} and "authorization" not in doc["headers"]
    assert "s3cr3t" not in json.dumps(doc)


def test_the_events_api_needs_the_key_named_in_the_answer(aws: dict[str, Any]) -> None:
    payload = json.dumps({"events": []})
    out = post("/events", payload, {"content-type": "application/json"})
    assert out["statusCode"] == 401 and response_json(out)["field"] == "Authorization"
    out = post("/events", payload, {"authorization": "Bearer wrong"})
    assert out["statusCode"] == 401 and "Authorization" in response_json(out)["error"]
    out = post("/events", payload, {"x-api-key": "wrong"})
    assert out["statusCode"] == 401


def test_health(aws: dict[str, Any]) -> None:
    out = intake.handler(http_event("GET", "/health"), Context())  # type: ignore[arg-type]
    assert out["statusCode"] == 200 and response_json(out) == {"status": "ok"}


_header_names = st.sampled_from(
    ["x-shopify-hmac-sha256", "x-shopify-topic", "content-type", "stripe-signature", "authorization", "x-api-key"]
) | st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["/webhooks/shopify", "/webhooks/stripe", "/webhooks/shopify/tok", "/events", "/health"])
    | st.text(min_size=0, max_size=40).map(lambda s: "/" + s),
    method=st.sampled_from(["POST", "GET", "PUT"]),
    headers=st.dictionaries(_header_names, st.text(max_size=60), max_size=5),
    body=st.binary(max_size=300) | st.sampled_from([b"{}", b"[]", b"null", b'{"id": 1}', b'{"type": "x"}']),
    b64=st.booleans(),
)
def test_fuzzed_requests_never_get_a_5xx(
    aws: dict[str, Any], path: str, method: str, headers: dict[str, str], body: bytes, b64: bool
) -> None:
    if not b64:
        body = body.decode("utf-8", "replace").encode()
    event = http_event(method, path, body, headers, base64_body=b64)
    out = intake.handler(event, Context())  # type: ignore[arg-type]
    assert out["statusCode"] < 500, (path, out)


def test_the_events_api_with_its_key_enqueues_the_events(aws: dict[str, Any]) -> None:
    payload = json.dumps(
        {
            "events": [
                {"id": "v1", "type": "page.visited", "contact": {"email": "Ann@Example.com"}, "data": {"url": "/a"}},
                {"id": "w1", "type": "webinar.registered", "contact": {"email": "ann@example.com"}, "data": {}},
            ]
        }
    )
    out = post("/events", payload, {"authorization": f"Bearer {API_KEY}"})
    assert out["statusCode"] == 202 and response_json(out)["accepted"] == 2
    (message,) = queued(aws)
    assert [e["type"] for e in message["events"]] == ["page.visited", "webinar.registered"]
    assert message["events"][0]["contact"]["email"] == "ann@example.com"
    again = post("/events", payload, {"x-api-key": API_KEY})
    assert again["statusCode"] == 200 and response_json(again)["duplicate"] is True
    bad = post("/events", json.dumps({"events": [{"id": "x", "type": "nope"}]}), {"x-api-key": API_KEY})
    assert bad["statusCode"] == 400 and response_json(bad)["field"].startswith("events[0]")


def test_clients_are_made_once_per_container_with_short_timeouts_and_standard_retries(aws: dict[str, Any]) -> None:
    """Shopify waits 5 s and the function 10 s: no intake call may sit on botocore's 60 s defaults, and a second
    delivery reuses the first one's clients (no client, config or SSM read per request)."""
    for i in range(2):
        body, headers = shopify_delivery("orders.paid", event_id=f"evt-{i}")
        assert post("/webhooks/shopify", body, headers)["statusCode"] == 202
        if i == 0:
            first = intake.deps()
    d = intake.deps()
    assert d is first
    clients = [d.deliveries.dynamodb, d.deliveries.sqs, d.archive.client, d.secrets.provider.client, d.dynamodb]
    assert d.dynamodb is d.deliveries.dynamodb
    for client in clients:
        config = client.meta.config
        assert (config.connect_timeout, config.read_timeout) == (1, 2), client.meta.service_model.service_name
        assert config.retries == {"mode": "standard", "total_max_attempts": 3}


def test_a_claim_whose_reply_was_lost_and_retried_by_botocore_still_queues_the_delivery(aws: dict[str, Any]) -> None:
    """The dedupe put lands, its reply is lost, botocore retries it: the retry's condition fails on the item the
    first try wrote. That item is this delivery's own claim, so the delivery is queued (202), not taken for a
    duplicate (200 and nothing queued, which the provider would never send again)."""
    ddb = intake.deps().dynamodb
    retried: list[int] = []

    def lose_first_reply(attempts: int, caught_exception: Any, request_dict: dict[str, Any], **_: Any) -> int | None:
        if not retried and caught_exception is None and b"DELIVERY#" in request_dict["body"]:
            retried.append(attempts)
            return 0  # retry at once, as botocore does on a connection reset after the write
        return None

    ddb.meta.events.register_first("needs-retry.dynamodb.PutItem", lose_first_reply)
    try:
        body, headers = shopify_delivery("orders.paid", event_id="lost-reply")
        answer = post("/webhooks/shopify", body, headers)
    finally:
        ddb.meta.events.unregister("needs-retry.dynamodb.PutItem", lose_first_reply)
    assert retried == [1]
    assert answer["statusCode"] == 202 and response_json(answer)["duplicate"] is False
    (message,) = queued(aws)
    assert message["dedupe_key"] == response_json(answer)["id"]
    # A real redelivery afterwards is still a duplicate.
    assert post("/webhooks/shopify", body, headers)["statusCode"] == 200
