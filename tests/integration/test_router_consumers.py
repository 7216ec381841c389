"""The router Lambdas on moto with real executions: the intake queue, the table's stream, execution status, and
the dead-letter store with replay. Built on Simulation (table, machines, step runner in-process)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.trigger_router import intake, router
from shared import constants as C
from shared.history import dump_entry_plans
from shared.runtime.inbound import dumps
from shared.runtime.replay import list_dead_letters, replay
from shared.runtime.workflows_file import dump_workflows
from shared.store.archive import Archive
from shared.workflow.compiler import entry_plans
from stepwise.simulate import TABLE, Simulation
from tests.integration.intake_support import (
    BUCKET,
    Context,
    create_resources,
    http_event,
    intake_env,
    shopify_delivery,
)
from tests.integration.support import workflow

MAX_RECEIVES = 3
BUYERS = workflow(
    """
name: buyers
triggers: [{event: order.paid}]
steps:
  - id: tag
    add_tag: buyer
"""
)
THANKS = workflow(
    """
name: thanks
triggers: [{event: tag.added, where: {tag: buyer}}]
steps:
  - id: mail
    send_email: {template: thanks}
"""
)
SIGN_UP = workflow(
    """
name: sign-up
triggers: [{event: form.submitted}]
steps:
  - id: join
    subscribe: {campaign: course}
"""
)
COURSE = workflow(
    """
name: course
steps:
  - id: lesson
    send_email: {template: lesson-1}
"""
)


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulation]:
    workflows = [BUYERS, THANKS, SIGN_UP, COURSE]
    with Simulation(workflows) as s, tempfile.TemporaryDirectory() as tmp:
        resources = create_resources(table=None)
        s.resources = resources  # type: ignore[attr-defined]
        wf_file, plans_file = Path(tmp) / C.WORKFLOWS_FILE, Path(tmp) / C.ENTRY_PLANS_FILE
        wf_file.write_bytes(dump_workflows(workflows))
        plans_file.write_bytes(dump_entry_plans(entry_plans(workflows)))
        env = {
            **intake_env(resources["queue_url"], table=TABLE),
            C.ENV_STATE_MACHINE_ARN_TEMPLATE: s.arn_template,
            C.ENV_WORKFLOWS_FILE: str(wf_file),
            C.ENV_ENTRY_PLANS: str(plans_file),
            C.ENV_MAX_RECEIVE_COUNT: str(MAX_RECEIVES),
        }
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        intake.reset()
        router.reset()
        s.stream = stream_reader(s)  # type: ignore[attr-defined]
        try:
            yield s
        finally:
            intake.reset()
            router.reset()


def stream_reader(sim: Simulation) -> Any:
    """New records of the table's stream since the last call, as a Lambda stream event (what AWS delivers)."""
    streams = sim.stack.dynamodbstreams
    arn = sim.stack.dynamodb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    position = [streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]]

    def read() -> dict[str, Any]:
        page = streams.get_records(ShardIterator=position[0], Limit=1000)
        position[0] = page["NextShardIterator"]
        records = [{**r, "eventSourceARN": arn} for r in page["Records"]]
        return json.loads(dumps({"Records": records}))

    return read


def sqs_event(sim: Simulation, *, receive_count: int | None = None) -> dict[str, Any]:
    """The queue's messages as the SQS event source mapping hands them to the router."""
    res = sim.resources  # type: ignore[attr-defined]
    got = res["sqs"].receive_message(QueueUrl=res["queue_url"], MaxNumberOfMessages=10, AttributeNames=["All"])
    records = []
    for m in got.get("Messages", []):
        attributes = dict(m["Attributes"])
        if receive_count is not None:
            attributes["ApproximateReceiveCount"] = str(receive_count)
        records.append(
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{res['queue_url'].rsplit('/', 1)[-1]}",
                "awsRegion": "us-east-1",
            }
        )
    return {"Records": records}


def deliver(sim: Simulation, *, email: str, event_id: str) -> dict[str, Any]:
    body, headers = shopify_delivery("orders.paid", email=email, event_id=event_id, at=sim.now)
    return intake.handler(http_event("POST", "/webhooks/shopify", body, headers), Context())  # type: ignore[arg-type]


def runs(sim: Simulation, wf: str) -> list[dict[str, Any]]:
    out = []
    for arn in sim.execution_arns(wf):
        d = sim.stack.sfn.describe_execution(executionArn=arn)
        out.append({"status": d["status"], "contact_id": json.loads(d["input"])["contact_id"], "arn": arn})
    return out


def contact_id(sim: Simulation, email: str) -> str:
    return next(c["id"] for c in sim.summary()["contacts"] if c.get("email") == email)


def test_a_shopify_order_enters_the_workflow_its_trigger_matches_through_queue_and_stream(sim: Simulation) -> None:
    assert deliver(sim, email="ann@example.com", event_id="e1")["statusCode"] == 202
    assert deliver(sim, email="ann@example.com", event_id="e1")["statusCode"] == 200  # redelivery: nothing queued
    batch = sqs_event(sim)
    assert len(batch["Records"]) == 1
    assert router.queue_handler(batch, Context()) == {"batchItemFailures": []}  # type: ignore[arg-type]
    sim.stack.settle()
    (run,) = runs(sim, "buyers")
    assert run["status"] == "SUCCEEDED" and run["contact_id"] == contact_id(sim, "ann@example.com")
    assert "buyer" in sim.store.get(run["contact_id"]).tags

    # The add_tag step's outbox item (tag.added) reaches the router through the table's stream.
    assert router.stream_handler(sim.stream(), Context()) == {"batchItemFailures": []}  # type: ignore[arg-type]
    sim.stack.settle()
    (thanks,) = runs(sim, "thanks")
    assert thanks["status"] == "SUCCEEDED" and thanks["contact_id"] == run["contact_id"]
    assert [m["template"] for m in sim.store.messages(run["contact_id"])] == ["thanks"]
    assert sim.store.scan_prefix("EVENT#") == []  # routed outbox items are gone

    # The same SQS batch again (a retry after a timeout): nothing starts twice.
    router.queue_handler(batch, Context())  # type: ignore[arg-type]
    sim.stack.settle()
    assert len(runs(sim, "buyers")) == 1 and len(runs(sim, "thanks")) == 1


def test_a_failing_record_is_reported_kept_on_its_last_receive_and_replayed(sim: Simulation) -> None:
    res = sim.resources  # type: ignore[attr-defined]
    archive = Archive(BUCKET, res["s3"])
    body, headers = shopify_delivery("orders.paid", email="bo@example.com", event_id="e2", at=sim.now)
    intake.handler(http_event("POST", "/webhooks/shopify", body, headers), Context())  # type: ignore[arg-type]
    (record,) = sqs_event(sim)["Records"]
    message = json.loads(record["body"])
    # A message whose events must be read from the archive (too large for SQS), which is not there (yet).
    broken = {**message, "events": None, "archive_key": "deliveries/missing.json"}
    ok = {**record, "messageId": "ok-1", "body": json.dumps({**message, "dedupe_key": "other"})}
    bad = {**record, "messageId": "bad-1", "body": json.dumps(broken)}

    early = {"Records": [{**bad, "attributes": {**bad["attributes"], "ApproximateReceiveCount": "1"}}]}
    assert router.queue_handler(early, Context()) == {"batchItemFailures": [{"itemIdentifier": "bad-1"}]}  # type: ignore[arg-type]
    assert list_dead_letters(archive) == []  # SQS will retry it: not a dead letter yet

    last = {**bad, "attributes": {**bad["attributes"], "ApproximateReceiveCount": str(MAX_RECEIVES)}}
    out = router.queue_handler({"Records": [ok, last]}, Context())  # type: ignore[arg-type]
    assert out == {"batchItemFailures": [{"itemIdentifier": "bad-1"}]}  # the good record is not retried
    (letter,) = list_dead_letters(archive)
    assert letter.source == "queue" and letter.id == "bad-1" and "deliveries/missing.json" in letter.error
    assert letter.attempts == MAX_RECEIVES
    sim.stack.settle()
    assert len(runs(sim, "buyers")) == 1  # from the good record

    # The archived delivery turns up (restored); replay re-runs the record and deletes the letter.
    archive.put_delivery("deliveries/missing.json", archive.get_json(message["archive_key"]) or {})
    d = router.deps()
    (result,) = replay(archive, d.router)
    assert result.ok and result.source == "queue"
    assert list_dead_letters(archive) == []
    sim.stack.settle()
    assert len(runs(sim, "buyers")) == 1  # the same event: the same execution, not a second run


def test_a_replay_that_fails_again_keeps_the_letter_with_its_new_error(sim: Simulation) -> None:
    archive = router.deps().archive
    archive.put_dead_letter("x1", "queue", {"body": "{not json"}, "first error", sim.now)
    (result,) = replay(archive, router.deps().router)
    assert not result.ok and result.error.startswith("JSONDecodeError")
    (letter,) = list_dead_letters(archive)
    assert letter.attempts == 2 and letter.error == result.error


def test_the_status_handler_completes_a_campaign(sim: Simulation) -> None:
    d = router.deps()
    from tests.integration.support import event

    d.router.handle(event("f1", "form.submitted", {"form": "join"}, email="cy@example.com"))
    sim.stack.settle()
    router.stream_handler(sim.stream(), Context())  # type: ignore[arg-type]
    sim.stack.settle()
    cid = contact_id(sim, "cy@example.com")
    (course,) = runs(sim, "course")
    assert course["status"] == "SUCCEEDED"
    assert "course" in sim.store.get(cid).campaigns
    desc = sim.stack.sfn.describe_execution(executionArn=course["arn"])
    status_change = {
        "version": "0",
        "id": "5b2bd9a8-0000-0000-0000-000000000001",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": "123456789012",
        "time": "2026-11-30T09:00:00Z",
        "region": "us-east-1",
        "resources": [course["arn"]],
        "detail": {
            "executionArn": course["arn"],
            "stateMachineArn": desc["stateMachineArn"],
            "name": desc["name"],
            "status": "SUCCEEDED",
            "startDate": 1796029200000,
            "stopDate": 1796029201000,
            "input": desc["input"],  # a JSON string, as EventBridge carries it
            "inputDetails": {"included": True},
            "output": None,
        },
    }
    router.status_handler(status_change, Context())  # type: ignore[arg-type]
    assert "course" not in sim.store.get(cid).campaigns
    router.status_handler(status_change, Context())  # type: ignore[arg-type]  # a repeat changes nothing
    assert "course" not in sim.store.get(cid).campaigns


def test_feedback_without_a_mapping_is_kept_as_a_dead_letter(sim: Simulation) -> None:
    import importlib.util

    if importlib.util.find_spec("shared.messaging.feedback") is not None:
        pytest.skip("the senders' feedback mapping exists: its own tests cover it")
    ses = {"id": "fb-1", "detail-type": "Email Bounced", "source": "aws.ses", "detail": {}}
    router.feedback_handler(ses, Context())  # type: ignore[arg-type]
    (letter,) = list_dead_letters(router.deps().archive)
    assert letter.source == "feedback" and "no feedback mapping" in letter.error


def test_the_schedule_handler_dispatches_by_kind_and_keeps_what_fails(
    sim: Simulation, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.runtime import schedules

    monkeypatch.setenv(C.ENV_SCHEDULE_GROUP, "stepwise-test")
    monkeypatch.setenv(C.ENV_SCHEDULE_TARGET_ARN, "arn:aws:lambda:us-east-1:123456789012:function:router-schedule")
    monkeypatch.setenv(C.ENV_SCHEDULER_ROLE_ARN, "arn:aws:iam::123456789012:role/scheduler")
    router.reset()
    seen: list[tuple[dict[str, Any], Any]] = []

    @schedules.register("router_test_kind")
    def record(payload: dict[str, Any], ctx: schedules.ScheduleContext) -> None:
        seen.append((payload, ctx.router))

    router.schedule_handler({"kind": "router_test_kind", "key": "k1"}, Context())  # type: ignore[arg-type]
    assert seen == [({"kind": "router_test_kind", "key": "k1"}, router.deps().router)]

    with pytest.raises(schedules.UnknownScheduleKind):
        router.schedule_handler({"kind": "no_such_kind"}, Context())  # type: ignore[arg-type]
    (letter,) = list_dead_letters(router.deps().archive)
    assert letter.source == "schedule" and letter.record == {"payload": {"kind": "no_such_kind"}}


def test_the_router_binds_the_broadcaster_where_it_is_given_the_broadcast_machine(
    sim: Simulation, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.runtime import broadcast

    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:stepwise-test-broadcast"
    router.reset()
    router.deps()
    with pytest.raises(broadcast.BroadcastNotConfigured):
        broadcast.required()  # not given the machine: a fired broadcast fails loudly, naming what is missing
    monkeypatch.setenv(C.ENV_BROADCAST_MACHINE_ARN, machine)
    router.reset()
    router.deps()
    assert broadcast.required().store.machine_arn == machine
    assert broadcast.required().router is router.deps().router
