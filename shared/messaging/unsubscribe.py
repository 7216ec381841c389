"""One-click unsubscribe (RFC 8058): signed links per contact and message, checked in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.store.contacts import ContactNotFound, ContactStore

if TYPE_CHECKING:  # the sender only builds links: the event model is loaded where an unsubscribe makes its event
    from shared.events import ContactEvent

_MAC_BYTES = 16  # 128 bits of HMAC-SHA256: unguessable, and the link stays short
ONE_CLICK_BODY = "List-Unsubscribe=One-Click"  # what a mailbox provider POSTs (RFC 8058 section 3.2)
MAILTO_SUBJECT_PREFIX = "unsubscribe-"  # mailto:ADDRESS?subject=unsubscribe-TOKEN (RFC 2369 / RFC 6068)
_B64URL = r"[A-Za-z0-9_-]+"
_MAIL_TOKEN = re.compile(rf"{MAILTO_SUBJECT_PREFIX}({_B64URL}\.{_B64URL}\.{_B64URL})")


class UnsubscribeTokenError(Exception):
    """The token in the link is malformed or its signature does not verify (the message says which)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, contact_id: str, message_id: str) -> bytes:
    return hmac.new(key, f"unsubscribe\n{contact_id}\n{message_id}".encode(), hashlib.sha256).digest()[:_MAC_BYTES]


def make_token(key: bytes, contact_id: str, message_id: str) -> str:
    """`<contact>.<message>.<mac>`, each base64url: no personal data, only our ids."""
    if not key:
        raise ValueError("unsubscribe key is empty (the SSM parameter must hold a random secret)")
    parts = (contact_id.encode(), message_id.encode(), _mac(key, contact_id, message_id))
    return ".".join(_b64(p) for p in parts)


def verify_token(key: bytes, token: str) -> tuple[str, str]:
    """(contact_id, message_id) of a token this key signed; UnsubscribeTokenError otherwise."""
    pieces = token.split(".")
    if len(pieces) != 3:
        raise UnsubscribeTokenError("token: expected three dot-separated parts")
    try:
        contact_id, message_id, mac = pieces[0], pieces[1], _unb64(pieces[2])
        contact_id, message_id = _unb64(contact_id).decode(), _unb64(message_id).decode()
    except (ValueError, UnicodeDecodeError):
        raise UnsubscribeTokenError("token: a part is not base64url") from None
    if not hmac.compare_digest(mac, _mac(key, contact_id, message_id)):
        raise UnsubscribeTokenError("token: signature does not verify")
    return contact_id, message_id


@dataclass(frozen=True)
class Links:
    """Builds the unsubscribe link and headers of one marketing email."""

    key: bytes
    base_url: str  # the intake API's base URL, e.g. https://api.example.com
    mailto: str = ""  # an address that accepts unsubscribe requests by email; "" leaves the mailto form out

    def url(self, contact_id: str, message_id: str) -> str:
        # The base is the API's URL, or already its /unsubscribe/ route (what the stack hands the sender).
        base = self.base_url.rstrip("/")
        base = base if base.endswith("/unsubscribe") else f"{base}/unsubscribe"
        return f"{base}/{make_token(self.key, contact_id, message_id)}"

    def headers(self, contact_id: str, message_id: str) -> dict[str, str]:
        value = f"<{self.url(contact_id, message_id)}>"
        if self.mailto:
            token = make_token(self.key, contact_id, message_id)
            value += f", <mailto:{self.mailto}?subject={MAILTO_SUBJECT_PREFIX}{token}>"
        return {"List-Unsubscribe": value, "List-Unsubscribe-Post": ONE_CLICK_BODY}


@dataclass
class UnsubscribeResponse:
    status: int
    body: str
    event: ContactEvent | None = None  # email.unsubscribed, for the router: workflows may trigger on it


def handle(
    store: ContactStore, key: bytes, token: str, method: str, at: datetime, message: dict[str, Any] | None = None
) -> UnsubscribeResponse:
    """The /unsubscribe/<token> endpoint. POST (the one-click request a mailbox provider makes, or the
    confirmation form) withdraws email consent at once; GET only shows the confirmation form, since link
    scanners follow GETs (RFC 8058 section 3.1). `message` (the MSG item, if the caller read it) adds the
    workflow and campaign to the event."""
    try:
        contact_id, message_id = verify_token(key, token)
    except UnsubscribeTokenError as err:
        return UnsubscribeResponse(400, _page("This unsubscribe link is not valid.", str(err)))
    if method.upper() == "GET":
        form = '<form method="post"><button type="submit" name="confirm" value="1">Unsubscribe</button></form>'
        return UnsubscribeResponse(200, _page("Unsubscribe from these emails?", form, raw=True))
    if method.upper() != "POST":
        return UnsubscribeResponse(405, _page("Method not allowed", method))
    try:
        store.get(contact_id)
    except ContactNotFound:
        return UnsubscribeResponse(404, _page("Nothing to unsubscribe", "This contact no longer exists."))
    data = {"message_id": message_id}
    for k in ("campaign", "template", "workflow", "step"):
        if message and message.get(k):
            data[k] = message[k]
    store.apply_event(contact_id, "email.unsubscribed", data, at)  # consent.email = false, now
    from shared.events import ContactEvent, ContactRef

    event = ContactEvent(
        id=f"unsubscribe:{message_id}",
        type="email.unsubscribed",
        contact=ContactRef(contact_id=contact_id),
        data=data,
        occurred_at=at,
    )
    return UnsubscribeResponse(200, _page("You are unsubscribed.", "You will not receive these emails again."), event)


def mail_token(subject: str, recipients: list[str] | None = None) -> str | None:
    """The token of an unsubscribe email: in its subject, as the mailto: link set it (a client may prefix "Re:"
    or fold it), else after a '+' in the address it was sent to (unsubscribe+TOKEN@...). None when neither has
    one."""
    found = _MAIL_TOKEN.search(re.sub(r"\s+", "", subject or ""))
    if found:
        return found.group(1)
    for address in recipients or []:
        local = address.rsplit("@", 1)[0]
        if "+" in local:
            tag = local.split("+", 1)[1]
            found = _MAIL_TOKEN.fullmatch(MAILTO_SUBJECT_PREFIX + tag)
            if found:
                return found.group(1)
    return None


def handle_mail(store: ContactStore, key: bytes, record: dict[str, Any], at: datetime) -> UnsubscribeResponse:
    """One message SES received for the unsubscribe address (a receipt rule's Lambda action: Records[].ses with
    mail.commonHeaders and receipt). Its token unsubscribes the contact through `handle` as the one-click POST,
    so a mailed request and a clicked one do the same thing (and give the same email.unsubscribed event id). A
    message SES found a virus in, or one without a token, changes nothing."""
    notice = record.get("ses") or {}
    mail, receipt = notice.get("mail") or {}, notice.get("receipt") or {}
    if (receipt.get("virusVerdict") or {}).get("status") == "FAIL":
        return UnsubscribeResponse(422, "virus verdict FAIL: ignored")
    subject = str((mail.get("commonHeaders") or {}).get("subject") or "")
    token = mail_token(subject, list(receipt.get("recipients") or mail.get("destination") or []))
    if token is None:
        return UnsubscribeResponse(400, "no unsubscribe token in the subject or the address")
    return handle(store, key, token, "POST", at)


def _page(title: str, text: str, raw: bool = False) -> str:
    body = text if raw else html.escape(text)
    return f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1><p>{body}</p>"
