"""Providers' request shapes: SES v2 raw MIME and End User Messaging SMS, checked against botocore's service models."""

from __future__ import annotations

import base64
import email
import email.policy

import boto3
import pytest
from botocore.stub import ANY, Stubber

from shared.messaging.channels import (
    ChannelError,
    Outgoing,
    RecordingSmsChannel,
    SesAlertChannel,
    SesEmailChannel,
    SmsChannel,
    build_mime,
)
from shared.messaging.unsubscribe import Links, UnsubscribeTokenError, make_token, verify_token

KEY = b"0123456789abcdef0123456789abcdef"


def outgoing(**kw: object) -> Outgoing:
    base = dict(
        message_id="abc123",
        contact_id="c-1",
        to=["ana@example.com"],
        subject="Your cart",
        html="<p>Hi Ana</p>",
        text="Hi Ana",
        headers=Links(KEY, "https://api.example.com", "unsubscribe@example.com").headers("c-1", "abc123"),
        tags={"workflow": "abandoned-checkout", "campaign": "spring sale", "step": "remind"},
    )
    base.update(kw)
    return Outgoing(**base)  # type: ignore[arg-type]


def test_mime_carries_both_unsubscribe_forms_unfolded_and_both_parts() -> None:
    raw = build_mime(outgoing(), "Shop <hello@example.com>").as_bytes()
    assert b"\r\n" in raw and b"=?utf-8?" not in raw  # CRLF, and no encoded words in the headers
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    lu = str(msg["List-Unsubscribe"])
    assert lu.startswith("<https://api.example.com/unsubscribe/") and ", <mailto:unsubscribe@example.com?" in lu
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Feedback-ID"] == "spring_sale:abandoned-checkout:abc123:stepwise"
    assert [p.get_content_type() for p in msg.walk()] == ["multipart/alternative", "text/plain", "text/html"]


def test_ses_send_email_request_is_raw_with_configuration_set_and_our_ids_as_tags() -> None:
    client = boto3.client("sesv2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    expected = {
        "FromEmailAddress": "hello@example.com",
        "Destination": {"ToAddresses": ["ana@example.com"]},
        "Content": {"Raw": {"Data": ANY}},
        "ConfigurationSetName": "marketing",
        "EmailTags": [
            {"Name": "message_id", "Value": "abc123"},
            {"Name": "contact_id", "Value": "c-1"},
            {"Name": "campaign", "Value": "spring_sale"},  # tag values: letters, digits, _ and - only
            {"Name": "step", "Value": "remind"},
            {"Name": "workflow", "Value": "abandoned-checkout"},
        ],
    }
    with Stubber(client) as stub:
        stub.add_response("send_email", {"MessageId": "ses-1"}, expected)
        assert SesEmailChannel(client, "hello@example.com", "marketing").send(outgoing()) == "ses-1"


@pytest.mark.parametrize(("code", "retryable"), [("TooManyRequestsException", True), ("MessageRejected", False)])
def test_ses_errors_are_typed_retryable_or_refused(code: str, retryable: bool) -> None:
    client = boto3.client("sesv2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_client_error("send_email", service_error_code=code, http_status_code=400)
        with pytest.raises(ChannelError) as err:
            SesEmailChannel(client, "hello@example.com", "cs").send(outgoing())
    assert err.value.retryable is retryable and err.value.code == code


def test_alerts_go_to_at_most_five_addresses_without_unsubscribe() -> None:
    with pytest.raises(ChannelError, match="1 to 5"):
        SesAlertChannel(None, "hello@example.com", "cs").send(outgoing(to=[f"t{i}@example.com" for i in range(6)]))


def test_sms_request_matches_the_service_model() -> None:
    client = boto3.client(
        "pinpoint-sms-voice-v2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    out = outgoing(to=["+393471234567"], text="Spring sale: 20% off. Reply STOP to opt out.")
    expected = {
        "DestinationPhoneNumber": "+393471234567",
        "OriginationIdentity": "arn:aws:sms-voice:us-east-1:123456789012:pool/pool-1",
        "MessageBody": "Spring sale: 20% off. Reply STOP to opt out.",
        "MessageType": "PROMOTIONAL",
        "ConfigurationSetName": "sms-events",
        "Context": {
            "message_id": "abc123",
            "contact_id": "c-1",
            "workflow": "abandoned-checkout",
            "step": "remind",
            "campaign": "spring sale",
        },
    }
    channel = SmsChannel(client, expected["OriginationIdentity"], "sms-events")  # type: ignore[arg-type]
    with Stubber(client) as stub:  # the Stubber validates names and types against the real service model
        stub.add_response("send_text_message", {"MessageId": "sms-1"}, expected)
        assert channel.send(out) == "sms-1"
        stub.add_response("send_text_message", {"MessageId": "sms-2"}, {**expected, "MessageType": "TRANSACTIONAL"})
        assert channel.send(outgoing(to=["+393471234567"], text=out.text, transactional=True)) == "sms-2"
    assert len(channel.request(out)["Context"]) <= 5  # the service's limit


def test_sms_opted_out_destination_is_refused_not_retried() -> None:
    client = boto3.client(
        "pinpoint-sms-voice-v2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stub:
        stub.add_client_error("send_text_message", service_error_code="ValidationException", http_status_code=400)
        with pytest.raises(ChannelError) as err:
            SmsChannel(client, "+15555550100", "").send(outgoing(to=["+393471234567"]))
    assert not err.value.retryable


def test_recording_channel_records_the_same_request() -> None:
    rec = RecordingSmsChannel("+15555550100", "cs")
    pid = rec.send(outgoing(to=["+393471234567"]))
    assert rec.sent[0].provider_id == pid and rec.sent[0].request == rec.request(outgoing(to=["+393471234567"]))


def test_unsubscribe_tokens_verify_and_refuse_tampering() -> None:
    token = make_token(KEY, "c-1", "abc123")
    assert verify_token(KEY, token) == ("c-1", "abc123")
    other = make_token(KEY, "c-2", "abc123")
    forged = other.split(".")[0] + "." + ".".join(token.split(".")[1:])  # someone else's contact, this MAC
    for bad in (forged, token + "x", "a.b", make_token(b"another key", "c-1", "abc123")):
        with pytest.raises(UnsubscribeTokenError):
            verify_token(KEY, bad)
    assert "@" not in base64.urlsafe_b64decode(token.split(".")[0] + "==").decode()  # ids only, no address


@pytest.mark.parametrize(
    ("error", "retryable", "uncertain"),
    [
        ("EndpointConnectionError", True, False),  # never reached SES: nothing sent, the claim is given back
        ("ConnectTimeoutError", True, False),
        ("ReadTimeoutError", False, True),  # the request went out, the answer never came: it may have been sent
        ("ConnectionClosedError", False, True),
    ],
)
def test_a_call_without_an_answer_is_uncertain_and_one_that_never_connected_is_retryable(
    error: str, retryable: bool, uncertain: bool
) -> None:
    import botocore.exceptions as bx
    from botocore.config import Config

    client = boto3.client(
        "sesv2",
        region_name="eu-west-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1}),
    )

    def fail(**_: object) -> None:
        raise getattr(bx, error)(endpoint_url="https://email.eu-west-1.amazonaws.com")

    client.meta.events.register("before-send.sesv2.SendEmail", fail)
    with pytest.raises(ChannelError) as err:
        SesEmailChannel(client, "news@example.com", "cs").send(outgoing())
    assert (err.value.retryable, err.value.uncertain, err.value.code) == (retryable, uncertain, error)


def test_the_link_has_one_unsubscribe_segment_whether_the_base_is_the_api_or_its_route() -> None:
    # The stack hands the sender `<api>/unsubscribe/`; the intake serves /unsubscribe/{token}.
    token = make_token(KEY, "c-1", "m-1")
    for base in ("https://api.example.com", "https://api.example.com/", "https://api.example.com/unsubscribe/"):
        assert Links(KEY, base).url("c-1", "m-1") == f"https://api.example.com/unsubscribe/{token}"
