"""Events files of `stepwise simulate`: contact events and raw provider deliveries, errors naming file, line, field."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from stepwise.simulate import DEFAULT_START, EventsFileError, TimedDelivery, TimedEvent, delivery_bytes, read_events

EVENT = {"id": "e1", "type": "tag.added", "contact": {"email": "ana@example.com"}, "data": {"tag": "VIP"}}


def write(tmp_path: Path, *lines: object) -> Path:
    p = tmp_path / "events.jsonl"
    p.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return p


def test_event_and_delivery_lines_in_time_order(tmp_path: Path) -> None:
    body = {"id": 1, "email": "ana@example.com", "total_price": "12.50"}
    p = write(
        tmp_path,
        "# source: https://shopify.dev/docs/api/webhooks (a comment line)",
        {"at": "+1h", "event": EVENT},
        "",
        {"provider": "shopify", "headers": {"X-Shopify-Topic": "checkouts/create"}, "body": body},
        {
            "at": "2026-12-01T09:00:00Z",
            "provider": "jotform",
            "body": "--x\r\nContent-Disposition: form-data",
            "token": "t",
        },
    )
    first, second, third = read_events(p, DEFAULT_START)
    # A line without "at" happens at the start.
    assert isinstance(first, TimedDelivery) and first.at == DEFAULT_START
    assert first.headers == {"x-shopify-topic": "checkouts/create"}
    assert first.body == b'{"id":1,"email":"ana@example.com","total_price":"12.50"}'
    assert first.where == f"{p}:4"
    assert isinstance(second, TimedEvent) and second.at == DEFAULT_START + timedelta(hours=1)
    assert isinstance(third, TimedDelivery) and third.token == "t"
    assert third.body == b"--x\r\nContent-Disposition: form-data"  # a string body is the raw bytes


def test_body_raw_keeps_the_exact_bytes(tmp_path: Path) -> None:
    raw = '{"id": 1,  "note": "caf\\u00e9"}'
    (d,) = read_events(write(tmp_path, {"provider": "shopify", "body_raw": raw}), DEFAULT_START)
    assert isinstance(d, TimedDelivery) and d.body == raw.encode()


def test_json_body_is_serialised_compactly_keeping_non_ascii() -> None:
    assert delivery_bytes({"a": [1, 2], "n": "café"}) == '{"a":[1,2],"n":"café"}'.encode()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not JSON"),
        ({"at": "+1h"}, 'a line is {"at"'),
        ({"event": EVENT, "provider": "shopify"}, 'a line is {"at"'),
        ({"at": "tomorrow", "event": EVENT}, "field at:"),
        ({"at": "2026-12-01T09:00:00", "event": EVENT}, "field at: '2026-12-01T09:00:00' needs a time zone"),
        ({"event": {**EVENT, "type": ""}}, "field event.type:"),
        ({"event": EVENT, "colour": "red"}, "field colour: Extra inputs are not permitted"),
        ({"provider": "shopify", "headers": {"X-A": 1}, "body": {}}, "field headers.X-A:"),
        ({"provider": "shopify"}, "field body: give exactly one of body"),
        ({"provider": "shopify", "body": {}, "body_raw": "{}"}, "field body: give exactly one of body"),
        ({"provider": "", "body": {}}, "field provider:"),
    ],
)
def test_errors_name_the_file_line_and_field(tmp_path: Path, line: object, message: str) -> None:
    p = write(tmp_path, {"event": EVENT}, line)
    with pytest.raises(EventsFileError) as err:
        read_events(p, DEFAULT_START)
    assert str(err.value).startswith(f"{p}:2: ")
    assert message in str(err.value)
