"""Unsubscribe by email: the receiver of List-Unsubscribe's mailto: form. An SES receipt rule (inbound email on the
unsubscribe address) invokes this Lambda with each message's notification (Records[].ses: mail.commonHeaders and
receipt; the body is not needed). The token the mailto: link put in the subject unsubscribes the contact through the
same code as the one-click POST (shared/messaging/unsubscribe.handle, via handle_mail), and email.unsubscribed goes
to the router through the table's outbox (an EVENT# item: the router's stream consumer routes it), once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3

from shared import clock
from shared import constants as C
from shared.events_base import stable_hash
from shared.lambda_logger import FirstUseLogger
from shared.messaging import unsubscribe
from shared.store.contacts import ContactStore, epoch

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = FirstUseLogger(C.SERVICE_NAME)  # Powertools loads with the first invocation
REQUIRED = (C.ENV_TABLE_NAME, C.ENV_UNSUBSCRIBE_KEY_PARAMETER)


@dataclass(frozen=True)
class MailSettings:
    """The stack's environment variables (checked for presence): a dataclass, so the import loads no pydantic."""

    table_name: str
    unsubscribe_key_parameter: str

    @classmethod
    def from_env(cls) -> MailSettings:
        missing = [k for k in REQUIRED if not os.environ.get(k)]
        if missing:
            raise RuntimeError(f"unsubscribe mail misconfigured: environment variable(s) {', '.join(missing)} not set")
        return cls(
            table_name=os.environ[C.ENV_TABLE_NAME],
            unsubscribe_key_parameter=os.environ[C.ENV_UNSUBSCRIBE_KEY_PARAMETER],
        )


_store: ContactStore | None = None
_key_parameter = ""


def store() -> ContactStore:
    global _store, _key_parameter
    if _store is None:
        s = MailSettings.from_env()
        _store, _key_parameter = ContactStore(s.table_name, boto3.client("dynamodb")), s.unsubscribe_key_parameter
    return _store


def reset() -> None:
    """Forget the cold-start state (tests swap the environment)."""
    global _store
    _store = None


def handle_record(contacts: ContactStore, key: bytes, record: dict[str, Any]) -> str:
    """One received message: its outcome (unsubscribed, already, or why nothing changed), never an address."""
    now = clock.now()
    result = unsubscribe.handle_mail(contacts, key, record, now)
    if result.event is None:
        return f"ignored ({result.status})"
    ev = result.event
    item = {
        C.PK: f"EVENT#{stable_hash('unsubscribe', ev.id)}",
        C.SK: "EVENT",
        "id": ev.id,
        "type": ev.type,
        "contact_id": ev.contact.contact_id,
        "data": ev.data,
        "at": now.isoformat(),
        "status": "pending",
        C.TTL_ATTRIBUTE: epoch(now) + 7 * 86400,
    }
    # A second mail for the same message (or SES's retry of this invocation) finds the event written: consent is
    # withdrawn again (idempotent), and the router hears of it once.
    return "unsubscribed" if contacts.put_item(item, only_new=True) else "unsubscribed (event already queued)"


@logger.inject_lambda_context(clear_state=True)  # never log_event: the notification names the sender's address
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    contacts = store()
    from aws_lambda_powertools.utilities import parameters

    key = str(parameters.get_parameter(_key_parameter, decrypt=True, max_age=300)).encode()
    outcomes = [handle_record(contacts, key, r) for r in event.get("Records", [])]
    for outcome in outcomes:
        logger.info("unsubscribe mail", extra={"outcome": outcome})
    # The rule's only action: a synchronous invocation may stop the rule set here; an asynchronous one ignores it.
    return {"disposition": "STOP_RULE_SET"}
