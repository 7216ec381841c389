"""Intake Lambda (HTTP API payload v2 or a function URL): verify, archive, de-duplicate and enqueue deliveries.

POST /webhooks/{provider}[/{token}]  a provider's webhook (the token: the proof of providers that cannot sign)
POST /events                         our own API for the events no shop sends; API key in Authorization or x-api-key
GET  /health                         liveness, touches nothing

Bad input is always a 4xx naming the header or field; a 5xx only ever means our fault (the sender retries)."""

from __future__ import annotations

import base64
import binascii
import gc
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.trigger_router.intake_settings import IntakeSettings
from functions.trigger_router.secrets import Secrets
from shared import clock
from shared import constants as C
from shared.intake.base import (
    MAX_BODY_BYTES,
    Accepted,
    BodyTooLarge,
    Delivery,
    IntakeError,
    MalformedDelivery,
    NotAContactEvent,
    SignatureRejected,
)
from shared.store.archive import Archive, ArchiveIndex, delivery_key
from shared.store.deliveries import Deliveries

if TYPE_CHECKING:  # the queue message (and the routing engine) load with the first accepted delivery, not at import
    from shared.runtime.inbound import AcceptedDelivery

logger = Logger(service=C.SERVICE_NAME)
app = APIGatewayHttpResolver()

EVENTS_PROVIDER = "events"  # the provider name of POST /events deliveries (archive key, dedupe key)
# Headers and query parameters that carry proofs (signatures, keys, tokens): never archived, never logged.
_SECRET_NAME = re.compile(r"signature|hmac|authori[sz]ation|secret|token|api[-_]?key|cookie|password|sig$|^key$", re.I)
_PROVIDER_NAME = re.compile(r"^[a-z0-9_-]{1,40}$")


@dataclass
class IntakeDeps:
    settings: IntakeSettings
    secrets: Secrets
    archive: Archive
    deliveries: Deliveries
    dynamodb: Any  # the one DynamoDB client (dedupe claim, archive index, the unsubscribe route's contact store)


_deps: IntakeDeps | None = None
_frozen = False

# Every client of the intake: a provider waits a few seconds for the answer (Shopify 5 s) and the function's timeout
# is 10 s, so no call may sit on botocore's 60 s defaults. Standard retry mode (backoff with jitter, a retry quota)
# instead of legacy; one call's worst case is 3 attempts of 1 s connect + 2 s read, plus the backoff.
CLIENT_CONFIG: dict[str, Any] = {
    "connect_timeout": 1,
    "read_timeout": 2,
    "retries": {"mode": "standard", "total_max_attempts": 3},  # the first attempt and 2 retries
    "tcp_keepalive": True,
}


def deps() -> IntakeDeps:
    """The clients and settings, made once per container (the first delivery's cold start), never per request."""
    global _deps, _frozen
    if _deps is None:
        from botocore.config import Config

        settings = IntakeSettings.from_env()
        config = Config(**CLIENT_CONFIG)
        ddb = boto3.client("dynamodb", config=config)
        s3 = boto3.client("s3", config=config)
        _deps = IntakeDeps(
            settings=settings,
            secrets=Secrets(settings.secrets_prefix, settings.api_key_parameter, boto3.client("ssm", config=config)),
            # Objects the router never ties to a contact are indexed by identity in the table (erasure).
            archive=Archive(settings.archive_bucket, s3, ArchiveIndex(settings.table_name, ddb)),
            deliveries=Deliveries(settings.table_name, ddb, settings.queue_url, boto3.client("sqs", config=config)),
            dynamodb=ddb,
        )
        if not _frozen:
            # What the cold start built (modules, botocore's service models, the clients: ~10^5 objects) lives as
            # long as the container: frozen out of the collector's reach, a full collection during a delivery no
            # longer walks it (bench/intake.py: a full collection cost about 130 ms of CPU before the freeze).
            gc.freeze()
            _frozen = True
    return _deps


def reset() -> None:
    """Forget the cold-start state (tests and the local runtime call this when they swap the environment)."""
    global _deps
    _deps = None


# ---- routes ---------------------------------------------------------------------------------------------------


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/webhooks/<provider>")
def webhook(provider: str) -> Response:
    return _deliver(provider, None)


@app.post("/webhooks/<provider>/<token>")
def webhook_with_token(provider: str, token: str) -> Response:
    return _deliver(provider, token)


@app.post("/events")
def events() -> Response:
    body = _raw_body()  # 413 first, as for webhooks
    _check_api_key(_headers())
    from shared.intake.generic import parse_events  # the generic events' module, loaded where it is used

    received = clock.now()
    parsed = parse_events(body)
    digest = hashlib.sha256(body).hexdigest()[:16]
    accepted = Accepted(
        provider=EVENTS_PROVIDER,
        delivery_id="",
        dedupe_key=f"{EVENTS_PROVIDER}::{digest}",  # a retried POST of the same body is a duplicate
        verified=True,
        test=any(e.test for e in parsed),
        events=parsed,
    )
    delivery = Delivery(provider=EVENTS_PROVIDER, headers=_headers(), body=body, received_at=received)
    return _enqueue(accepted, delivery)


@app.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> Response:
    return _unsubscribe(token, "GET")


@app.post("/unsubscribe/<token>")
def unsubscribe_one_click(token: str) -> Response:
    """RFC 8058 one-click: the mailbox provider POSTs List-Unsubscribe=One-Click; consent is withdrawn at once and
    email.unsubscribed goes to the router like any accepted event (workflows may trigger on it)."""
    return _unsubscribe(token, "POST")


def _unsubscribe(token: str, method: str) -> Response:
    import os

    from aws_lambda_powertools.utilities import parameters

    from shared.messaging import unsubscribe
    from shared.store.contacts import ContactStore

    name = os.environ.get(C.ENV_UNSUBSCRIBE_KEY_PARAMETER)
    if not name:
        raise RuntimeError(f"intake misconfigured: environment variable {C.ENV_UNSUBSCRIBE_KEY_PARAMETER} not set")
    key = str(parameters.get_parameter(name, decrypt=True, max_age=300)).encode()
    d = deps()
    now = clock.now()
    result = unsubscribe.handle(ContactStore(d.settings.table_name, d.dynamodb), key, token, method, now)
    if result.event is not None:
        mid = result.event.data["message_id"]
        body = f"unsubscribe {mid}".encode()  # the archive keeps what happened, never the token
        accepted = Accepted(
            provider="unsubscribe",
            delivery_id=mid,
            dedupe_key=f"unsubscribe::{mid}",
            verified=True,
            test=False,
            events=[result.event],
        )
        _enqueue(accepted, Delivery(provider="unsubscribe", headers={}, body=body, received_at=now))
    return Response(status_code=result.status, content_type=content_types.TEXT_HTML, body=result.body)


@app.exception_handler(IntakeError)
def refused(err: IntakeError) -> Response:
    provider = _route_provider()
    logger.info("delivery refused", extra={"provider": provider, "status": err.status, "field": err.field})
    _count(C.METRIC_DELIVERY_REJECTED, provider=provider, status=str(err.status))
    return _json(err.status, {"error": str(err), "field": err.field})


@app.not_found
def not_found(_: Exception) -> Response:
    return _json(404, {"error": "no such route: POST /webhooks/{provider}, POST /events, GET /health", "field": "path"})


@logger.inject_lambda_context(clear_state=True)  # never log_event: the path may carry a token, the body personal data
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


# ---- one delivery ---------------------------------------------------------------------------------------------


def _deliver(provider: str, token: str | None) -> Response:
    body = _raw_body()
    from shared.intake.pipeline import accept  # imported on first use: it loads every provider module

    d = deps()
    query = dict(app.current_event.query_string_parameters or {})
    delivery = Delivery(
        provider=provider,
        headers=_headers(),
        body=body,
        received_at=clock.now(),
        path_token=token,
        query=query,
    )
    try:
        accepted = accept(provider, delivery, _secret_source(d.secrets))
    except NotAContactEvent as err:
        return _unresolved(delivery, err)
    return _enqueue(accepted, delivery)


def _secret_source(secrets: Secrets) -> Any:
    def secret_for(provider: str) -> str | None:
        # A name SSM would refuse (odd characters) is no configured provider: never a 5xx from the lookup.
        return secrets.secret_for(provider) if _PROVIDER_NAME.match(provider) else None

    return secret_for


def _enqueue(accepted: Accepted, delivery: Delivery) -> Response:
    """Archive (before acknowledging), claim the dedupe key, enqueue once. A duplicate enqueues nothing."""
    from shared.runtime.inbound import AcceptedDelivery, event_json

    d = deps()
    key = delivery_key(accepted.provider, _safe_key(accepted.dedupe_key), delivery.received_at)
    events = [event_json(e) for e in accepted.events]
    document = _archive_document(delivery, accepted.dedupe_key, "accepted", events=events)
    d.archive.put_delivery(key, document)
    n = len(accepted.events)
    if not d.deliveries.claim(accepted.dedupe_key, accepted.provider, key, delivery.received_at):
        # Routed never (its key may be another day's than the first delivery's): indexed by whom it names.
        d.archive.index_by_identities([key], document, delivery.received_at)
        logger.info("duplicate delivery", extra={"provider": accepted.provider, "id": accepted.dedupe_key})
        _count(C.METRIC_DELIVERY_DUPLICATE, provider=accepted.provider)
        return _json(200, {"accepted": n, "duplicate": True, "id": accepted.dedupe_key})
    message = AcceptedDelivery(
        dedupe_key=accepted.dedupe_key,
        archive_key=key,
        provider=accepted.provider,
        verified=accepted.verified,
        test=accepted.test,
        events=accepted.events,
    )
    if n:  # a topic that means no contact event (orders/create beside orders/paid, a ping): kept, not routed
        d.deliveries.enqueue(_message_json(message, events), {})
    else:  # no contact will index it (no event routed): indexed by the identities its raw body names
        d.archive.index_by_identities([key], document, delivery.received_at)
    d.deliveries.enqueued(accepted.dedupe_key)
    logger.info(
        "delivery accepted",
        extra={"provider": accepted.provider, "id": accepted.dedupe_key, "events": n, "test": accepted.test},
    )
    _count(C.METRIC_DELIVERY_ACCEPTED, provider=accepted.provider)
    return _json(202, {"accepted": n, "duplicate": False, "id": accepted.dedupe_key})


def _message_json(message: AcceptedDelivery, events: list[dict[str, Any]]) -> dict[str, Any]:
    return message.message(events)


def _unresolved(delivery: Delivery, err: NotAContactEvent) -> Response:
    """Authentic, well formed, about nobody we can identify: archived and kept with its reason, answered 202 so
    the provider does not retry what would fail again."""
    d = deps()
    digest = hashlib.sha256(delivery.body).hexdigest()[:16]
    letter_id = f"{delivery.provider}-{digest}"
    key = delivery_key(delivery.provider, letter_id, delivery.received_at)
    document = _archive_document(delivery, letter_id, "unresolved", reason=str(err))
    d.archive.put_delivery(key, document)
    record = {"archive_key": key, "provider": delivery.provider, "field": err.field}
    letter = d.archive.put_dead_letter(letter_id, "unresolved", record, f"no contact: {err}", delivery.received_at)
    # About nobody identified, maybe still naming someone (an address the intake could not use): both indexed.
    d.archive.index_by_identities([key, letter.key], document, delivery.received_at)
    logger.info("delivery about no contact", extra={"provider": delivery.provider, "field": err.field})
    _count(C.METRIC_DEAD_LETTER, source="unresolved")
    return _json(202, {"accepted": 0, "unresolved": True, "id": letter_id})


def _archive_document(
    delivery: Delivery, dedupe_key: str, status: str, *, events: list[dict[str, Any]] | None = None, reason: str = ""
) -> dict[str, Any]:
    try:
        body, encoding = delivery.body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(delivery.body).decode(), "base64"
    doc: dict[str, Any] = {
        "provider": delivery.provider,
        "dedupe_key": dedupe_key,
        "status": status,
        "received_at": delivery.received_at.isoformat(),
        "headers": without_secrets(delivery.headers),
        "query": without_secrets(delivery.query),
        "body": body,
        "body_encoding": encoding,
    }
    if events is not None:
        doc["events"] = events
    if reason:
        doc["reason"] = reason
    return doc


def without_secrets(values: Mapping[str, str]) -> dict[str, str]:
    """Headers or query parameters less those that carry a signature, a key or a token."""
    return {k: v for k, v in values.items() if not _SECRET_NAME.search(k)}


def _safe_key(dedupe_key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._:=-]", "_", dedupe_key)


# ---- request plumbing -----------------------------------------------------------------------------------------


def _raw_body() -> bytes:
    """The exact bytes that were sent (signatures are over them); 413 above 1 MB, before anything else."""
    ev = app.current_event
    text = ev.body or ""
    if ev.is_base64_encoded:
        if len(text) > (MAX_BODY_BYTES + 2) // 3 * 4 + 4:
            raise BodyTooLarge(f"body is over the {MAX_BODY_BYTES} byte limit", field="body")
        try:
            body = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedDelivery("body is marked base64 but is not valid base64", field="body") from None
    else:
        if len(text) > MAX_BODY_BYTES:  # characters: at least as many bytes
            raise BodyTooLarge(f"body is over the {MAX_BODY_BYTES} byte limit", field="body")
        try:
            body = text.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedDelivery("body is not valid UTF-8 text", field="body") from None
    if len(body) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"body is {len(body)} bytes, over the {MAX_BODY_BYTES} byte limit", field="body")
    return body


def _headers() -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (app.current_event.headers or {}).items()}


def _check_api_key(headers: Mapping[str, str]) -> None:
    auth = headers.get("authorization", "")
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else headers.get("x-api-key", "")
    if not given:
        raise SignatureRejected("API key missing: send Authorization: Bearer <key> or x-api-key", field="Authorization")
    expected = deps().secrets.api_key()
    if not expected or not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8")):
        raise SignatureRejected("API key in Authorization (or x-api-key) is not valid", field="Authorization")


def _route_provider() -> str:
    """The provider the request was for, for metrics: only known-safe names, never a token or query string."""
    try:
        parts = (app.current_event.path or "").split("/")
    except Exception:
        return "unknown"
    if len(parts) > 2 and parts[1] == "webhooks" and _PROVIDER_NAME.match(parts[2]):
        return parts[2]
    return EVENTS_PROVIDER if parts[1:2] == ["events"] else "unknown"


def _json(status: int, body: dict[str, Any]) -> Response:
    # Plain values only (counts, ids, messages): the queue message's Decimal-aware dumps is not needed here.
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body, sort_keys=True)
    )


def _count(name: str, **dimensions: str) -> None:
    settings = _deps.settings if _deps is not None else None
    if settings is None or not settings.metrics_enabled:
        return
    with single_metric(
        name=name, unit=MetricUnit.Count, value=1, namespace=settings.namespace, default_dimensions=dimensions
    ):
        pass
