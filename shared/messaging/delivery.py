"""Delivers one queued message exactly once: consent and suppression -> render -> claim -> send -> record."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared import clock
from shared import constants as C
from shared.events import stable_hash
from shared.messaging.channels import Channel, ChannelError, Outgoing
from shared.messaging.templates import Rendered, TemplateError, render_context
from shared.messaging.unsubscribe import Links
from shared.store import messages as M
from shared.store.contacts import deserialise, epoch
from shared.store.messages import Claim, MessageStore, SendContext

KINDS = {"email": "send_email", "sms": "send_sms", "alert": "notify"}
ENGAGEMENT_CHECKS = ("email.not_opened", "email.not_clicked")


class NoTemplates(Exception):
    """The sender was started without a templates folder."""


class ClaimHeld(Exception):
    """Another attempt claimed this message moments ago and may be sending it: retry later, never send now."""


class Renderer(Protocol):
    """shared/messaging/templates.py TemplateSet: raises TemplateError for a missing template or variable."""

    def render(
        self, template_name: str | None, channel: str, context: dict[str, Any], subject: str | None = None
    ) -> Rendered: ...


@dataclass(frozen=True)
class Policy:
    configuration_set: str = ""
    # A claim older than this whose send never recorded is resolved as `unconfirmed` (never resent). It must
    # exceed the sender Lambda's timeout, so a live attempt is never taken for a dead one.
    claim_timeout: timedelta = timedelta(minutes=5)
    engagement_window: timedelta | None = timedelta(days=3)  # email.not_opened / not_clicked after this
    counters_keep: timedelta = timedelta(days=8)  # reputation counters outlive the guard's window


@dataclass
class Delivered:
    message_id: str
    status: str  # sent, skipped, failed, held, unconfirmed, done (an outcome recorded before), ignored
    reason: str = ""
    provider_id: str = ""


@dataclass
class Sender:
    messages: MessageStore
    channels: dict[str, Channel]
    renderer: Renderer | None
    links: Links | None
    policy: Policy = field(default_factory=Policy)

    def deliver(self, msg: dict[str, Any]) -> Delivered:
        """One message item as the stream brings it (status queued)."""
        mid, channel_name = msg["message_id"], msg.get("channel", "")
        contact_id = str(msg[C.PK]).removeprefix("CONTACT#")
        channel = self.channels.get(channel_name)
        if channel is None:
            return Delivered(mid, "ignored", f"no provider for channel {channel_name!r}")  # site messages
        now = clock.now()
        to = _addresses(msg)
        ctx = self.messages.context(
            contact_id, channel_name, to[0] if to and channel_name != "alert" else None, self.policy.configuration_set
        )
        reason = self._refusal(msg, ctx, to)
        if reason is not None:
            status, why = reason
            return self._outcome(msg, status, why, now)
        try:
            out = self._render(msg, ctx, contact_id, to)
        except (TemplateError, NoTemplates) as err:
            return self._outcome(msg, M.FAILED, str(err), now)
        claim_id = uuid.uuid4().hex
        state, current = self.messages.claim(contact_id, mid, claim_id, now, self.policy.claim_timeout)
        if state is Claim.GONE:
            return Delivered(mid, "ignored", "message item no longer exists")
        if state is Claim.DONE:
            return Delivered(mid, "done", f"already {current.get('status')}")
        if state is Claim.HELD:
            raise ClaimHeld(f"message {mid}: claimed by another attempt at {current.get('claimed_at')}")
        if state is Claim.STALE:
            why = (
                f"send attempt claimed at {current.get('claimed_at')} never recorded its outcome; not resent "
                "(it may have reached the provider); its send event will confirm it"
            )
            return self._outcome(msg, M.UNCONFIRMED, why, now, expect=M.SENDING, claim_id=current.get("claim_id"))
        try:
            provider_id = channel.send(out)
        except ChannelError as err:
            if err.retryable:
                self.messages.release(contact_id, mid, claim_id, f"{err.code}")
                raise
            return self._outcome(
                msg,
                M.FAILED,
                f"{err.channel} provider refused it: {err.code}",
                now,
                expect=M.SENDING,
                claim_id=claim_id,
            )
        if not self.messages.sent(contact_id, mid, claim_id, provider_id, clock.now(), self._after_send(msg, now)):
            return Delivered(mid, "done", "sent, but the claim was resolved meanwhile", provider_id)
        return Delivered(mid, M.SENT, "", provider_id)

    # ---- decisions ---------------------------------------------------------------------------

    def _refusal(self, msg: dict[str, Any], ctx: SendContext, to: list[str]) -> tuple[str, str] | None:
        """(status, why) when the message must not go now; None when it may."""
        channel, transactional = msg.get("channel"), bool(msg.get("transactional"))
        if not to:
            return M.SKIPPED, "no address to send to"
        if channel == "alert":
            return None  # the team's own addresses: no consent or suppression applies
        if ctx.profile is None:
            return M.SKIPPED, "contact no longer exists"
        consent = ctx.profile.get("consent") or {}
        supp = ctx.suppression
        if channel == "email":
            if supp is not None and (not transactional or supp.get("reason") == "bounce"):
                return M.SKIPPED, f"address suppressed after a {supp.get('reason')} on {str(supp.get('at'))[:10]}"
            if not transactional and consent.get("email") is False:
                return M.SKIPPED, "contact withdrew email consent"
            rep = ctx.reputation or {}
            if not transactional and rep.get("paused"):
                return M.HELD, f"marketing email paused by the reputation guard: {rep.get('why')}"
        elif channel == "sms" and consent.get("sms") is False:
            # Also for transactional texts: a STOP reply opts the number out at the carrier and at End User
            # Messaging (its opt-out list refuses the send anyway).
            return M.SKIPPED, "contact withdrew SMS consent"
        return None

    def _render(self, msg: dict[str, Any], ctx: SendContext, contact_id: str, to: list[str]) -> Outgoing:
        if self.renderer is None:
            raise NoTemplates("no templates are deployed with the sender")
        marketing = msg.get("channel") == "email" and not msg.get("transactional")
        unsubscribe_url = self.links.url(contact_id, msg["message_id"]) if marketing and self.links else None
        context = render_context(
            {**(ctx.profile or {}), "id": contact_id},
            msg.get("event") or {},
            coupon=msg.get("coupon"),
            unsubscribe_url=unsubscribe_url,
            message={k: msg.get(k) for k in ("template", "campaign", "workflow", "step") if msg.get(k)},
        )
        rendered = self.renderer.render(msg.get("template"), str(msg.get("channel")), context, msg.get("subject"))
        html, headers = rendered.html or "", {}
        if marketing and self.links:
            headers = self.links.headers(contact_id, msg["message_id"])
            if html and unsubscribe_url and unsubscribe_url not in html:  # the body always carries the link too
                html += f'\n<p style="font-size:12px"><a href="{unsubscribe_url}">Unsubscribe</a></p>'
        tags = {k: str(msg[k]) for k in ("workflow", "step", "campaign", "template") if msg.get(k)}
        return Outgoing(
            message_id=msg["message_id"],
            contact_id=contact_id,
            to=to,
            subject=rendered.subject or "",
            html=html,
            text=rendered.text,
            transactional=bool(msg.get("transactional")) or msg.get("channel") == "alert",
            headers=headers,
            tags=tags,
        )

    # ---- records -----------------------------------------------------------------------------

    def _after_send(self, msg: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
        """What the send's record writes with it: the outbox event the router routes (email.sent / sms.sent),
        the reputation counter, and the engagement checks."""
        channel, contact_id, mid = msg["channel"], str(msg[C.PK]).removeprefix("CONTACT#"), msg["message_id"]
        writes: list[dict[str, Any]] = []
        if channel in ("email", "sms"):
            data = {
                "message_id": mid,
                **{k: msg[k] for k in ("template", "campaign", "workflow", "step") if msg.get(k)},
            }
            writes.append(self.messages.outbox_item(contact_id, f"{channel}.sent", data, now, stable_hash(mid, "sent")))
        if channel in ("email", "alert") and self.policy.configuration_set:
            writes.append(
                self.messages.count(self.policy.configuration_set, now, {"sends": 1}, self.policy.counters_keep)
            )
        window = self.policy.engagement_window
        if channel == "email" and window and msg.get("workflow"):
            after = _duration(window)
            for etype in ENGAGEMENT_CHECKS:
                writes.append(self.messages.check_item(contact_id, mid, etype, now + window, after))
        return writes

    def _outcome(
        self,
        msg: dict[str, Any],
        status: str,
        why: str,
        now: datetime,
        *,
        expect: str = M.QUEUED,
        claim_id: str | None = None,
    ) -> Delivered:
        contact_id, mid = str(msg[C.PK]).removeprefix("CONTACT#"), msg["message_id"]
        extra: dict[str, Any] = {}
        if status == M.HELD:  # listed for the guard's resume (GSI1)
            extra = {C.GSI1_PK: f"HELD#{self.policy.configuration_set}", C.GSI1_SK: f"{now.isoformat()}#{mid}"}
        recorded = self.messages.outcome(
            contact_id,
            mid,
            status,
            why,
            now,
            expect=expect,
            claim_id=claim_id,
            history=_record(msg, status, why, now),
            extra=extra,
        )
        if not recorded:
            return Delivered(mid, "done", "an outcome was recorded before")
        return Delivered(mid, status, why)


def message_from_stream(record: dict[str, Any]) -> dict[str, Any] | None:
    """The message item a table stream record hands the sender: a new message (INSERT, status queued), or one
    the reputation guard held and has put back (MODIFY held -> queued). None for every other record."""
    change = record.get("dynamodb") or {}
    new = deserialise(change.get("NewImage") or {})
    if not str(new.get(C.SK, "")).startswith("MSG#") or new.get("status") != M.QUEUED:
        return None
    if record.get("eventName") == "INSERT":
        return new
    old = deserialise(change.get("OldImage") or {})
    return new if record.get("eventName") == "MODIFY" and old.get("status") == M.HELD else None


def _addresses(msg: dict[str, Any]) -> list[str]:
    to = msg.get("to")
    if isinstance(to, list):
        return [str(a) for a in to if a]
    return [str(to)] if to else []


def _duration(d: timedelta) -> str:
    secs = int(d.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs % size == 0:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def _record(msg: dict[str, Any], status: str, why: str, now: datetime) -> dict[str, Any]:
    """The history record of a message's outcome at send time, ordered after the step that queued it."""
    entered = str(msg.get("entered", "")).split("|")[0]
    return {
        C.SK: f"HIST#MSG#{msg['message_id']}#{status}",
        "contact_id": str(msg[C.PK]).removeprefix("CONTACT#"),
        "workflow": msg.get("workflow", ""),
        "step": msg.get("step", ""),
        "kind": KINDS.get(str(msg.get("channel")), "send"),
        "outcome": status,
        "why": why,
        "at": now.isoformat(),
        "seq": 0,
        "entered": f"{entered}|{time.time_ns():020d}",
        "message_id": msg["message_id"],
        C.TTL_ATTRIBUTE: msg.get(C.TTL_ATTRIBUTE) or epoch(now + timedelta(days=30)),
    }
