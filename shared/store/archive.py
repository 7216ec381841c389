"""The archive bucket: raw deliveries as they arrived (30-day lifecycle) and the dead-letter store; all S3 access.
And its index by contact, for erasure (`stepwise erase`), so that no one has to read the whole bucket:

- a delivery the router routes to a contact is indexed by the contact's own ACT# item (the activity item the
  router writes for each event, in the transaction it writes anyway): it carries the delivery's `archive_key`.
  No request and no item of its own: the cheapest index there is, one attribute;
- an object no contact was resolved for (a dead letter, a delivery about nobody the intake could identify, one
  whose topic means no event, a duplicate the router never sees) is indexed by the identities found in it:
  an ARCHIVED#<hash of identity> / <key> item per identity (a hash, never the address), with the archive's
  lifetime. Those are the rare paths; erase Queries the hashes of the contact's identities."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from shared import constants as C
from shared.events_base import normalise_phone
from shared.store.codec import deserialise, epoch, serialise

DELIVERIES_PREFIX = "deliveries/"
DEAD_LETTERS_PREFIX = "dead-letters/"
ARCHIVE_INDEX_PREFIX = "ARCHIVED#"
ARCHIVE_DAYS = 30  # the bucket's lifecycle rule (infra) expires both prefixes after this many days
INDEX_DAYS = ARCHIVE_DAYS + 1  # an index item outlives the object it points at
_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_CONTACT_ID = re.compile(r"^c-[0-9a-f]{16}$")
_ARCHIVE_KEY = re.compile(r"^(?:deliveries|dead-letters)/[^\s]+\.json$")
_PHONE_NAME = re.compile(r"phone|mobile|^tel", re.I)
MAX_DEPTH = 40


def identity_hash(kind: str, value: str) -> str:
    """What the index is keyed by: a hash of one identity (email, phone, ext, id), never the value itself."""
    return hashlib.sha256(f"{kind}\x00{value}".encode()).hexdigest()[:32]


def archive_index_pk(kind: str, value: str) -> str:
    return f"{ARCHIVE_INDEX_PREFIX}{identity_hash(kind, value)}"


def identities_in(document: Any) -> set[tuple[str, str]]:
    """The identities an archived document names, normalised as the intake normalises them: every email-shaped
    string (lower-cased), a phone under a phone-like key (E.164), the contact refs of normalised events (their
    email, phone, external id and contact id), every contact id (c-<16 hex>). JSON kept as a string (a raw
    body, a queue message) is read too."""
    found: set[tuple[str, str]] = set()

    def visit(value: Any, key: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            return
        if isinstance(value, dict):
            ref = value.get("contact") if isinstance(value.get("contact"), dict) else None
            if ref is not None and isinstance(ref.get("external_id"), str | int) and ref.get("external_id"):
                found.add(("ext", str(ref["external_id"])))
            for k, v in value.items():
                visit(v, str(k), depth + 1)
        elif isinstance(value, list):
            for v in value:
                visit(v, key, depth + 1)
        elif isinstance(value, str):
            text = value.strip()
            if text[:1] in "{[":
                try:
                    visit(json.loads(text), key, depth + 1)
                    return
                except ValueError:
                    pass
            for m in _EMAIL.findall(text):
                found.add(("email", m.lower()))
            if _CONTACT_ID.match(text):
                found.add(("id", text))
            if _PHONE_NAME.search(key) or key == "phone":
                with contextlib.suppress(ValueError):
                    found.add(("phone", normalise_phone(text)))
        elif isinstance(value, int) and not isinstance(value, bool) and _PHONE_NAME.search(key):
            with contextlib.suppress(ValueError):
                found.add(("phone", normalise_phone(f"+{value}")))

    visit(document, "", 0)
    return found


def archive_keys_in(document: Any) -> set[str]:
    """Archive keys a document refers to (a queue message's archive_key, an unresolved letter's delivery)."""
    found: set[str] = set()

    def visit(value: Any, depth: int) -> None:
        if depth > MAX_DEPTH:
            return
        if isinstance(value, dict):
            for v in value.values():
                visit(v, depth + 1)
        elif isinstance(value, list):
            for v in value:
                visit(v, depth + 1)
        elif isinstance(value, str):
            if _ARCHIVE_KEY.match(value):
                found.add(value)
            elif value.strip()[:1] in "{[":
                with contextlib.suppress(ValueError):
                    visit(json.loads(value), depth + 1)

    visit(document, 0)
    return found


class ArchiveIndex:
    """ARCHIVED#<identity hash> / <archive key> items in the contact table, expiring with the archive."""

    def __init__(self, table: str, dynamodb: Any) -> None:
        self.table = table
        self.client = dynamodb

    def add(self, keys: Iterable[str], identities: Iterable[tuple[str, str]], now: datetime) -> int:
        """Index each key under each identity: BatchWriteItem, 25 at a time. Returns the items written."""
        expires = epoch(now + timedelta(days=INDEX_DAYS))
        items = [
            {C.PK: archive_index_pk(kind, value), C.SK: key, C.TTL_ATTRIBUTE: expires}
            for kind, value in sorted(set(identities))
            for key in sorted(set(keys))
        ]
        for i in range(0, len(items), 25):
            request: dict[str, Any] = {self.table: [{"PutRequest": {"Item": serialise(x)}} for x in items[i : i + 25]]}
            while request:
                got = self.client.batch_write_item(RequestItems=request)
                request = got.get("UnprocessedItems") or {}
        return len(items)

    def entries(self, identities: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """(index pk, archive key) of every object indexed under one of `identities`: one Query per identity."""
        out: list[tuple[str, str]] = []
        for kind, value in sorted(set(identities)):
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": "#pk = :pk",
                "ExpressionAttributeNames": {"#pk": C.PK},
                "ExpressionAttributeValues": serialise({":pk": archive_index_pk(kind, value)}),
                "ConsistentRead": True,
            }
            while True:
                page = self.client.query(**kwargs)
                out += [(str(i[C.PK]), str(i[C.SK])) for i in map(deserialise, page.get("Items", []))]
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return out


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
    def __init__(self, bucket: str, client: Any, index: ArchiveIndex | None = None) -> None:
        self.bucket = bucket
        self.client = client
        self.index = index  # where objects no contact was resolved for are indexed (None: not indexed)

    # ---- raw deliveries -----------------------------------------------------------------------

    def put_delivery(self, key: str, document: dict[str, Any]) -> None:
        self._put(key, json.dumps(document, default=str, sort_keys=True).encode())

    def index_by_identities(self, keys: Iterable[str], document: Any, now: datetime) -> int:
        """Index archive objects under the identities `document` names, for erasure: an object the router will
        not tie to a contact (a duplicate, a delivery about nobody, a topic with no event, a dead letter)."""
        if self.index is None:
            return 0
        return self.index.add(keys, identities_in(document), now)

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
        # Indexed by whom it names, with the deliveries it refers to (a queue message's archived delivery).
        self.index_by_identities({letter.key} | archive_keys_in(record), record, at)
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
