"""The delivery path on moto: every queued message leaves once, consented, rendered, and its feedback flows back."""

from __future__ import annotations

import email
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from shared import constants as C
from shared.messaging import unsubscribe
from shared.messaging.feedback import absorb, to_events
from shared.store.contacts import ContactStore, create_table, serialise
from shared.store.messages import MessageStore
from shared.workflow.model import load_workflow
from stepwise.outbox import LOCAL_UNSUBSCRIBE_KEY
from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import event, history, workflow

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = {
    "cart-reminder.html": "---\nsubject: Your cart is waiting, {{ contact.first_name | default('friend') }}\n---\n"
    "<p>Hi {{ contact.first_name | default('there') }}, your cart is waiting.</p>",
    "cart-reminder-2.html": "---\nsubject: Last call\n---\n<p>Still thinking, {{ contact.email }}?</p>",
    "spring-sale-offer.html": "---\nsubject: Spring sale\n---\n<p>20% off this spring.</p>",
    "welcome-sms.sms.txt": "Welcome {{ contact.first_name | default('') }}! Reply STOP to opt out.",
    "welcome-email.html": "---\nsubject: Welcome\n---\n<p>Welcome aboard.</p>",
    "clicky.html": '---\nsubject: Click me\n---\n<p><a href="https://shop.example/x">x</a></p>',
}


@pytest.fixture
def templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, text in TEMPLATES.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setenv(C.ENV_TEMPLATES_DIR, str(tmp_path))
    return tmp_path


def ses_sent(sim_or_region: Any = "us-east-1") -> list[Any]:
    return list(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)


def mime(raw: Any) -> email.message.Message:
    return email.message_from_string(raw.raw_data)


def body_of(msg: email.message.Message, kind: str) -> str:
    for part in msg.walk():
        if part.get_content_type() == kind:
            return part.get_payload(decode=True).decode()  # type: ignore[union-attr]
    return ""


CART = {"checkout_id": "k1", "cart_value": 80, "idle_minutes": 15, "url": "https://shop.example/cart/k1"}


def test_worked_example_arrives_rendered_with_both_unsubscribe_headers_and_one_click_unsubscribes(
    templates: Path,
) -> None:
    wf = load_workflow(ROOT / "workflows" / "abandoned-checkout.yaml")
    with Simulation([wf]) as sim:
        sim.send(event("co-1", "checkout.abandoned", CART, email="ana@example.com", first_name="Ana"))
        (sent,) = ses_sent()
        msg = mime(sent)
        assert msg["Subject"] == "Your cart is waiting, Ana"
        assert "Hi Ana, your cart is waiting." in body_of(msg, "text/html")
        assert "Hi Ana, your cart is waiting." in body_of(msg, "text/plain")  # generated from the HTML
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        https, mailto = re.findall(r"<([^>]+)>", msg["List-Unsubscribe"])
        assert https.startswith("http://127.0.0.1:8080/unsubscribe/") and mailto.startswith("mailto:")
        assert https in body_of(msg, "text/html")  # the link is in the body too
        assert msg["Feedback-ID"].endswith(":stepwise")
        cid = sim.contacts()[0]
        (item,) = sim.store.messages(cid)
        # The local SES's Send event (through the feedback code) attached SES's id; email.sent was routed once.
        assert item["status"] == "sent" and item["provider_id"] == sent.id
        assert [a["type"] for a in sim.store.activity(cid)].count("email.sent") == 1
        import io

        from shared.store.operations import OperationsStore
        from stepwise.ops.history import contact_history, print_report

        report = contact_history(OperationsStore(sim.store), "ana@example.com")
        assert [m["provider_id"] for m in report["messages"]] == [sent.id]
        text = io.StringIO()
        print_report(report, text)
        assert f"provider id {sent.id}" in text.getvalue()

        # The one-click POST a mailbox provider makes: consent withdrawn at once; the next email is not sent.
        token = https.rsplit("/", 1)[1]
        resp = unsubscribe.handle(sim.store, LOCAL_UNSUBSCRIBE_KEY, token, "POST", sim.now)
        assert resp.status == 200 and resp.event is not None
        sim.send(resp.event)
        sim.advance(DEFAULT_START + timedelta(days=1, minutes=1))
        assert len(ses_sent()) == 1
        why = {(h["step"], h["outcome"]): h["why"] for h in history(sim, email="ana@example.com")}
        assert why[("remind-again", "skipped")] == "contact withdrew email consent"


def test_get_on_the_link_only_asks_and_a_forged_token_is_refused(templates: Path) -> None:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(ddb, "t")
        store = ContactStore("t", ddb)
        cid = store.upsert(event("e", "x.y", {}, email="a@example.com").contact)
        token = unsubscribe.make_token(b"k" * 32, cid, "m1")
        assert unsubscribe.handle(store, b"k" * 32, token, "GET", DEFAULT_START).event is None
        assert store.get(cid).consent == {}
        assert unsubscribe.handle(store, b"other-key", token, "POST", DEFAULT_START).status == 400
        assert store.get(cid).consent == {}


SEND_ONE = """
name: send-one
triggers: [{event: list.subscribed}]
reentry: always
steps:
  - id: hello
    send_email: {template: welcome-email}
"""


def test_suppressed_bounced_and_complained_addresses_receive_nothing_and_the_history_says_why(
    templates: Path,
) -> None:
    with Simulation([workflow(SEND_ONE)]) as sim:
        # A first send to each, then a hard bounce for one and a complaint for the other (SES's EventBridge shape).
        for who in ("bo", "cy"):
            sim.send(event(f"s-{who}", "list.subscribed", {"list": "a"}, email=f"{who}@example.com"))
        assert len(ses_sent()) == 2
        for who, kind in (("bo", "Bounce"), ("cy", "Complaint")):
            cid = next(c for c in sim.contacts() if sim.store.get(c).email == f"{who}@example.com")
            (m,) = sim.store.messages(cid)
            for ev in absorb(
                MessageStore("stepwise-local", sim.stack.dynamodb), to_events(ses_event(kind, m)), sim.now
            ):
                sim.send(ev)
        for who in ("bo", "cy"):
            sim.send(event(f"s2-{who}", "list.subscribed", {"list": "b"}, email=f"{who}@example.com"))
        assert len(ses_sent()) == 2
        outcomes = {
            who: [(h["outcome"], h["why"]) for h in history(sim, email=f"{who}@example.com")] for who in ("bo", "cy")
        }
        assert ("skipped", f"address suppressed after a bounce on {DEFAULT_START:%Y-%m-%d}") in outcomes["bo"]
        assert ("skipped", f"address suppressed after a complaint on {DEFAULT_START:%Y-%m-%d}") in outcomes["cy"]


def ses_event(kind: str, msg: dict[str, Any], **body: Any) -> dict[str, Any]:
    detail_type = {"Bounce": "Email Bounced", "Complaint": "Email Complaint Received", "Click": "Email Clicked"}[kind]
    inner = {"timestamp": "2026-11-30T09:05:00.000Z", **body}
    if kind == "Bounce":
        inner |= {"bounceType": "Permanent", "bounceSubType": "General"}
    return {
        "source": "aws.ses",
        "detail-type": detail_type,
        "detail": {
            "eventType": kind,
            "mail": {
                "messageId": msg["provider_id"],
                "timestamp": "2026-11-30T09:00:00.000Z",
                "tags": {"message_id": [msg["message_id"]], "contact_id": [str(msg["pk"]).removeprefix("CONTACT#")]},
            },
            kind[0].lower() + kind[1:]: inner,
        },
    }


WAIT_FOR_CLICK = """
name: click-wait
triggers: [{event: list.subscribed}]
steps:
  - id: mail
    send_email: {template: clicky}
  - id: until-click
    wait_until: {event: email.clicked, where: {step: mail}, timeout: 3d}
  - id: thanks
    add_tag: Clicked
"""


def test_an_ses_click_event_resumes_the_workflow_waiting_for_that_click(templates: Path) -> None:
    with Simulation([workflow(WAIT_FOR_CLICK)]) as sim:
        sim.send(event("s", "list.subscribed", {"list": "a"}, email="dee@example.com"))
        cid = sim.contacts()[0]
        (m,) = sim.store.messages(cid)
        (click,) = to_events(ses_event("Click", m, link="https://shop.example/x"))
        sim.send(click)
        assert "Clicked" in sim.store.get(cid).tags
        assert sim.store.get_item(f"CONTACT#{cid}", f"MSG#{m['message_id']}")["clicked_at"]


SMS_CAMPAIGN = """
name: spring-sms
triggers: [{event: list.subscribed}]
steps:
  - id: text
    send_sms: {template: welcome-sms, campaign: spring-sale}
"""


def test_an_sms_failure_receipt_starts_the_sms_not_delivered_workflow(templates: Path) -> None:
    wf = load_workflow(ROOT / "workflows" / "sms-not-delivered.yaml")
    with Simulation([workflow(SMS_CAMPAIGN), wf]) as sim:
        sim.send(event("s", "list.subscribed", {"list": "a"}, phone="+393471234567", email="eva@example.com"))
        (sms,) = sim.delivery.sms.sent
        assert sms.request["MessageType"] == "PROMOTIONAL" and "Reply STOP" in sms.request["MessageBody"]
        # The local provider's TEXT_QUEUED receipt attached its id and gave sms.sent, once.
        eva = sim.contacts()[0]
        (item,) = sim.store.messages(eva)
        assert (item["status"], item["provider_id"]) == ("sent", sms.provider_id)
        assert [a["type"] for a in sim.store.activity(eva)].count("sms.sent") == 1
        check = sim.store.get_item(f"CONTACT#{eva}", f"CHECK#{item['message_id']}#provider.confirm")
        assert check["after"] == "73h"  # a carrier's receipt may take 72 hours: only then is a text unconfirmed
        receipt = {
            "eventType": "TEXT_CARRIER_UNREACHABLE",
            "eventTimestamp": 1796029500000,
            "messageId": sms.provider_id,
            "messageStatus": "CARRIER_UNREACHABLE",
            "context": sms.request["Context"],
        }
        (failed,) = to_events({"Records": [{"Sns": {"Message": __import__("json").dumps(receipt)}}]})
        sim.send(failed)
        assert len(ses_sent()) == 1
        assert mime(ses_sent()[0])["Subject"] == "Spring sale"


def test_stop_and_consent_withdrawn_contacts_receive_nothing(templates: Path) -> None:
    with Simulation([workflow(SMS_CAMPAIGN), workflow(SEND_ONE)]) as sim:
        sim.send(event("o", "sms.opted_out", {"keyword": "STOP"}, phone="+393470000001", email="fay@example.com"))
        sim.send(event("w", "consent.withdrawn", {"channel": "email"}, email="fay@example.com"))
        sim.send(event("s", "list.subscribed", {"list": "a"}, email="fay@example.com"))
        assert sim.delivery.sms.sent == [] and ses_sent() == []
        whys = {h["why"] for h in history(sim, email="fay@example.com")}
        assert {"contact withdrew SMS consent", "contact withdrew email consent"} <= whys


# ---- exactly once: the handler against moto, fed stream records ------------------------------------------


@pytest.fixture
def lambda_env(templates: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    from functions.senders import handler as sender_handler

    with mock_aws():
        region = "us-east-1"
        monkeypatch.setenv("AWS_DEFAULT_REGION", region)
        ddb = boto3.client("dynamodb", region_name=region)
        create_table(ddb, "t")
        boto3.client("sesv2", region_name=region).create_email_identity(EmailIdentity="hello@example.com")
        boto3.client("ssm", region_name=region).put_parameter(
            Name="/stepwise/unsubscribe-key", Value="k" * 32, Type="SecureString"
        )
        for k, v in {
            C.ENV_TABLE_NAME: "t",
            C.ENV_EMAIL_FROM: "hello@example.com",
            C.ENV_SES_CONFIGURATION_SET: "cs",
            C.ENV_UNSUBSCRIBE_URL: "https://api.example.com",
            C.ENV_UNSUBSCRIBE_KEY_PARAMETER: "/stepwise/unsubscribe-key",
            C.ENV_TEMPLATES_DIR: str(templates),
        }.items():
            monkeypatch.setenv(k, v)
        sender_handler.reset()
        store = ContactStore("t", ddb)
        cid = store.upsert(event("e", "x.y", {}, email="gil@example.com").contact)
        item = {
            "pk": f"CONTACT#{cid}",
            "sk": "MSG#m1",
            "message_id": "m1",
            "channel": "email",
            "workflow": "w",
            "step": "s",
            "template": "welcome-email",
            "to": "gil@example.com",
            "status": "queued",
            "at": DEFAULT_START.isoformat(),
        }
        store.put_item(item)
        record = {
            "eventID": "1",
            "eventName": "INSERT",
            "eventSource": "aws:dynamodb",
            "dynamodb": {"NewImage": serialise(item), "SequenceNumber": "100"},
        }
        yield {"handler": sender_handler, "record": record, "store": store, "cid": cid, "ddb": ddb}
        sender_handler.reset()


FAILED = "failed"  # the whole batch failed: the invocation raised, so the stream retries it


def invoke(env: dict[str, Any]) -> dict[str, Any] | str:
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    try:
        return env["handler"].handler({"Records": [env["record"]]}, LambdaCtx())
    except BatchProcessingError:
        return FAILED


class LambdaCtx:
    function_name = "sender"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:sender"
    aws_request_id = "req"


def message(env: dict[str, Any], mid: str = "m1") -> dict[str, Any]:
    return env["store"].get_item(f"CONTACT#{env['cid']}", f"MSG#{mid}")


def ses_send_event(env: dict[str, Any], provider_id: str, mid: str = "m1") -> dict[str, Any]:
    """SES's "Email Sent" event on EventBridge (configuration set event destination), tagged with our ids."""
    return {
        "source": "aws.ses",
        "detail-type": "Email Sent",
        "detail": {
            "eventType": "Send",
            "mail": {
                "messageId": provider_id,
                "timestamp": "2026-11-30T09:00:01Z",
                "tags": {"message_id": [mid], "contact_id": [env["cid"]], "ses:configuration-set": ["cs"]},
            },
            "send": {},
        },
    }


def test_two_invocations_at_once_send_once(lambda_env: dict[str, Any]) -> None:
    ses = lambda_env["handler"].sender().channels["email"].client
    inner: list[dict[str, Any] | str] = []

    def second_invocation_during_the_first_send(**_: Any) -> None:
        if not inner:  # while the first has claimed the message and is inside the SES call
            t = threading.Thread(target=lambda: inner.append(invoke(lambda_env)))
            t.start()
            t.join()

    ses.meta.events.register("before-call.sesv2.SendEmail", second_invocation_during_the_first_send)
    first = invoke(lambda_env)
    assert first == {"batchItemFailures": []}
    assert inner == [{"batchItemFailures": []}]  # found it claimed (marked sent): acknowledged, never sent
    assert len(ses_sent()) == 1
    assert invoke(lambda_env) == {"batchItemFailures": []}  # a third delivery of the record finds it sent
    assert len(ses_sent()) == 1
    msg = message(lambda_env)
    assert msg["status"] == "sent" and msg["attempts"] == 1 and "provider_id" not in msg
    # SES's Send event attaches its message id and is routed as email.sent, once (a retry of it gives nothing).
    messages = MessageStore("t", lambda_env["ddb"])
    (sent,) = absorb(messages, to_events(ses_send_event(lambda_env, ses_sent()[0].id)), DEFAULT_START)
    assert (sent.type, sent.id, sent.data["provider_id"]) == ("email.sent", "m1:sent", ses_sent()[0].id)
    assert sent.data["workflow"] == "w" and sent.data["step"] == "s"
    assert absorb(messages, to_events(ses_send_event(lambda_env, ses_sent()[0].id)), DEFAULT_START) == []
    assert message(lambda_env)["provider_id"] == ses_sent()[0].id


def test_a_sender_dying_after_ses_accepted_is_not_resent_and_ses_confirms_it(lambda_env: dict[str, Any]) -> None:
    ses = lambda_env["handler"].sender().channels["email"].client

    def die_after_the_call(**_: Any) -> None:
        raise TimeoutError("Lambda timed out as SES answered")

    ses.meta.events.register("after-call.sesv2.SendEmail", die_after_the_call)
    assert invoke(lambda_env) == FAILED  # the attempt died after SES accepted the email
    ses.meta.events.unregister("after-call.sesv2.SendEmail", die_after_the_call)
    assert len(ses_sent()) == 1
    assert invoke(lambda_env) == {"batchItemFailures": []}  # the stream's retry: already marked sent, not resent
    assert len(ses_sent()) == 1
    routed = absorb(
        MessageStore("t", lambda_env["ddb"]), to_events(ses_send_event(lambda_env, ses_sent()[0].id)), DEFAULT_START
    )
    assert [e.type for e in routed] == ["email.sent"]
    msg = message(lambda_env)
    assert (msg["status"], msg["provider_id"], msg["attempts"]) == ("sent", ses_sent()[0].id, 1)


def test_a_sender_retried_after_a_timeout_before_the_call_does_not_send_and_says_so(
    lambda_env: dict[str, Any],
) -> None:
    from shared import clock
    from shared.messaging.feedback import engagement_events

    ses = lambda_env["handler"].sender().channels["email"].client

    def die_before_the_call(**_: Any) -> None:
        raise TimeoutError("Lambda timed out before SES was called")

    ses.meta.events.register("before-call.sesv2.SendEmail", die_before_the_call)
    assert invoke(lambda_env) == FAILED
    ses.meta.events.unregister("before-call.sesv2.SendEmail", die_before_the_call)
    assert invoke(lambda_env) == {"batchItemFailures": []}  # the retry finds it claimed: at most once
    assert ses_sent() == []
    messages = MessageStore("t", lambda_env["ddb"])
    assert engagement_events(messages, clock.now() + timedelta(minutes=14)) == []
    assert message(lambda_env)["status"] == "sent"  # within the confirmation window: nothing decided yet
    assert engagement_events(messages, clock.now() + timedelta(minutes=16)) == []  # the check gives no event
    msg = message(lambda_env)
    assert msg["status"] == "unconfirmed" and "provider never confirmed it within 15m" in msg["reason"]
    hist = lambda_env["store"].get_item(f"CONTACT#{lambda_env['cid']}", "HIST#MSG#m1#unconfirmed")
    assert hist["outcome"] == "unconfirmed" and hist["why"] == msg["reason"]
    assert invoke(lambda_env) == {"batchItemFailures": []} and ses_sent() == []  # still never resent


def test_a_read_timeout_at_ses_is_not_retried_and_is_marked_unconfirmed(lambda_env: dict[str, Any]) -> None:
    from botocore.exceptions import ReadTimeoutError

    ses = lambda_env["handler"].sender().channels["email"].client
    calls: list[int] = []

    def no_answer(event_name: str, **_: Any) -> None:  # after moto's before-send took the request: SES has it
        if event_name.endswith("SendEmail"):
            calls.append(1)
            raise ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com")

    ses.meta.events.register_last("before-send", no_answer)
    assert invoke(lambda_env) == {"batchItemFailures": []}
    # botocore did not retry it (the sender's provider clients never retry: a retry here would send it twice).
    assert calls == [1] and len(ses_sent()) == 1
    msg = message(lambda_env)
    assert msg["status"] == "unconfirmed" and "ReadTimeoutError" in msg["reason"]
    assert invoke(lambda_env) == {"batchItemFailures": []} and len(ses_sent()) == 1
    # SES's Send event turns it to sent with its id.
    absorb(MessageStore("t", lambda_env["ddb"]), to_events(ses_send_event(lambda_env, ses_sent()[0].id)), DEFAULT_START)
    assert message(lambda_env)["status"] == "sent" and "reason" not in message(lambda_env)


def test_a_throttled_send_gives_its_claim_back_and_the_retry_sends_once(lambda_env: dict[str, Any]) -> None:
    from botocore.exceptions import ClientError

    ses = lambda_env["handler"].sender().channels["email"].client
    calls: list[int] = []

    def throttle_once(**_: Any) -> None:
        if not calls:
            calls.append(1)
            raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "slow down"}}, "SendEmail")

    ses.meta.events.register("before-call.sesv2.SendEmail", throttle_once)
    assert invoke(lambda_env) == FAILED
    after_throttle = message(lambda_env)
    assert after_throttle["status"] == "queued" and after_throttle["last_error"] == "TooManyRequestsException"
    checks = lambda_env["store"].get_item(f"CONTACT#{lambda_env['cid']}", "CHECK#m1#provider.confirm")
    assert checks is None  # the claim's checks and counter were taken back with it
    assert invoke(lambda_env) == {"batchItemFailures": []}
    assert len(ses_sent()) == 1
    assert message(lambda_env)["attempts"] == 2
    (count,) = [
        i
        for i in MessageStore("t", lambda_env["ddb"]).window("cs", DEFAULT_START - timedelta(days=30)).items()
        if i[0] == "sends"
    ]
    assert count == ("sends", 1)  # counted once: the given-back claim's count was undone


OPEN_OR_NOT = """
name: open-or-not
triggers: [{event: list.subscribed}]
steps:
  - id: mail
    send_email: {template: welcome-email}
"""
NUDGE = """
name: nudge
triggers: [{event: email.not_opened, where: {workflow: open-or-not}}]
steps:
  - id: tag
    add_tag: NotOpened
"""


def test_email_not_opened_fires_after_its_window_and_not_for_an_opened_email(templates: Path) -> None:
    with Simulation([workflow(OPEN_OR_NOT), workflow(NUDGE)]) as sim:
        for who in ("hal", "ivy"):
            sim.send(event(f"s-{who}", "list.subscribed", {"list": "a"}, email=f"{who}@example.com"))
        ivy = next(c for c in sim.contacts() if sim.store.get(c).email == "ivy@example.com")
        (m,) = sim.store.messages(ivy)
        (opened,) = to_events(
            {
                "source": "aws.ses",
                "detail": {
                    "eventType": "Open",
                    "mail": {
                        "messageId": m["provider_id"],
                        "tags": {"message_id": [m["message_id"]], "contact_id": [ivy]},
                    },
                    "open": {"timestamp": "2026-11-30T12:00:00Z"},
                },
            }
        )
        sim.send(opened)
        sim.advance(DEFAULT_START + timedelta(days=2, hours=23))
        assert all("NotOpened" not in sim.store.get(c).tags for c in sim.contacts())
        sim.advance(DEFAULT_START + timedelta(days=3, minutes=1))
        tagged = {sim.store.get(c).email for c in sim.contacts() if "NotOpened" in sim.store.get(c).tags}
        assert tagged == {"hal@example.com"}
        hal = next(c for c in sim.contacts() if sim.store.get(c).email == "hal@example.com")
        (act,) = [a for a in sim.store.activity(hal) if a["type"] == "email.not_opened"]
        assert act["data"]["after"] == "3d" and act["data"]["workflow"] == "open-or-not"


def test_the_reputation_guard_pauses_marketing_holds_it_and_resume_sends_it(lambda_env: dict[str, Any]) -> None:
    from shared import clock
    from shared.messaging.reputation import ReputationGuard

    messages = MessageStore("t", lambda_env["ddb"])
    alerts: list[tuple[str, str]] = []
    rates: list[tuple[str, float]] = []
    guard = ReputationGuard(
        messages,
        "cs",
        alert=lambda s, t: alerts.append((s, t)),
        metric=lambda n, v, cs: rates.append((n, v)),
        min_sends=100,
    )
    now = clock.now()
    messages.add_counts("cs", now, {"sends": 1000}, timedelta(days=8))
    for _ in range(3):
        assert not guard.record("complaints", now).paused_now  # 0.3% is the limit, not over it
    verdict = guard.record("complaints", now)
    assert verdict.paused_now and "complaint rate 0.40% over 0.3%" in verdict.why
    assert guard.record("complaints", now).paused_now is False  # already paused: one alert
    assert len(alerts) == 1 and ("ComplaintRate", 0.004) in rates

    assert invoke(lambda_env) == {"batchItemFailures": []}  # marketing: held, not sent, not lost
    store, cid = lambda_env["store"], lambda_env["cid"]
    assert store.get_item(f"CONTACT#{cid}", "MSG#m1")["status"] == "held" and ses_sent() == []
    # A transactional message still goes.
    tx = {
        **store.get_item(f"CONTACT#{cid}", "MSG#m1"),
        "sk": "MSG#t1",
        "message_id": "t1",
        "status": "queued",
        "transactional": True,
    }
    store.put_item(tx)
    lambda_env["record"] = {**lambda_env["record"], "dynamodb": {"NewImage": serialise(tx), "SequenceNumber": "101"}}
    assert invoke(lambda_env) == {"batchItemFailures": []}
    assert len(ses_sent()) == 1 and "List-Unsubscribe" not in mime(ses_sent()[0])

    assert guard.resume(clock.now(), by="ops") == 1
    held = store.get_item(f"CONTACT#{cid}", "MSG#m1")
    old = {**held, "status": "held"}
    modify = {
        "eventID": "3",
        "eventName": "MODIFY",
        "dynamodb": {"NewImage": serialise(held), "OldImage": serialise(old), "SequenceNumber": "102"},
    }
    lambda_env["record"] = modify
    assert invoke(lambda_env) == {"batchItemFailures": []}
    assert len(ses_sent()) == 2 and store.get_item(f"CONTACT#{cid}", "MSG#m1")["status"] == "sent"


def test_transactional_email_ignores_withdrawn_consent_but_not_a_hard_bounce(lambda_env: dict[str, Any]) -> None:
    from shared import clock

    store, cid = lambda_env["store"], lambda_env["cid"]
    store.apply_event(cid, "consent.withdrawn", {"channel": "email"}, clock.now())
    item = store.get_item(f"CONTACT#{cid}", "MSG#m1")
    store.put_item({**item, "transactional": True})
    lambda_env["record"]["dynamodb"]["NewImage"] = serialise({**item, "transactional": True})
    assert invoke(lambda_env) == {"batchItemFailures": []}
    assert len(ses_sent()) == 1
    MessageStore("t", lambda_env["ddb"]).suppress("email", "gil@example.com", "bounce", clock.now(), "m1")
    again = {**item, "sk": "MSG#m2", "message_id": "m2", "transactional": True}
    store.put_item(again)
    lambda_env["record"] = {**lambda_env["record"], "dynamodb": {"NewImage": serialise(again), "SequenceNumber": "2"}}
    assert invoke(lambda_env) == {"batchItemFailures": []}
    assert len(ses_sent()) == 1
    assert store.get_item(f"CONTACT#{cid}", "MSG#m2")["reason"].startswith("address suppressed after a bounce")


def test_coupon_used_is_matched_once_and_unknown_or_expired_codes_are_marked(lambda_env: dict[str, Any]) -> None:
    from shared.messaging.feedback import coupon_used

    store, cid = lambda_env["store"], lambda_env["cid"]
    store.put_item(
        {
            "pk": "COUPON#CART-AB12",
            "sk": "COUPON",
            "code": "CART-AB12",
            "contact_id": cid,
            "valid_until": (DEFAULT_START + timedelta(days=7)).isoformat(),
        }
    )
    store.put_item(
        {
            "pk": "COUPON#OLD-1",
            "sk": "COUPON",
            "code": "OLD-1",
            "contact_id": cid,
            "valid_until": (DEFAULT_START - timedelta(days=1)).isoformat(),
        }
    )
    messages = MessageStore("t", lambda_env["ddb"])

    def used(code: str, order: str) -> str:
        ev = event(f"o-{order}", "coupon.used", {"coupon": code, "order_id": order}, contact_id=cid)
        return coupon_used(messages, ev, DEFAULT_START).data["coupon_status"]

    assert [used("CART-AB12", "1"), used("CART-AB12", "1"), used("CART-AB12", "2")] == ["used", "used", "already_used"]
    assert used("NOPE", "3") == "unknown" and used("OLD-1", "4") == "expired"
    assert store.get_item("COUPON#CART-AB12", "COUPON")["used_order"] == "1"


def test_the_intake_serves_one_click_unsubscribe_and_enqueues_email_unsubscribed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    from functions.trigger_router import intake
    from tests.integration.intake_support import TABLE, Context, create_resources, http_event, intake_env

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        res = create_resources()
        for k, v in intake_env(res["queue_url"]).items():
            monkeypatch.setenv(k, v)
        res["ssm"].put_parameter(Name="/stepwise/test/unsubscribe", Value="u" * 32, Type="SecureString")
        monkeypatch.setenv(C.ENV_UNSUBSCRIBE_KEY_PARAMETER, "/stepwise/test/unsubscribe")
        intake.reset()
        store = ContactStore(TABLE, res["dynamodb"])
        cid = store.upsert(event("e", "x.y", {}, email="jo@example.com").contact)
        token = unsubscribe.make_token(b"u" * 32, cid, "m9")

        page = intake.handler(http_event("GET", f"/unsubscribe/{token}"), Context())  # type: ignore[arg-type]
        assert page["statusCode"] == 200 and "<form" in page["body"] and store.get(cid).consent == {}
        body = "List-Unsubscribe=One-Click"
        headers = {"content-type": "application/x-www-form-urlencoded"}
        for _ in range(2):  # the provider may retry: consent stays withdrawn, one event enqueued
            done = intake.handler(http_event("POST", f"/unsubscribe/{token}", body, headers), Context())  # type: ignore[arg-type]
            assert done["statusCode"] == 200
        assert store.get(cid).consent == {"email": False}
        got = res["sqs"].receive_message(QueueUrl=res["queue_url"], MaxNumberOfMessages=10)["Messages"]
        (msg,) = [json.loads(m["Body"]) for m in got]
        assert token not in json.dumps(msg)
        bad = intake.handler(http_event("POST", f"/unsubscribe/{token[:-2]}xx", body, headers), Context())  # type: ignore[arg-type]
        assert bad["statusCode"] == 400
        intake.reset()


def test_stepwise_outbox_lists_what_the_run_sent_and_leaves_no_setting_behind(
    templates: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from stepwise.cli import main

    monkeypatch.delenv(C.ENV_TEMPLATES_DIR)
    events = tmp_path / "events.jsonl"
    line = {
        "at": "+0s",
        "event": {
            "id": "co-9",
            "type": "checkout.abandoned",
            "data": CART,
            "contact": {"email": "kit@example.com", "first_name": "Kit"},
        },
    }
    events.write_text(json.dumps(line) + "\n")
    wf = str(ROOT / "workflows" / "abandoned-checkout.yaml")
    assert main(["outbox", wf, "--events", str(events), "--templates", str(templates), "--json"]) == 0
    row, second = [json.loads(x) for x in capsys.readouterr().out.splitlines()]  # the reminder, a day later the next
    assert (row["template"], second["template"]) == ("cart-reminder", "cart-reminder-2")
    assert row["to"] == "kit@example.com" and row["status"] == "sent" and row["subject"] == "Your cart is waiting, Kit"
    assert row["provider_id"] and row["provider_id"] != second["provider_id"]  # SES's ids, from its Send events
    assert row["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Hi Kit, your cart is waiting." in row["body"]
    import os

    assert C.ENV_TEMPLATES_DIR not in os.environ


def test_the_example_cart_reminder_lists_the_abandoned_carts_items_and_links_its_checkout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The triggering event travels on the message, so the sender renders the cart the contact left."""
    monkeypatch.setenv(C.ENV_TEMPLATES_DIR, str(ROOT / "templates"))
    cart = {
        **CART,
        "currency": "EUR",
        "products": [
            {"product_id": "p1", "name": "Linen shirt", "quantity": 2, "price": 35},
            {"product_id": "p2", "name": "Straw hat", "quantity": 1, "price": 10},
        ],
    }
    wf = load_workflow(ROOT / "workflows" / "abandoned-checkout.yaml")
    with Simulation([wf]) as sim:
        sim.send(event("co-7", "checkout.abandoned", cart, email="ana@example.com", first_name="Ana"))
        (sent,) = ses_sent()
        html = body_of(mime(sent), "text/html")
        assert "You left 2 item(s)" in html
        assert "2 x Linen shirt" in html and "1 x Straw hat" in html
        assert 'href="https://shop.example/cart/k1"' in html
