"""The local stack's delivery: the sender in-process (SES on moto, SMS recorded) and `stepwise outbox`, what it sent."""

from __future__ import annotations

import contextlib
import email
import json
import os
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any, TextIO

import boto3

from shared import constants as C
from shared.events import ContactEvent
from shared.messaging.channels import ChannelError, RecordingSmsChannel, SesAlertChannel, SesEmailChannel
from shared.messaging.delivery import ClaimHeld, Delivered, Policy, Sender, message_from_stream
from shared.messaging.feedback import engagement_events
from shared.messaging.feedback import handle as absorb_feedback
from shared.messaging.templates import TemplateSet
from shared.messaging.unsubscribe import Links
from shared.store.messages import MessageStore

LOCAL_FROM = "Stepwise <hello@stepwise.local>"
LOCAL_CONFIGURATION_SET = "stepwise-local"
LOCAL_UNSUBSCRIBE_URL = "http://127.0.0.1:8080"
LOCAL_UNSUBSCRIBE_MAILTO = "unsubscribe@stepwise.local"
LOCAL_UNSUBSCRIBE_KEY = b"stepwise-local-unsubscribe-key"  # the local stack only; AWS reads its key from SSM


def templates_dir() -> Path | None:
    """The folder the local stack renders from: STEPWISE_TEMPLATES when set, else none (messages stay queued,
    as before delivery existed, so simulations of workflows without templates record no failed sends)."""
    value = os.environ.get(C.ENV_TEMPLATES_DIR)
    return Path(value) if value else None


class LocalDelivery:
    """What the sender Lambda does in AWS, fed by the simulation's reading of the table stream."""

    def __init__(self, table: str, dynamodb: Any, region: str, templates: Path) -> None:
        self.sesv2 = boto3.client("sesv2", region_name=region)
        self.sesv2.create_email_identity(EmailIdentity=LOCAL_FROM.split("<")[1].rstrip(">"))
        self.region = region
        self.sms = RecordingSmsChannel(configuration_set=LOCAL_CONFIGURATION_SET)
        self.messages = MessageStore(table, dynamodb)
        self.sender = Sender(
            self.messages,
            {
                "email": SesEmailChannel(self.sesv2, LOCAL_FROM, LOCAL_CONFIGURATION_SET),
                "alert": SesAlertChannel(self.sesv2, LOCAL_FROM, LOCAL_CONFIGURATION_SET),
                "sms": self.sms,
            },
            TemplateSet.load(templates),
            Links(LOCAL_UNSUBSCRIBE_KEY, LOCAL_UNSUBSCRIBE_URL, LOCAL_UNSUBSCRIBE_MAILTO),
            Policy(configuration_set=LOCAL_CONFIGURATION_SET),
        )
        self.pending: list[dict[str, Any]] = []
        self.delivered: list[Delivered] = []
        self.feedback: list[dict[str, Any]] = []  # what the local providers publish, as SES / End User Messaging do

    def offer(self, record: dict[str, Any]) -> None:
        """A table stream record; the messages to deliver are kept for `run`."""
        msg = message_from_stream(record)
        if msg is not None:
            self.pending.append(msg)

    def run(self) -> int:
        """Deliver what the stream brought; a retryable failure stays for the next settle, as a stream retries."""
        todo, self.pending = self.pending, []
        for msg in todo:
            try:
                done = self.sender.deliver(msg)
            except (ClaimHeld, ChannelError):
                self.pending.append(msg)
                continue
            self.delivered.append(done)
            if done.status == "sent":
                self.feedback.append(provider_event(msg, done.provider_id, LOCAL_CONFIGURATION_SET))
        return len(todo)

    def settle(self, now: Any) -> tuple[int, list[ContactEvent]]:
        """One pass: deliver what the stream brought; the providers' feedback on it (SES's Send event, the SMS
        receipt: through the feedback Lambda's own code, which attaches the provider's message id and gives
        email.sent / sms.sent); the engagement events whose window has passed (their checks are taken once;
        locally they fire at the first settle after they are due)."""
        sent = self.run()
        published, self.feedback = self.feedback, []
        events = [e for ev in published for e in absorb_feedback(ev, self.messages, now)]
        return sent, events + engagement_events(self.messages, now)

    # ---- what was sent -----------------------------------------------------------------------

    def provider_records(self) -> dict[str, dict[str, Any]]:
        """What the providers received, by provider message id: moto's SES store and the SMS recorder."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        out: dict[str, dict[str, Any]] = {}
        for sent in ses_backends[DEFAULT_ACCOUNT_ID][self.region].sent_messages:
            raw = getattr(sent, "raw_data", None)
            if raw is not None:
                out[sent.id] = _email_record(email.message_from_string(raw))
        for rec in self.sms.sent:
            r = rec.request
            out[rec.provider_id] = {
                "body": r["MessageBody"],
                "headers": {"MessageType": r["MessageType"], "OriginationIdentity": r["OriginationIdentity"]},
            }
        return out

    def outbox(self, store_items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every message item (any status) with what its provider received when it was sent."""
        records = self.provider_records()
        rows = []
        for m in sorted(store_items, key=lambda i: (i.get("at", ""), i.get("entered", ""))):
            sent = records.get(str(m.get("provider_id", "")), {})
            rows.append(
                {
                    "at": m.get("at"),
                    "channel": m.get("channel"),
                    "to": m.get("to"),
                    "template": m.get("template"),
                    "status": m.get("status"),
                    "reason": m.get("reason", ""),
                    "subject": sent.get("subject", ""),
                    "headers": sent.get("headers", {}),
                    "body": sent.get("body", ""),
                    "message_id": m.get("message_id"),
                    "provider_id": m.get("provider_id", ""),
                }
            )
        return rows


def provider_event(msg: dict[str, Any], provider_id: str, configuration_set: str) -> dict[str, Any]:
    """The event the provider publishes when it takes a message, in its documented shape: SES's "Email Sent"
    (EventBridge, the configuration set's tags plus ours) or End User Messaging's TEXT_QUEUED receipt."""
    from shared import clock

    now = clock.now()
    contact_id = str(msg[C.PK]).removeprefix("CONTACT#")
    ours = {"message_id": msg["message_id"], "contact_id": contact_id}
    ours |= {k: str(msg[k]) for k in ("workflow", "step", "campaign") if msg.get(k)}
    if msg.get("channel") == "sms":
        receipt = {
            "eventType": "TEXT_QUEUED",
            "eventVersion": "1.0",
            "eventTimestamp": int(now.timestamp() * 1000),
            "isFinal": False,
            "messageId": provider_id,
            "messageStatus": "QUEUED",
            "context": ours,
        }
        return {"source": "aws.sms-voice", "detail-type": "Text Message Delivery Status Updated", "detail": receipt}
    stamp = now.isoformat().replace("+00:00", "Z")
    tags = {k: [v] for k, v in ours.items()} | {"ses:configuration-set": [configuration_set]}
    mail = {"timestamp": stamp, "messageId": provider_id, "tags": tags}
    return {"source": "aws.ses", "detail-type": "Email Sent", "detail": {"eventType": "Send", "mail": mail, "send": {}}}


def _email_record(msg: Message) -> dict[str, Any]:
    text, html = "", ""
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            text = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")  # type: ignore[union-attr]
        elif part.get_content_type() == "text/html":
            html = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")  # type: ignore[union-attr]
    keep = ("From", "To", "List-Unsubscribe", "List-Unsubscribe-Post", "Feedback-ID")
    return {
        "subject": str(msg.get("Subject", "")),
        "headers": {k: str(msg[k]) for k in keep if msg[k] is not None},
        "body": text,
        "html": html,
    }


def print_outbox(rows: list[dict[str, Any]], out: TextIO, as_json: bool = False) -> None:
    """The outbox as text (to, channel, status and why, subject, headers, body) or one JSON object per message."""
    if as_json:
        for r in rows:
            print(json.dumps(r, default=str), file=out)
        return
    print(f"Outbox: {len(rows)} message(s)", file=out)
    for r in rows:
        to = ", ".join(r["to"]) if isinstance(r["to"], list) else r["to"]
        print(f"  • {r['at']}  {r['channel']:<5} {r['status']:<11} to {to}  [{r['template']}]", file=out)
        if r["reason"]:
            print(f"   why: {r['reason']}", file=out)
        if r.get("provider_id"):
            print(f"   provider id: {r['provider_id']}", file=out)
        if r["subject"]:
            print(f"   subject: {r['subject']}", file=out)
        for k, v in r["headers"].items():
            print(f"   {k}: {v}", file=out)
        for line in str(r["body"]).strip().splitlines():
            print(f"   | {line}", file=out)


@contextlib.contextmanager
def use_templates(near: Path, explicit: str | None = None) -> Iterator[Path | None]:
    """Local delivery on for one command's simulation: the explicit folder, else STEPWISE_TEMPLATES, else a
    `templates` folder beside the workflows (or their folder's parent), else ./templates; None: no folder, no
    delivery. The variable is restored afterwards (tests run many commands in one process)."""
    before = os.environ.get(C.ENV_TEMPLATES_DIR)
    if explicit:
        found: Path | None = Path(explicit)
    elif before:
        found = Path(before)
    else:
        base = near if near.is_dir() else near.parent
        candidates = [base / C.TEMPLATES_FOLDER, base.parent / C.TEMPLATES_FOLDER, Path(C.TEMPLATES_FOLDER)]
        found = next((c for c in candidates if c.is_dir()), None)
    if found is not None:
        os.environ[C.ENV_TEMPLATES_DIR] = str(found)
    try:
        yield found
    finally:
        if before is None:
            os.environ.pop(C.ENV_TEMPLATES_DIR, None)
        else:
            os.environ[C.ENV_TEMPLATES_DIR] = before


def outbox_rows(sim: Any) -> list[dict[str, Any]]:
    """What a simulation's local stack sent (and decided not to send), in send order."""
    if sim.delivery is None:
        return []
    items = [m for cid in sim.contacts() for m in sim.store.messages(cid)]
    return sim.delivery.outbox(items)


def outbox_command(args: Any) -> int:
    """`stepwise outbox PATH --events EVENTS`: `simulate` printing only the outbox. The local stack lives in the
    command's process, so the outbox is that run's (there is no server to ask afterwards)."""
    from stepwise.simulate import simulate_command

    args.outbox, args.outbox_only = True, True
    return simulate_command(args)
