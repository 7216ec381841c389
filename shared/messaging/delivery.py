"""Delivers one queued message at most once: consent and suppression -> render -> claim-and-mark-sent (one write)
-> the provider call. The provider's id comes back with its own feedback (feedback.absorb -> MessageStore.confirm)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared import clock
from shared import constants as C
from shared.messaging.channels import Channel, ChannelError, Outgoing
from shared.messaging.templates import Rendered, TemplateError, render_context
from shared.messaging.unsubscribe import Links
from shared.store import messages as M
from shared.store.contacts import deserialise
from shared.store.messages import Claim, MessageStore, SendContext

KINDS = M.KINDS
ENGAGEMENT_CHECKS = ("email.not_opened", "email.not_clicked")
CONFIRM_CHECK = M.CONFIRM_CHECK


class NoTemplates(Exception):
    """The sender was started without a templates folder."""


class ClaimHeld(Exception):
    """Another attempt claimed this message moments ago and may be sending it: retry later, never send now.
    (The previous release's two-write claim raised it; the one-write claim never does. Kept for its callers.)"""


class Renderer(Protocol):
    """shared/messaging/templates.py TemplateSet: raises TemplateError for a missing template or variable."""

    def render(
        self, template_name: str | None, channel: str, context: dict[str, Any], subject: str | None = None
    ) -> Rendered: ...


@dataclass(frozen=True)
class Policy:
    configuration_set: str = ""
    # A message marked sent whose provider has not confirmed it (SES's Send event, an SMS receipt) this long after
    # the claim is marked `unconfirmed` with why (never resent). Longer than the sender Lambda's timeout and the
    # providers' usual event delay (seconds); a confirmation arriving later still turns it back to sent.
    confirm_window: timedelta = timedelta(minutes=15)
    # SMS: the first receipt may be a carrier's final one, which End User Messaging says can take up to 72 hours
    # (it reports UNKNOWN after that), so a text is marked unconfirmed only past that.
    sms_confirm_window: timedelta = timedelta(hours=73)
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
        # One write before the provider call: claimed and marked sent, with its counter and checks.
        state, current = self.messages.claim(contact_id, mid, claim_id, now, self._with_claim(msg, now))
        if state is Claim.GONE:
            return Delivered(mid, "ignored", "message item no longer exists")
        if state is Claim.DONE:
            return Delivered(mid, "done", f"already {current.get('status')}")
        try:
            provider_id = channel.send(out)
        except ChannelError as err:
            # The failure path's one more write: the claim given back, or the outcome, with the claim's undo.
            if err.retryable:
                self.messages.release(contact_id, mid, claim_id, f"{err.code}", self._undo(msg, now))
                raise
            if err.uncertain:  # the call may have reached the provider: never resent; its send event confirms it
                why = f"{err.channel} provider call ended without an answer ({err.code}); not resent (it may have "
                why += "been sent); its send event will confirm it"
                return self._outcome(msg, M.UNCONFIRMED, why, now, expect=M.SENT, claim_id=claim_id)
            return self._outcome(
                msg,
                M.FAILED,
                f"{err.channel} provider refused it: {err.code}",
                now,
                expect=M.SENT,
                claim_id=claim_id,
                undo=self._undo(msg, now),
            )
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

    def _with_claim(self, msg: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
        """What the claim writes with it, in the same transaction: the reputation counter, the engagement checks
        (email.not_opened / not_clicked) and the provider-confirmation check. email.sent / sms.sent are not written
        here: the provider's own feedback routes them, once it has the message (feedback.absorb)."""
        channel, contact_id, mid = msg["channel"], str(msg[C.PK]).removeprefix("CONTACT#"), msg["message_id"]
        writes: list[dict[str, Any]] = []
        if channel in ("email", "alert") and self.policy.configuration_set:
            writes.append(
                self.messages.count(self.policy.configuration_set, now, {"sends": 1}, self.policy.counters_keep)
            )
        window = self.policy.engagement_window
        if channel == "email" and window and msg.get("workflow"):
            after = _duration(window)
            for etype in ENGAGEMENT_CHECKS:
                writes.append(self.messages.check_item(contact_id, mid, etype, now + window, after))
        confirm = self.policy.sms_confirm_window if channel == "sms" else self.policy.confirm_window
        writes.append(self.messages.check_item(contact_id, mid, CONFIRM_CHECK, now + confirm, _duration(confirm)))
        return writes

    def _undo(self, msg: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
        """A failed send's undo of `_with_claim`: the counter taken back, the checks deleted (the counter's hour is
        the claim's, so the undo uses the claim's time too)."""
        channel, contact_id, mid = msg["channel"], str(msg[C.PK]).removeprefix("CONTACT#"), msg["message_id"]
        writes: list[dict[str, Any]] = []
        if channel in ("email", "alert") and self.policy.configuration_set:
            keep = self.policy.counters_keep
            writes.append(self.messages.count(self.policy.configuration_set, now, {"sends": -1}, keep))
        if channel == "email" and self.policy.engagement_window and msg.get("workflow"):
            writes += [self.messages.check_delete(contact_id, mid, etype) for etype in ENGAGEMENT_CHECKS]
        writes.append(self.messages.check_delete(contact_id, mid, CONFIRM_CHECK))
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
        undo: list[dict[str, Any]] | None = None,
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
            history=M.history_record(msg, status, why, now),
            extra=extra,
            extra_writes=undo,
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
