"""The archive bucket: raw deliveries as they arrived (30-day lifecycle) and the dead-letter store; all S3 access."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

DELIVERIES_PREFIX = "deliveries/"
DEAD_LETTERS_PREFIX = "dead-letters/"


def delivery_key(provider: str, dedupe_key: str, received_at: datetime) -> str:
    """deliveries/YYYY/MM/DD/<provider>/<dedupe_key>.json: a redelivery lands on the same day's key of its own
    receipt, and the bucket's lifecycle rule expires the prefix after 30 days."""
    return f"{DELIVERIES_PREFIX}{received_at:%Y/%m/%d}/{provider}/{dedupe_key}.json"


def dead_letter_key(letter_id: str, at: datetime) -> str:
    return f"{DEAD_LETTERS_PREFIX}{at:%Y-%m-%d}/{letter_id}.json"


@dataclass(frozen=True)
class DeadLetter:
    """Something that could not be processed, with its error and everything needed to run it again."""

    key: str
    id: str
    source: str  # queue, stream, status, schedule, feedback, unresolved
    error: str
    at: str
    record: dict[str, Any]
    attempts: int = 1

    def to_json(self) -> bytes:
        doc = {k: getattr(self, k) for k in ("id", "source", "error", "at", "record", "attempts")}
        return json.dumps(doc, default=str, sort_keys=True).encode()


class Archive:
    def __init__(self, bucket: str, client: Any) -> None:
        self.bucket = bucket
        self.client = client

    # ---- raw deliveries -----------------------------------------------------------------------

    def put_delivery(self, key: str, document: dict[str, Any]) -> None:
        self._put(key, json.dumps(document, default=str, sort_keys=True).encode())

    def get_json(self, key: str) -> dict[str, Any] | None:
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if err.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        return json.loads(got["Body"].read())  # type: ignore[no-any-return]

    # ---- dead letters -------------------------------------------------------------------------

    def put_dead_letter(
        self, letter_id: str, source: str, record: dict[str, Any], error: str, at: datetime, attempts: int = 1
    ) -> DeadLetter:
        """Keep a failed record; the id is derived from the record, so another failure of it overwrites the
        same object rather than listing it twice."""
        letter = DeadLetter(dead_letter_key(letter_id, at), letter_id, source, error, at.isoformat(), record, attempts)
        self._put(letter.key, letter.to_json())
        return letter

    def retried(self, letter: DeadLetter, error: str) -> DeadLetter:
        """A replay of the letter failed again: kept where it is, with the new error and one more attempt."""
        again = replace(letter, error=error, attempts=letter.attempts + 1)
        self._put(letter.key, again.to_json())
        return again

    def dead_letters(self) -> Iterator[DeadLetter]:
        """Every dead letter, oldest day first."""
        for key in self._keys(DEAD_LETTERS_PREFIX):
            doc = self.get_json(key)
            if doc is not None:
                yield DeadLetter(key=key, **doc)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    # ---- plumbing -----------------------------------------------------------------------------

    def _put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")

    def _keys(self, prefix: str) -> Iterator[str]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"]
