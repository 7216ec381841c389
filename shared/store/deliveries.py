"""Accepted deliveries: the dedupe claim (a DELIVERY# item in the contact table) and the queue the router reads."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from shared import constants as C
from shared.store.codec import epoch, serialise

DEDUPE_DAYS = 30  # longer than any provider retries (Stripe: 3 days) and the archive's own lifecycle
# A claim not marked enqueued after this long is taken to belong to an attempt that died between the claim and
# the enqueue: a redelivery may take it over (well over the intake function's timeout).
CLAIM_LEASE = timedelta(seconds=30)
# SQS's smallest maximum message size (256 KiB): above it the router reads the events from the archive instead.
MAX_INLINE_BYTES = 250_000
CLAIMED, ENQUEUED = "claimed", "enqueued"


def delivery_pk(dedupe_key: str) -> str:
    return f"DELIVERY#{dedupe_key}"


class Deliveries:
    def __init__(self, table: str, dynamodb: Any, queue_url: str, sqs: Any) -> None:
        self.table = table
        self.dynamodb = dynamodb
        self.queue_url = queue_url
        self.sqs = sqs

    def _key(self, dedupe_key: str) -> dict[str, Any]:
        return serialise({C.PK: delivery_pk(dedupe_key), C.SK: "DELIVERY"})

    def claim(self, dedupe_key: str, provider: str, archive_key: str, now: datetime) -> bool:
        """True when this delivery is new (or an earlier attempt claimed it and died before enqueueing): the
        caller must enqueue it, then call `enqueued`. False: a duplicate, already enqueued or being enqueued.

        The claim names its attempt: when botocore retries the put after a reply was lost (the first put landed),
        the retry's failed condition returns the item, and an item of this very attempt is this delivery's own
        claim, not a duplicate's (else the delivery would be answered 200 and never queued)."""
        attempt = uuid.uuid4().hex
        item = {
            C.PK: delivery_pk(dedupe_key),
            C.SK: "DELIVERY",
            "status": CLAIMED,
            "provider": provider,
            "archive_key": archive_key,
            "claimed_at": epoch(now),
            "attempt": attempt,
            C.TTL_ATTRIBUTE: epoch(now + timedelta(days=DEDUPE_DAYS)),
        }
        try:
            self.dynamodb.put_item(
                TableName=self.table,
                Item=serialise(item),
                ConditionExpression="attribute_not_exists(#pk) OR (#status = :claimed AND claimed_at < :stale)",
                ExpressionAttributeNames={"#pk": C.PK, "#status": "status"},
                ExpressionAttributeValues=serialise({":claimed": CLAIMED, ":stale": epoch(now - CLAIM_LEASE)}),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                found = err.response.get("Item") or {}
                return bool(found.get("attempt", {}).get("S") == attempt)
            raise
        return True

    def enqueue(self, message: dict[str, Any], events_in_archive: dict[str, Any]) -> str:
        """Send one accepted delivery to the router's queue; returns the SQS message id. A message too large for
        SQS goes without its events (`events_in_archive`), which the router then reads from the archive."""
        body = json.dumps(message, default=str, sort_keys=True)
        if len(body.encode()) > MAX_INLINE_BYTES:
            body = json.dumps({**message, "events": None, **events_in_archive}, default=str, sort_keys=True)
        sent = self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)
        return str(sent["MessageId"])

    def enqueued(self, dedupe_key: str) -> None:
        self.dynamodb.update_item(
            TableName=self.table,
            Key=self._key(dedupe_key),
            UpdateExpression="SET #status = :enqueued",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=serialise({":enqueued": ENQUEUED}),
        )
