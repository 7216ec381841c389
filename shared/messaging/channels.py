"""The ways a message leaves: one provider class per channel behind one `Channel` interface (client wrappers)."""

from __future__ import annotations

import email.policy
import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError, ConnectionClosedError, ReadTimeoutError

MAX_ALERT_ADDRESSES = 5  # a notify step's team addresses (the workflow model checks it too)
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# CRLF line ends, and headers folded only past RFC 5322's 998-character limit: a long List-Unsubscribe URL must
# stay one plain token (the default 78 would turn it into RFC 2047 encoded words that clients do not parse).
_POLICY = email.policy.SMTP.clone(max_line_length=998)


class ChannelError(Exception):
    """A provider call failed. `retryable`: nothing was sent and a later attempt may succeed (throttling,
    an outage, a connection that never reached the service); `uncertain`: the request went out but its answer
    never came (a read timeout, a connection closed mid-call), so the provider may have sent it and a retry could
    send it twice; otherwise the provider refused this message for good (a bad address, an opted-out number)."""

    def __init__(self, channel: str, code: str, detail: str, *, retryable: bool, uncertain: bool = False) -> None:
        super().__init__(f"{channel}: {code}: {detail}")
        self.channel, self.code, self.retryable, self.uncertain = channel, code, retryable, uncertain


def _transport_error(channel: str, err: BotoCoreError) -> ChannelError:
    """A botocore error without a service answer: uncertain when the request may have been received."""
    uncertain = isinstance(err, ReadTimeoutError | ConnectionClosedError)
    return ChannelError(channel, type(err).__name__, str(err), retryable=not uncertain, uncertain=uncertain)


@dataclass
class Outgoing:
    """One rendered message, ready for a provider."""

    message_id: str  # ours: tagged on the send, so the provider's feedback maps back to it
    contact_id: str
    to: list[str]
    subject: str = ""
    html: str = ""
    text: str = ""
    transactional: bool = False
    headers: dict[str, str] = field(default_factory=dict)  # extra headers (List-Unsubscribe...)
    tags: dict[str, str] = field(default_factory=dict)  # workflow, campaign... (provider tags, no personal data)


class Channel(Protocol):
    """A provider of one channel. `send` returns the provider's message id or raises ChannelError."""

    name: str

    def send(self, out: Outgoing) -> str: ...


def _tag(value: str) -> str:
    # SES tag names and values: ASCII letters, digits, '_' and '-' only, at most 256 characters.
    return _TAG_UNSAFE.sub("_", value)[:256] or "_"


def build_mime(out: Outgoing, from_address: str) -> EmailMessage:
    """The whole MIME message: text and HTML alternatives, our headers, a Feedback-ID for mailbox providers'
    complaint loops (Gmail's format: campaign:workflow:message:sender)."""
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = from_address
    msg["To"] = ", ".join(out.to)
    msg["Subject"] = out.subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(idstring=out.message_id, domain=from_address.rsplit("@", 1)[-1].strip(">"))
    feedback = ":".join(_tag(out.tags.get(k, "")) for k in ("campaign", "workflow")) + f":{out.message_id}:stepwise"
    msg["Feedback-ID"] = feedback
    for name, value in out.headers.items():
        msg[name] = value
    msg.set_content(out.text or " ", subtype="plain", charset="utf-8", cte="quoted-printable")
    if out.html:
        msg.add_alternative(out.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


class SesEmailChannel:
    """Amazon SES v2 SendEmail with raw MIME (so our own headers, List-Unsubscribe included, go out as built),
    the configuration set (its event destination feeds the feedback), and our message id as a tag."""

    name = "email"
    _RETRYABLE = frozenset(
        {
            "TooManyRequestsException",
            "LimitExceededException",
            "ThrottlingException",
            "SendingPausedException",
            "AccountSuspendedException",
            "InternalFailure",
            "ServiceUnavailable",
        }
    )

    def __init__(self, client: Any, from_address: str, configuration_set: str) -> None:
        self.client = client
        self.from_address = from_address
        self.configuration_set = configuration_set

    def send(self, out: Outgoing) -> str:
        raw = build_mime(out, self.from_address).as_bytes()
        tags = [{"Name": "message_id", "Value": out.message_id}, {"Name": "contact_id", "Value": _tag(out.contact_id)}]
        tags += [{"Name": _tag(k), "Value": _tag(v)} for k, v in sorted(out.tags.items()) if v]
        kwargs: dict[str, Any] = {
            "FromEmailAddress": self.from_address,
            "Destination": {"ToAddresses": out.to},
            "Content": {"Raw": {"Data": raw}},
            "EmailTags": tags,
        }
        if self.configuration_set:
            kwargs["ConfigurationSetName"] = self.configuration_set
        try:
            return str(self.client.send_email(**kwargs)["MessageId"])
        except ClientError as err:
            code = err.response["Error"]["Code"]
            raise ChannelError(
                self.name, code, err.response["Error"].get("Message", ""), retryable=code in self._RETRYABLE
            ) from None
        except BotoCoreError as err:  # no answer: never reached SES (retryable), or may have (uncertain)
            raise _transport_error(self.name, err) from None


class SesAlertChannel(SesEmailChannel):
    """Team alerts (notify): real emails through SES, to at most five addresses, never with unsubscribe
    headers (they are not marketing), from the same identity and configuration set."""

    name = "alert"

    def send(self, out: Outgoing) -> str:
        if not 1 <= len(out.to) <= MAX_ALERT_ADDRESSES:
            raise ChannelError(
                self.name, "TooManyAddresses", f"{len(out.to)} addresses, 1 to 5 allowed", retryable=False
            )
        return super().send(out)


class SmsChannel:
    """AWS End User Messaging SMS (pinpoint-sms-voice-v2) SendTextMessage from the configured origination
    identity (a number or pool), PROMOTIONAL or TRANSACTIONAL, with our message id in the Context so the
    delivery receipts map back to it."""

    name = "sms"
    _RETRYABLE = frozenset({"ThrottlingException", "InternalServerException", "ServiceQuotaExceededException"})

    def __init__(self, client: Any, origination: str, configuration_set: str) -> None:
        self.client = client
        self.origination = origination
        self.configuration_set = configuration_set

    def request(self, out: Outgoing) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "DestinationPhoneNumber": out.to[0],
            "OriginationIdentity": self.origination,
            "MessageBody": out.text,
            "MessageType": "TRANSACTIONAL" if out.transactional else "PROMOTIONAL",
            # At most 5 entries (the service model's limit): our ids, then the workflow, step and campaign.
            "Context": {
                "message_id": out.message_id,
                "contact_id": out.contact_id,
                **{k: out.tags[k] for k in ("workflow", "step", "campaign") if out.tags.get(k)},
            },
        }
        if self.configuration_set:
            kwargs["ConfigurationSetName"] = self.configuration_set
        return kwargs

    def send(self, out: Outgoing) -> str:
        try:
            return str(self.client.send_text_message(**self.request(out))["MessageId"])
        except ClientError as err:
            code = err.response["Error"]["Code"]
            raise ChannelError(
                self.name, code, err.response["Error"].get("Message", ""), retryable=code in self._RETRYABLE
            ) from None
        except BotoCoreError as err:
            raise _transport_error(self.name, err) from None


@dataclass
class RecordedSms:
    provider_id: str
    request: dict[str, Any]


class RecordingSmsChannel(SmsChannel):
    """The local stack's SMS provider: builds the same request as SmsChannel and records it (moto has no
    End User Messaging SMS)."""

    def __init__(self, origination: str = "+15555550100", configuration_set: str = "") -> None:
        super().__init__(None, origination, configuration_set)
        self.sent: list[RecordedSms] = []

    def send(self, out: Outgoing) -> str:
        provider_id = f"local-sms-{len(self.sent) + 1:06d}"
        self.sent.append(RecordedSms(provider_id, self.request(out)))
        return provider_id


class SnsAlert:
    """The team's alert on an SNS topic (the reputation guard's pause): subscribers get it by email or chat."""

    def __init__(self, client: Any, topic_arn: str) -> None:
        self.client = client
        self.topic_arn = topic_arn

    def __call__(self, subject: str, text: str) -> None:
        self.client.publish(TopicArn=self.topic_arn, Subject=subject[:100], Message=text)
