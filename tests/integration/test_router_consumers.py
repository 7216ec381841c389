"""The router Lambdas on moto with real executions: the intake queue, the table's stream, execution status, and
the dead-letter store with replay. Built on Simulation (table, machines, step runner in-process)."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from datetime import timedelta
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
from tests.integration.support import event, tagging, workflow

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
    with router_sim([BUYERS, THANKS, SIGN_UP, COURSE], monkeypatch) as s:
        yield s


@contextlib.contextmanager
def router_sim(workflows: list[Any], monkeypatch: pytest.MonkeyPatch, **extra_env: str) -> Iterator[Simulation]:
    """A Simulation (table, machines, step runner, local sender) and the router Lambda's environment over it."""
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
            **extra_env,
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


# ---- feedback and engagement checks through the deployed entry points --------------------------------------

BOUNCED = tagging("bounced", "email.bounced")
UNOPENED = tagging("unopened", "email.not_opened")
UNCLICKED = tagging("unclicked", "email.not_clicked")
CONFIGURATION_SET = "stepwise-test"
SCHEDULER_ENV = {  # what the deployed schedule handler is given (infra/constructs/trigger_router.py)
    C.ENV_SCHEDULE_GROUP: "stepwise-test",
    C.ENV_SCHEDULE_TARGET_ARN: "arn:aws:lambda:us-east-1:123456789012:function:router-schedule",
    C.ENV_SCHEDULER_ROLE_ARN: "arn:aws:iam::123456789012:role/scheduler",
}


@pytest.fixture
def templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from tests.integration.test_senders import TEMPLATES

    for name, text in TEMPLATES.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setenv(C.ENV_TEMPLATES_DIR, str(tmp_path))  # the Simulation's sender renders from here
    return tmp_path


def eventbridge(detail_type: str, source: str, detail: dict[str, Any], event_id: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": event_id,
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": "2026-11-30T09:05:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def ses(kind: str, message: dict[str, Any], event_id: str, **body: Any) -> dict[str, Any]:
    from tests.integration.test_senders import ses_event

    shape = ses_event(kind, message, **body)
    return eventbridge(shape["detail-type"], "aws.ses", shape["detail"], event_id)


def only_message(sim: Simulation, email: str) -> dict[str, Any]:
    (m,) = sim.store.messages(contact_id(sim, email))
    assert m["status"] == "sent"
    return m


def bounces_counted(sim: Simulation) -> int:
    from shared.store.messages import MessageStore

    return (
        MessageStore(TABLE, sim.stack.dynamodb).window(CONFIGURATION_SET, sim.now - timedelta(days=1)).get("bounces", 0)
    )


def test_an_ses_hard_bounce_suppresses_the_address_counts_once_and_routes_email_bounced(
    templates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.test_senders import SEND_ONE

    env = {C.ENV_SES_CONFIGURATION_SET: CONFIGURATION_SET}
    with router_sim([workflow(SEND_ONE), BOUNCED], monkeypatch, **env) as sim:
        sim.send(event("s1", "list.subscribed", {"list": "a"}, email="bo@example.com"))
        m = only_message(sim, "bo@example.com")
        bounce = ses("Bounce", m, "eb-bounce-1")
        assert router.feedback_handler(bounce, Context()) == {}  # type: ignore[arg-type]
        sim.settle()
        cid = contact_id(sim, "bo@example.com")
        suppressed = sim.store.get_item("SUPPRESS#email#bo@example.com", "SUPPRESS")
        assert suppressed is not None and (suppressed["reason"], suppressed["message_id"]) == (
            "bounce",
            m["message_id"],
        )
        assert "bounced" in sim.store.get(cid).tags  # email.bounced entered the workflow listening to it
        assert bounces_counted(sim) == 1
        # EventBridge delivers it again (a retry after a timeout): counted once, one run.
        router.feedback_handler(bounce, Context())  # type: ignore[arg-type]
        sim.settle()
        assert bounces_counted(sim) == 1
        assert len(runs(sim, "bounced")) == 1
        # The next email to that address is not sent, and the history says why.
        sim.send(event("s2", "list.subscribed", {"list": "b"}, email="bo@example.com"))
        assert [x["status"] for x in sim.store.messages(cid)] == ["sent", "skipped"]


def test_an_ses_click_through_the_feedback_handler_resumes_the_run_waiting_for_it(
    templates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.test_senders import WAIT_FOR_CLICK

    with router_sim([workflow(WAIT_FOR_CLICK)], monkeypatch) as sim:
        sim.send(event("s", "list.subscribed", {"list": "a"}, email="dee@example.com"))
        cid = contact_id(sim, "dee@example.com")
        m = only_message(sim, "dee@example.com")
        (run,) = runs(sim, "click-wait")
        assert run["status"] == "RUNNING" and "Clicked" not in sim.store.get(cid).tags
        router.feedback_handler(ses("Click", m, "eb-click-1", link="https://shop.example/x"), Context())  # type: ignore[arg-type]
        sim.settle()
        assert "Clicked" in sim.store.get(cid).tags
        assert runs(sim, "click-wait")[0]["status"] == "SUCCEEDED"
        assert sim.store.get_item(f"CONTACT#{cid}", f"MSG#{m['message_id']}")["clicked_at"]


def test_an_sms_failure_receipt_through_the_feedback_handler_starts_sms_not_delivered(
    templates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.workflow.model import load_workflow
    from tests.integration.test_senders import SMS_CAMPAIGN

    root = Path(__file__).resolve().parents[2]
    flows = [workflow(SMS_CAMPAIGN), load_workflow(root / "workflows" / "sms-not-delivered.yaml")]
    with router_sim(flows, monkeypatch) as sim:
        sim.send(event("s", "list.subscribed", {"list": "a"}, phone="+393471234567", email="eva@example.com"))
        assert sim.delivery is not None
        (sms,) = sim.delivery.sms.sent
        receipt = {
            "eventType": "TEXT_CARRIER_UNREACHABLE",
            "eventTimestamp": 1796029500000,
            "messageId": sms.provider_id,
            "messageStatus": "CARRIER_UNREACHABLE",
            "context": sms.request["Context"],
        }
        shape = eventbridge("Text Message Delivery Status Updated", "aws.sms-voice", receipt, "eb-sms-1")
        router.feedback_handler(shape, Context())  # type: ignore[arg-type]
        sim.settle()
        (run,) = runs(sim, "sms-not-delivered")
        assert run["contact_id"] == contact_id(sim, "eva@example.com")
        templates_sent = [(x["channel"], x["template"], x["status"]) for x in sim.store.messages(run["contact_id"])]
        assert templates_sent == [("sms", "welcome-sms", "sent"), ("email", "spring-sale-offer", "sent")]


def test_a_feedback_event_that_cannot_be_read_is_kept_and_not_retried(sim: Simulation) -> None:
    bad = eventbridge("Email Bounced", "aws.ses", "not an object", "eb-bad-1")  # type: ignore[arg-type]
    assert router.feedback_handler(bad, Context()) == {}  # type: ignore[arg-type]
    (letter,) = list_dead_letters(router.deps().archive)
    assert letter.source == "feedback" and letter.error.startswith("FeedbackError: detail")


def test_the_engagement_checks_kind_fires_not_opened_and_not_clicked_once_when_their_window_passed(
    templates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.test_senders import SEND_ONE

    with router_sim([workflow(SEND_ONE), UNOPENED, UNCLICKED], monkeypatch, **SCHEDULER_ENV) as sim:
        # Active from the start (in AWS from the machine's creation; moto's is ahead of the virtual clock here).
        for name in ("unopened", "unclicked"):
            sim.lifecycle.activate(name)
        for who in ("ivy", "jon"):
            sim.send(event(f"s-{who}", "list.subscribed", {"list": "a"}, email=f"{who}@example.com"))
        ivy, jon = contact_id(sim, "ivy@example.com"), contact_id(sim, "jon@example.com")
        # Jon clicks (the router notes clicked_at on the message); Ivy does nothing.
        m = only_message(sim, "jon@example.com")
        router.feedback_handler(ses("Click", m, "eb-click-j", link="https://shop.example/x"), Context())  # type: ignore[arg-type]
        sim.settle()
        kind = {"kind": "engagement_checks"}
        router.schedule_handler(kind, Context())  # type: ignore[arg-type]  # not due yet: nothing fires
        sim.settle()
        assert runs(sim, "unopened") == [] and runs(sim, "unclicked") == []
        checks = sim.store.query_prefix(f"CONTACT#{ivy}", "CHECK#")  # and the sender's provider-confirmation check
        assert sorted(c["type"] for c in checks) == ["email.not_clicked", "email.not_opened", "provider.confirm"]

        # Three days on (the checks' window), without the local settle that would take them itself.
        sim.stack.clock.advance_to(sim.now + timedelta(days=3, minutes=1))
        router.schedule_handler(kind, Context())  # type: ignore[arg-type]
        sim.stack.settle()
        assert sim.store.get(ivy).tags >= {"unopened", "unclicked"}
        assert "unopened" in sim.store.get(jon).tags and "unclicked" not in sim.store.get(jon).tags
        assert sim.store.query_prefix(f"CONTACT#{ivy}", "CHECK#") == []  # taken
        router.schedule_handler(kind, Context())  # type: ignore[arg-type]  # the next run: nothing again
        sim.stack.settle()
        assert len(runs(sim, "unopened")) == 2 and len(runs(sim, "unclicked")) == 1
