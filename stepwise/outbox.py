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
                self.delivered.append(self.sender.deliver(msg))
            except (ClaimHeld, ChannelError):
                self.pending.append(msg)
        return len(todo)

    def settle(self, now: Any) -> tuple[int, list[ContactEvent]]:
        """One pass: deliver what the stream brought; the engagement events whose window has passed (their checks
        are taken once; locally they fire at the first settle after they are due)."""
        return self.run(), engagement_events(self.messages, now)

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
