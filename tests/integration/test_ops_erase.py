"""`stepwise erase` on the local stack, every delivery through the real intake and router: after it, no item of the
table, no object of the archive, no execution history and no message sent afterwards names the contact, but the
tombstone (the time only); the archive objects were found through its index, never by listing the bucket; a late
step, an outbox item and a queued message arriving after it write and send nothing; another contact is untouched."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto.backends import get_backend

from shared import constants as C
from shared.intake.testing import load_fixture, signed
from shared.store.archive import DEAD_LETTERS_PREFIX, DELIVERIES_PREFIX
from shared.store.contacts import ERASED_SK, ContactNotFound, contact_pk, deserialise
from shared.store.operations import OperationsStore
from stepwise.local_api import ARCHIVE_BUCKET, LocalApi
from stepwise.ops.erase import erase, print_receipt
from stepwise.simulate import TABLE
from tests.integration.support import workflow

FLOW = """
name: keep-in-touch
triggers: [{event: list.subscribed}]
steps:
  - id: hello
    send_email: {template: offer-1-intro, subject: Hi}
  - id: code
    generate_coupon: {prefix: HI, percent_off: 10}
  - id: wait-for-order
    wait_until: {event: order.paid, timeout: 30d}
  - id: thanks
    add_tag: Buyer
"""
START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
SECRET = "erase-test-secret"
API_KEY = "sw_erase_test_key_0123456789"
ERASED = {
    "email": "erase.me@example.com",
    "phone": "+447700900555",
    "external_id": "shopify:7039294554217",
    "first_name": "Erasmus",
    "last_name": "Gone",
}
KEPT = {"email": "keep.me@example.com"}
UNKNOWN_ID = "c-0123456789abcdef"  # no contact has it: routing an event naming it fails (a queue dead letter)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(C.ENV_LOCAL_SECRET_PREFIX + "SHOPIFY", SECRET)
    monkeypatch.setenv(C.ENV_LOCAL_API_KEY, API_KEY)
    monkeypatch.setenv(C.ENV_TEMPLATES_DIR, "templates")  # the sender on: SES on moto
    with LocalApi([workflow(FLOW)], start=START, activated_at=START - timedelta(days=1)) as local:
        yield local


def post_events(api: LocalApi, *events: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps({"events": list(events)}).encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {API_KEY}"}
    answer = api.invoke_intake("POST", "/events", headers, body)
    assert answer["statusCode"] in (200, 202), answer
    return json.loads(answer["body"])


def shopify(api: LocalApi, topic: str, body: dict[str, Any]) -> dict[str, Any]:
    fx = load_fixture("shopify", topic)
    fx["headers"].pop("content-length", None)
    d = signed(fx, SECRET, api.sim.now, body=json.dumps(body).encode())
    answer = api.invoke_intake("POST", "/webhooks/shopify", dict(d.headers), d.body)
    assert answer["statusCode"] in (200, 202), answer
    return json.loads(answer["body"])


def ev(eid: str, etype: str, data: dict[str, Any], **who: str) -> dict[str, Any]:
    return {"id": eid, "type": etype, "contact": who, "data": data, "occurred_at": START.isoformat()}


def table_items(api: LocalApi) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": TABLE}
    while True:
        page = api.sim.stack.dynamodb.scan(**kwargs)
        items += [deserialise(i) for i in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def objects(s3: Any) -> dict[str, str]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=ARCHIVE_BUCKET):
        for o in page.get("Contents", []):
            out[o["Key"]] = s3.get_object(Bucket=ARCHIVE_BUCKET, Key=o["Key"])["Body"].read().decode()
    return out


def histories(api: LocalApi) -> dict[str, str]:
    """Every execution's full history (GetExecutionHistory, every event), as text, by execution ARN."""
    sfn, out = api.sim.stack.sfn, {}
    for machine in api.sim.machines.values():
        for e in sfn.list_executions(stateMachineArn=machine)["executions"]:
            events = []
            for page in sfn.get_paginator("get_execution_history").paginate(executionArn=e["executionArn"]):
                events += page["events"]
            desc = sfn.describe_execution(executionArn=e["executionArn"])
            out[e["executionArn"]] = json.dumps([desc, events], default=str)
    return out


def sent_to(api: LocalApi) -> list[str]:
    """The recipients of every email SES on moto has sent, one line per message, in order."""
    ses = get_backend("ses")[api.sim.stack.account_id][api.sim.stack.region]
    out = []
    for m in ses.sent_messages:
        text = json.dumps(getattr(m, "destinations", None), default=str).lower()
        out.append(",".join(sorted({w for w in text.replace('"', " ").replace(",", " ").split() if "@" in w})))
    return out


def naming(texts: list[str], needles: list[str]) -> list[str]:
    """The texts that name a needle: an id, address or phone anywhere in them (case-insensitive), a name as a whole
    JSON string (plain or escaped inside a JSON string)."""
    out = []
    for text in (t.lower() for t in texts):
        for n in needles:
            if ("@" in n or n.startswith(("+", "c-", "shopify:"))) and n in text:
                out.append(text)
                break
            if f'"{n}"' in text or f'\\"{n}\\"' in text:
                out.append(text)
                break
    return out


def test_erase_leaves_nothing_behind(api: LocalApi) -> None:
    s3 = boto3.client("s3", region_name=api.sim.stack.region)
    sim = api.sim
    # Accepted and routed: the router's ACT# items index these deliveries.
    post_events(api, ev("e1", "list.subscribed", {"list": "news"}, **ERASED))
    post_events(api, ev("e2", "tag.added", {"tag": "VIP"}, phone=ERASED["phone"]))
    post_events(api, ev("k1", "list.subscribed", {"list": "news"}, **KEPT))
    paid = load_fixture("shopify", "orders/create")["body"]
    # A topic that means no event (orders/create): archived, never routed; its body names the contact.
    mine = json.loads(
        json.dumps(paid).replace("jon@example.com", ERASED["email"]).replace("john@example.com", ERASED["email"])
    )
    assert shopify(api, "orders/create", mine)["accepted"] == 0
    # About nobody the intake can identify (no usable address, no customer): a dead letter; its note names her.
    nobody = {
        **{k: v for k, v in paid.items() if k not in ("customer", "billing_address", "shipping_address")},
        "email": None,
        "contact_email": None,
        "phone": None,
        "note": f"gift, tell {ERASED['email'].upper()}",
    }
    assert shopify(api, "orders/paid", nobody).get("unresolved") is True
    # A routing that keeps failing (an event naming an id nobody has, and her address): a queue dead letter.
    post_events(api, ev("x1", "tag.added", {"tag": "X"}, email=ERASED["email"], contact_id=UNKNOWN_ID))
    # A day later the provider retries e1's delivery: a duplicate, archived under that day's key, never routed.
    sim.advance(sim.now + timedelta(days=1))
    assert post_events(api, ev("e1", "list.subscribed", {"list": "news"}, **ERASED))["duplicate"] is True

    ops = OperationsStore(sim.store, sfn=sim.stack.sfn, s3=s3, bucket=ARCHIVE_BUCKET)
    contact_id = ops.find_contact(ERASED["email"])
    kept = ops.find_contact(KEPT["email"])
    assert contact_id is not None and kept is not None
    needles = [contact_id, *(v.lower() for v in ERASED.values())]
    enrol = sim.store.get_item(contact_pk(contact_id), "ENROLL#keep-in-touch")
    assert enrol is not None
    before = objects(s3)
    named_before = {k for k, body in before.items() if naming([body], needles)}
    assert {k.split("/")[0] for k in named_before} == {"deliveries", "dead-letters"}
    assert (
        len(named_before) >= 6
    )  # e1, e2, orders/create, the unresolved delivery and letter, the queue letter, e1 again
    # And the dead letters that refer to one of those (the unresolved delivery's letter names only its key).
    referring = {k for k, body in before.items() if any(n in body for n in named_before - {k})}
    named_before |= referring
    assert sum(contact_id in json.dumps(i, default=str) for i in table_items(api)) >= 8
    assert sent_to(api) == [ERASED["email"], KEPT["email"]]

    # In flight at the moment of the erasure: a message queued, not yet handed to the sender, for both contacts
    # (the other one's is the control: it is sent), and an outbox item of hers not yet routed.
    for who in (contact_id, kept):
        msg = next(i for i in ops.partition(who).items if str(i[C.SK]).startswith("MSG#"))
        late_id = "late-" + who
        sim.store.put_item({**msg, C.SK: f"MSG#{late_id}", "message_id": late_id, "status": "queued"})
    sim.store.transact([sim.store.outbox(contact_id, "late-step", "tag.added", {"tag": "Late"}, sim.now)])

    listed: list[str] = []
    s3.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: listed.append("list"))
    dry = erase(ops, ERASED["phone"], dry_run=True, settle_seconds=0)
    assert dry.items["profile"] == 1 and sim.store.get_item(contact_pk(contact_id), "PROFILE")
    receipt = erase(ops, ERASED["phone"], settle_seconds=0)
    assert listed == []  # found through the index: the bucket is never listed
    assert receipt.executions_stopped == 1 and receipt.tombstone
    assert receipt.items["identities"] == 3 and receipt.items["coupons"] == 1
    assert receipt.items["memberships"] == 1 and receipt.items["waits"] == 1
    assert receipt.archive_objects == len(named_before)

    # What arrives after the erasure: the outbox item and the queued messages reach the router and the sender...
    sim.settle()
    # ... and a step of her stopped run arriving late (its Lambda invocation) writes nothing.
    from functions.step_runner import logic

    request = logic.StepRequest(
        op="actions",
        workflow="keep-in-touch",
        version="v",
        max_loops=10,
        history_days=30,
        contact_id=contact_id,
        event={},
        run={"loops": 0, "branch": ""},
        execution=str(enrol["execution_arn"]),
        steps=[{"id": "thanks", "add_tag": ["Buyer"], "kind": "add_tag"}],
    )
    with pytest.raises(ContactNotFound):
        logic.run(request, logic.Deps(store=sim.store, enroller=sim.enroller, sfn=sim.stack.sfn))

    items = table_items(api)
    texts = [json.dumps(i, default=str) for i in items]
    left = [i for i, t in zip(items, texts, strict=True) if naming([t], needles) or contact_id in t]
    # Only the tombstone, which holds the time of the erasure and nothing else.
    assert [(i[C.PK], i[C.SK]) for i in left] == [(contact_pk(contact_id), ERASED_SK)]
    assert set(left[0]) == {C.PK, C.SK, "erased_at", C.TTL_ATTRIBUTE}
    after = objects(s3)
    assert naming(list(after.values()), needles) == []
    assert set(before) - set(after) == named_before  # the rest is untouched (the other contact's delivery)
    assert any(k.startswith(DELIVERIES_PREFIX) for k in after) and all(
        not k.startswith(DEAD_LETTERS_PREFIX) or k not in named_before for k in after
    )
    # Execution histories cannot be deleted: they never held her address, phone or name (ids only).
    runs = histories(api)
    assert runs and naming(list(runs.values()), needles[1:]) == []
    # SQS: nothing about her waits on the intake queue; the dead-letter queue keeps the failed delivery's message
    # (14 days: erasure cannot delete SQS messages by content; the receipt says so).
    sqs = api.sqs
    queued = {}
    for url in sqs.list_queues()["QueueUrls"]:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
        queued[url.rsplit("/", 1)[-1]] = naming([m["Body"] for m in got], needles)
    assert queued.pop("stepwise-local-intake-dlq") and not any(queued.values())
    assert any("dead-letter queue" in line for line in receipt.as_dict()["not_reached"])
    # Nothing was sent to her after the erasure; the other contact's queued message was.
    assert sent_to(api) == [ERASED["email"], KEPT["email"], KEPT["email"]]
    # The list's index holds only the other contact now; the other contact is whole.
    members = sim.stack.dynamodb.query(
        TableName=TABLE,
        IndexName=C.GSI1,
        KeyConditionExpression="gsi1pk = :l",
        ExpressionAttributeValues={":l": {"S": "LIST#news"}},
    )["Items"]
    assert [m["gsi1sk"]["S"] for m in members] == [f"CONTACT#{kept}"]
    assert ops.find_contact(KEPT["email"]) == kept and ops.find_contact(ERASED["email"]) is None

    out = io.StringIO()
    print_receipt(receipt, out)
    assert not naming([out.getvalue()], needles[1:]) and "deleted" in out.getvalue()
