"""The archive's index by identity (shared/store/archive.py): which identities an archived document names, the
keys it refers to, and that the index is keyed by hashes, never by the address."""

from __future__ import annotations

import json

from shared.store.archive import archive_index_pk, archive_keys_in, identities_in, identity_hash


def test_identities_in_raw_bodies_events_and_letters() -> None:
    doc = {
        "body": json.dumps({"customer": {"Email": "Ann@Example.COM", "phone": "+44 7700 900123"}, "note": "x"}),
        "events": [{"contact": {"external_id": "shopify:7039294554217", "contact_id": "c-0123456789abcdef"}}],
        "record": {"dynamodb": {"NewImage": {"contact_id": {"S": "c-fedcba9876543210"}}}},
        "mobile": 15550000000,  # a phone field as a JSON number (Webflow)
        "note": "call joann@example.org later",
    }
    assert identities_in(doc) == {
        ("email", "ann@example.com"),
        ("email", "joann@example.org"),
        ("phone", "+447700900123"),
        ("phone", "+15550000000"),
        ("ext", "shopify:7039294554217"),
        ("id", "c-0123456789abcdef"),
        ("id", "c-fedcba9876543210"),
    }


def test_no_identity_where_there_is_none() -> None:
    doc = {"order": 1234567890123, "total": "19.99", "id": "c-notanid", "phone": "0207 946 0000", "at": "a@"}
    assert identities_in(doc) == set()  # a number not under a phone key, a phone without its country code


def test_archive_keys_referred_to() -> None:
    body = json.dumps({"archive_key": "deliveries/2026/11/30/events/events::ab12.json", "dedupe_key": "x"})
    assert archive_keys_in({"body": body, "other": "dead-letters/2026-11-30/l-1.json"}) == {
        "deliveries/2026/11/30/events/events::ab12.json",
        "dead-letters/2026-11-30/l-1.json",
    }


def test_the_index_key_is_a_hash_of_the_identity() -> None:
    pk = archive_index_pk("email", "ann@example.com")
    assert "ann" not in pk and pk == "ARCHIVED#" + identity_hash("email", "ann@example.com")
    assert identity_hash("email", "ann@example.com") != identity_hash("phone", "ann@example.com")
