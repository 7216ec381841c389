"""`stepwise erase`: after it, no item of the table and no object of the archive names the contact; its running
execution is stopped; another contact is untouched; the receipt counts what went, without personal data."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import boto3

from shared import constants as C
from shared.store.archive import Archive, dead_letter_key, delivery_key
from shared.store.contacts import deserialise
from shared.store.operations import OperationsStore
from stepwise.ops.erase import erase, print_receipt
from stepwise.simulate import DEFAULT_START, LOCAL_BUCKET, TABLE, Simulation
from tests.integration.support import event, workflow

FLOW = """
name: keep-in-touch
triggers: [{event: list.subscribed}]
steps:
  - id: hello
    send_email: {template: welcome-email, subject: Hi}
  - id: code
    generate_coupon: {prefix: HI, percent_off: 10}
  - id: wait-for-order
    wait_until: {event: order.paid, timeout: 30d}
  - id: thanks
    add_tag: Buyer
"""

ERASED = {"email": "erase.me@example.com", "phone": "+447700900555", "external_id": "shopify:7039294554217"}
KEPT = {"email": "keep.me@example.com"}


def everything(sim: Simulation, s3: object) -> tuple[list[str], list[str]]:
    """Every item of the table and the text of every object of the bucket, as JSON strings."""
    items: list[str] = []
    kwargs: dict = {"TableName": TABLE}
    while True:
        page = sim.stack.dynamodb.scan(**kwargs)
        items += [json.dumps(deserialise(i), default=str).lower() for i in page["Items"]]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    bodies = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=LOCAL_BUCKET):  # type: ignore[attr-defined]
        for o in page.get("Contents", []):
            bodies.append(s3.get_object(Bucket=LOCAL_BUCKET, Key=o["Key"])["Body"].read().decode().lower())  # type: ignore[attr-defined]
    return items, bodies


def stopped(sim: Simulation, arn: str, timeout: float = 20) -> bool:
    """moto's interpreter stops an execution on its worker thread: its status turns ABORTED a moment later."""
    deadline = time.monotonic() + timeout
    while sim.stack.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return sim.stack.sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"


def test_erase_leaves_nothing_behind() -> None:
    with Simulation([workflow(FLOW)]) as sim:
        sim.send(event("e1", "list.subscribed", {"list": "news"}, **ERASED))
        sim.send(event("e2", "tag.added", {"tag": "VIP"}, **ERASED))
        sim.send(event("k1", "list.subscribed", {"list": "news"}, **KEPT))
        sim.advance(DEFAULT_START + timedelta(hours=1))
        s3 = boto3.client("s3", region_name=sim.stack.region)
        archive = Archive(LOCAL_BUCKET, s3)
        received = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
        # Deliveries as intake archives them: the raw body, and the normalised events of an accepted one.
        archive.put_delivery(
            delivery_key("shopify", "order-1", received),
            {
                "body": json.dumps({"email": "Erase.Me@example.com"}),
                "events": [{"contact": {"email": ERASED["email"]}}],
            },
        )
        archive.put_delivery(
            delivery_key("generic", "other-1", received), {"events": [{"contact": {"email": KEPT["email"]}}]}
        )
        archive.put_delivery(
            dead_letter_key("bad-1", received), {"record": {"body": json.dumps({"phone": ERASED["phone"]})}}
        )
        archive.put_delivery(delivery_key("generic", "joann", received), {"events": [{"email": "x" + ERASED["email"]}]})
        ops = OperationsStore(sim.store, sfn=sim.stack.sfn, s3=s3, bucket=LOCAL_BUCKET)
        contact_id = ops.find_contact(ERASED["email"])
        assert contact_id is not None
        enrol = sim.store.get_item(f"CONTACT#{contact_id}", "ENROLL#keep-in-touch")
        assert enrol is not None
        before, _ = everything(sim, s3)
        assert sum(contact_id in i for i in before) >= 8  # profile, list, history, message, wait, enrolment...

        dry = erase(ops, ERASED["phone"], dry_run=True)
        assert dry.items["profile"] == 1 and sim.store.get_item(f"CONTACT#{contact_id}", "PROFILE")

        receipt = erase(ops, ERASED["phone"])
        assert receipt.executions_stopped == 1
        assert stopped(sim, enrol["execution_arn"])
        assert receipt.items["identities"] == 3 and receipt.items["coupons"] == 1
        assert receipt.items["memberships"] == 1 and receipt.items["waits"] == 1
        assert receipt.archive_objects == 2  # the order delivery and the dead letter; not "xerase.me@..."

        items, bodies = everything(sim, s3)
        needles = [contact_id, *(v.lower() for v in ERASED.values())]
        assert [i for i in items if any(n in i for n in needles)] == []
        assert [b for b in bodies if any(f'"{n}"' in b or f'\\"{n}\\"' in b for n in needles)] == []
        # The list's index holds only the other contact now; the other contact is whole.
        members = sim.stack.dynamodb.query(
            TableName=TABLE,
            IndexName=C.GSI1,
            KeyConditionExpression="gsi1pk = :l",
            ExpressionAttributeValues={":l": {"S": "LIST#news"}},
        )["Items"]
        kept = ops.find_contact(KEPT["email"])
        assert [m["gsi1sk"]["S"] for m in members] == [f"CONTACT#{kept}"]
        assert len(bodies) == 2

        import io

        out = io.StringIO()
        print_receipt(receipt, out)
        assert ERASED["email"] not in out.getvalue() and "deleted" in out.getvalue()
        assert ops.find_contact(ERASED["email"]) is None
