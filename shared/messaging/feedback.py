"""What happens to a message after it leaves, as contact events: SES events, SMS receipts, engagement checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from shared.events import ContactEvent, ContactRef
from shared.store.messages import CONFIRM_CHECK, SENT, UNCONFIRMED, MessageStore, history_record

MESSAGE_FIELDS = ("template", "campaign", "workflow", "step")

# SES event types (EventBridge detail.eventType) -> our event type. Send is where email.sent comes from: the sender
# marks the message sent before its SES call (one write), and SES's Send event, tagged with our message id, attaches
# SES's message id to it and is routed as email.sent once (absorb).
SES_TYPES = {
    "Send": "email.sent",
    "Delivery": "email.delivered",
    "Bounce": "email.bounced",
    "Complaint": "email.complained",
    "Open": "email.opened",
    "Click": "email.clicked",
    "Reject": "email.rejected",
    "DeliveryDelay": "email.delivery_delayed",
    "Subscription": "email.unsubscribed",  # SES's own subscription management: an unsubscribe
}
# End User Messaging SMS event types (configuration set event destination) -> our event type. The first receipt
# naming a message (usually TEXT_QUEUED) attaches the provider's id and is where sms.sent comes from.
SMS_SENT = frozenset({"TEXT_QUEUED", "TEXT_PENDING"})
SMS_DELIVERED = frozenset({"TEXT_DELIVERED", "TEXT_SUCCESSFUL"})
SMS_NOT_DELIVERED = frozenset(
    {
        "TEXT_BLOCKED",
        "TEXT_TTL_EXPIRED",
        "TEXT_CARRIER_UNREACHABLE",
        "TEXT_INVALID",
        "TEXT_INVALID_MESSAGE",
        "TEXT_UNREACHABLE",
        "TEXT_CARRIER_BLOCKED",
        "TEXT_SPAM",
        "TEXT_UNKNOWN",
        "TEXT_PROTECT_BLOCKED",
    }
)


class FeedbackError(Exception):
    """A feedback event that cannot be attributed: it names the field that is missing or wrong."""


def to_events(event: dict[str, Any]) -> list[ContactEvent]:
    """Contact events from one EventBridge event (source aws.ses, or an SMS event), an SNS-wrapped SMS event
    (Records[].Sns.Message), or a bare SMS event record. Events for mail Stepwise did not send (no message_id
    tag) give nothing."""
    if "Records" in event:
        out: list[ContactEvent] = []
        for rec in event["Records"]:
            out += to_events(json.loads(rec.get("Sns", {}).get("Message") or "{}"))
        return out
    detail = event.get("detail", event)
    if not isinstance(detail, dict):
        raise FeedbackError("detail: not an object")
    if "mail" in detail:
        return _ses(detail)
    if str(detail.get("eventType", "")).startswith("TEXT_"):
        return _sms(detail)
    return []


def _ses(detail: dict[str, Any]) -> list[ContactEvent]:
    kind = detail.get("eventType") or detail.get("notificationType") or ""
    etype = SES_TYPES.get(kind)
    if etype is None:
        return []
    mail = detail["mail"]
    tags = {k: v[0] for k, v in (mail.get("tags") or {}).items() if isinstance(v, list) and v}
    message_id, contact_id = tags.get("message_id"), tags.get("contact_id")
    if not message_id or not contact_id:
        return []  # not ours (or sent before tagging)
    body = detail.get(kind[0].lower() + kind[1:]) or {}
    data: dict[str, Any] = {"message_id": message_id, "provider_id": mail.get("messageId", "")}
    at = _time(body.get("timestamp") or mail.get("timestamp"))
    suffix = ""
    if kind == "Bounce":
        data["bounce_type"] = body.get("bounceType", "")  # Permanent (hard), Transient, Undetermined
        data["reason"] = body.get("bounceSubType", "")
    elif kind == "Complaint":
        data["reason"] = body.get("complaintFeedbackType", "")
    elif kind == "Click":
        data["link"] = body.get("link", "")
        suffix = f":{body.get('link', '')}:{body.get('timestamp', '')}"
    elif kind in ("Open", "DeliveryDelay"):
        suffix = f":{body.get('timestamp', '')}"
    elif kind == "Reject":
        data["reason"] = body.get("reason", "")
    return [
        ContactEvent(
            id=f"{message_id}:{kind.lower()}{suffix}",
            type=etype,
            contact=ContactRef(contact_id=contact_id),
            data=data,
            occurred_at=at,
            source="ses",
        )
    ]


def _sms(detail: dict[str, Any]) -> list[ContactEvent]:
    kind = detail["eventType"]
    if kind in SMS_SENT:
        etype = "sms.sent"
    elif kind in SMS_DELIVERED:
        etype = "sms.delivered"
    elif kind in SMS_NOT_DELIVERED:
        etype = "sms.not_delivered"
    else:
        return []  # queued, pending: not final
    context = detail.get("context") or {}
    message_id, contact_id = context.get("message_id"), context.get("contact_id")
    if not message_id or not contact_id:
        return []
    data: dict[str, Any] = {"message_id": message_id, "provider_id": detail.get("messageId", "")}
    if etype == "sms.not_delivered":
        data["reason"] = str(detail.get("messageStatus") or kind).lower()
    stamp = detail.get("eventTimestamp")
    at = datetime.fromtimestamp(stamp / 1000, UTC) if isinstance(stamp, int | float) else None
    return [
        ContactEvent(
            id=f"{message_id}:{kind.lower()}",
            type=etype,
            contact=ContactRef(contact_id=contact_id),
            data=data,
            occurred_at=at,
            source="sms",
        )
    ]


def _time(text: Any) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def absorb(messages: MessageStore, events: list[ContactEvent], now: datetime, guard: Any = None) -> list[ContactEvent]:
    """Apply what feedback says before it is routed: the provider's message id attached to our message (SES's Send
    event; any SMS receipt, the first one also giving sms.sent), a hard bounce or a complaint suppressing the
    address (the message's own `to`) and counted by the reputation guard. Returns the events to route:
    email.sent / sms.sent once per message (the first confirmation; a retried or later one is dropped), for
    messages of that channel only (a team alert's Send event is not an email.sent)."""
    out = []
    for ev in events:
        mid = str(ev.data.get("message_id", ""))
        contact_id = ev.contact.contact_id or ""
        sms = ev.source == "sms"
        if ev.type == "email.sent" or sms:
            confirmed = messages.confirm(contact_id, mid, str(ev.data.get("provider_id", "")), ev.occurred_at or now)
            if confirmed is not None and confirmed.get("channel") == ("sms" if sms else "email"):
                data = {"message_id": mid, **{k: confirmed[k] for k in MESSAGE_FIELDS if confirmed.get(k)}}
                if not sms:
                    data["provider_id"] = confirmed.get("provider_id", "")
                sent_type = "sms.sent" if sms else "email.sent"
                sent = ev.model_copy(update={"id": f"{mid}:sent", "type": sent_type, "data": data})
                out.append(sent)
            if ev.type.endswith(".sent"):
                continue
        hard = ev.type == "email.bounced" and ev.data.get("bounce_type") == "Permanent"
        if hard or ev.type == "email.complained":
            msg = messages.get(contact_id, mid) or {}
            if msg.get("to"):
                reason = "bounce" if hard else "complaint"
                messages.suppress("email", str(msg["to"]), reason, ev.occurred_at or now, mid)
            if guard is not None:
                guard.record("bounces" if hard else "complaints", ev.occurred_at or now)
        out.append(ev)
    return out


def engagement_events(messages: MessageStore, now: datetime) -> list[ContactEvent]:
    """email.not_opened / email.not_clicked for checks whose window has passed without the open or click the
    router notes on the message (opened_at, clicked_at). Each check is taken once. A due provider-confirmation
    check (written by the sender's claim) marks a message its provider never confirmed `unconfirmed`, with why in
    the contact's history, and gives no event."""
    out = []
    for check in messages.due_checks(now):
        if not messages.take_check(check):
            continue
        msg = messages.get(check["contact_id"], check["message_id"]) or {}
        if check["type"] == CONFIRM_CHECK:
            if msg.get("status") == SENT and not msg.get("provider_id"):
                why = (
                    f"marked sent at {msg.get('sent_at')}, but the provider never confirmed it within "
                    f"{check['after']} (the sender may have stopped before or during its call); not resent"
                )
                messages.unconfirm(
                    check["contact_id"], check["message_id"], why, now, history_record(msg, UNCONFIRMED, why, now)
                )
            continue
        seen = msg.get("opened_at") if check["type"] == "email.not_opened" else msg.get("clicked_at")
        if seen or msg.get("status") != "sent":
            continue
        data = {"message_id": check["message_id"], "after": check["after"]}
        data |= {k: msg[k] for k in ("template", "campaign", "workflow", "step") if msg.get(k)}
        out.append(
            ContactEvent(
                id=f"{check['message_id']}:{check['type']}",
                type=check["type"],
                contact=ContactRef(contact_id=check["contact_id"]),
                data=data,
                occurred_at=datetime.fromisoformat(check["due"]),
            )
        )
    return out


def coupon_used(messages: MessageStore, event: ContactEvent, now: datetime) -> ContactEvent:
    """A coupon.used event matched back to the generated code: `coupon_status` is used (first use, or a
    redelivery of it), unknown, expired or already_used, so triggers can filter on it; the coupon is marked
    used once."""
    if event.type != "coupon.used" or not event.data.get("coupon"):
        return event
    status = messages.use_coupon(
        str(event.data["coupon"]).strip(),
        event.contact.contact_id,
        str(event.data.get("order_id") or event.id),
        event.occurred_at or now,
    )
    return event.model_copy(update={"data": {**event.data, "coupon_status": status}})


def handle(event: dict[str, Any], messages: MessageStore, now: datetime, guard: Any = None) -> list[ContactEvent]:
    """The feedback Lambda's whole domain step (HANDLER_FEEDBACK, EventBridge: SES events and SMS receipts): the
    events to hand Router.handle, after suppression, the guard's counts and a Send event's confirmation."""
    return absorb(messages, to_events(event), now, guard)
