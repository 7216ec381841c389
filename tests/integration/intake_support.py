"""What the intake and router tests share: AWS resources on moto, API Gateway v2 events, signed deliveries."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from shared import constants as C
from shared.intake.shopify import Shopify
from shared.store.contacts import create_table

EVENTS = Path(__file__).resolve().parents[1] / "events"
TABLE = "stepwise-test"
BUCKET = "stepwise-test-archive"
QUEUE = "stepwise-test-intake"
SECRETS_PREFIX = "/stepwise/test"
API_KEY_PARAMETER = "/stepwise/test/api-key"
SHOPIFY_SECRET = "shpss_test_secret"
API_KEY = "sw_test_key_0123456789"


@dataclass
class Context:
    """The parts of a LambdaContext the handlers' logger reads."""

    function_name: str = "stepwise-intake"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:stepwise-intake"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def create_resources(region: str = "us-east-1", *, table: str | None = TABLE) -> dict[str, Any]:
    """Table (unless None: one exists), archive bucket, intake queue and SSM parameters, as infra creates them;
    returns the clients."""
    import boto3

    ddb = boto3.client("dynamodb", region_name=region)
    if table:
        create_table(ddb, table)
    s3 = boto3.client("s3", region_name=region)
    s3.create_bucket(Bucket=BUCKET)
    sqs = boto3.client("sqs", region_name=region)
    url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    ssm = boto3.client("ssm", region_name=region)
    ssm.put_parameter(Name=f"{SECRETS_PREFIX}/webhooks/shopify", Value=SHOPIFY_SECRET, Type="SecureString")
    ssm.put_parameter(Name=API_KEY_PARAMETER, Value=API_KEY, Type="SecureString")
    return {"dynamodb": ddb, "s3": s3, "sqs": sqs, "ssm": ssm, "queue_url": url}


def intake_env(queue_url: str, table: str = TABLE) -> dict[str, str]:
    return {
        C.ENV_TABLE_NAME: table,
        C.ENV_ARCHIVE_BUCKET: BUCKET,
        C.ENV_INTAKE_QUEUE_URL: queue_url,
        C.ENV_SECRETS_PREFIX: SECRETS_PREFIX,
        C.ENV_API_KEY_PARAMETER: API_KEY_PARAMETER,
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }


def http_event(
    method: str,
    path: str,
    body: bytes | str = b"",
    headers: dict[str, str] | None = None,
    *,
    base64_body: bool = False,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event, as a Lambda function URL sends it too."""
    raw = body.encode() if isinstance(body, str) else body
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": {k.lower(): v for k, v in (headers or {}).items()},
        **({"queryStringParameters": query} if query else {}),
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "api.example.com",
            "domainPrefix": "api",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "t"},
            "requestId": "req",
            "routeKey": "$default",
            "stage": "$default",
            "time": "07/Aug/2024:22:58:22 +0000",
            "timeEpoch": 1723071502000,
        },
        "body": base64.b64encode(raw).decode() if base64_body else raw.decode("utf-8", "surrogateescape"),
        "isBase64Encoded": base64_body,
    }


def shopify_delivery(
    name: str = "orders.paid",
    *,
    secret: str = SHOPIFY_SECRET,
    email: str | None = None,
    event_id: str = "evt-1",
    at: datetime | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A Shopify sample delivery (tests/events/shopify), signed with `secret` as Shopify signs: body and headers.
    `at` dates it (the samples are from 2021-2024, before any workflow of a test was activated)."""
    fixture = json.loads((EVENTS / "shopify" / f"{name}.json").read_text())
    body = fixture["body"]
    if at is not None:
        stamp = at.isoformat()
        body = {**body, **{k: stamp for k in ("created_at", "updated_at", "processed_at") if k in body}}
    if email is not None:
        body = {**body, "email": email, "contact_email": email}
        if isinstance(body.get("customer"), dict):
            body["customer"] = {**body["customer"], "email": email}
    raw = json.dumps(body).encode()
    headers = {k: v for k, v in fixture["headers"].items() if k not in ("x-shopify-hmac-sha256", "content-length")}
    headers["x-shopify-event-id"] = event_id
    headers.update(Shopify().sign(raw, secret, datetime.now(UTC)))
    return raw, headers


def response_json(response: dict[str, Any]) -> dict[str, Any]:
    return json.loads(response["body"])  # type: ignore[no-any-return]
