"""Unsubscribe by email on moto: the mailto: of List-Unsubscribe, received by SES's receipt rule, through the
Lambda it invokes (functions/senders/unsubscribe_mail.py), fed SES's documented Lambda-action notification."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from shared import constants as C
from shared.messaging.unsubscribe import mail_token, make_token
from shared.workflow.model import load_workflow
from stepwise.outbox import LOCAL_UNSUBSCRIBE_KEY, LOCAL_UNSUBSCRIBE_MAILTO
from stepwise.simulate import DEFAULT_START, TABLE, Simulation
from tests.integration.support import event, history
from tests.integration.test_senders import CART, LambdaCtx, mime, ses_sent, templates  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[2]
KEY_PARAMETER = "/stepwise/local/unsubscribe-key"


def ses_inbound(to: str, subject: str, *, virus: str = "PASS") -> dict[str, Any]:
    """SES's event for a receipt rule's Lambda action (the documented notification: mail with its common
    headers, receipt with the verdicts and the action); the body is not included."""
    return {
        "Records": [
            {
                "eventSource": "aws:ses",
                "eventVersion": "1.0",
                "ses": {
                    "mail": {
                        "timestamp": "2026-11-30T09:30:00.000Z",
                        "source": "ana@example.com",
                        "messageId": "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1",
                        "destination": [to],
                        "headersTruncated": False,
                        "headers": [
                            {"name": "From", "value": "Ana <ana@example.com>"},
                            {"name": "To", "value": to},
                            {"name": "Subject", "value": subject},
                        ],
                        "commonHeaders": {
                            "returnPath": "ana@example.com",
                            "from": ["Ana <ana@example.com>"],
                            "date": "Mon, 30 Nov 2026 09:30:00 +0000",
                            "to": [to],
                            "messageId": "<CAEddw6POFV_On91m+ZoL_SN8B_M2goDe_Ni355owhc7QSjPQSQ@mail.example.com>",
                            "subject": subject,
                        },
                    },
                    "receipt": {
                        "timestamp": "2026-11-30T09:30:00.000Z",
                        "processingTimeMillis": 574,
                        "recipients": [to],
                        "spamVerdict": {"status": "PASS"},
                        "virusVerdict": {"status": virus},
                        "spfVerdict": {"status": "PASS"},
                        "dkimVerdict": {"status": "PASS"},
                        "dmarcVerdict": {"status": "PASS"},
                        "dmarcPolicy": "reject",
                        "action": {
                            "type": "Lambda",
                            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:unsubscribe-mail",
                            "invocationType": "Event",
                        },
                    },
                },
            }
        ]
    }


@pytest.fixture
def mail_handler(monkeypatch: pytest.MonkeyPatch) -> Any:
    from functions.senders import unsubscribe_mail

    monkeypatch.setenv(C.ENV_TABLE_NAME, TABLE)
    monkeypatch.setenv(C.ENV_UNSUBSCRIBE_KEY_PARAMETER, KEY_PARAMETER)
    unsubscribe_mail.reset()
    yield unsubscribe_mail
    unsubscribe_mail.reset()


def test_a_mailed_unsubscribe_withdraws_consent_and_the_next_send_is_skipped_with_why(
    templates: Path,  # noqa: F811
    mail_handler: Any,
) -> None:
    wf = load_workflow(ROOT / "workflows" / "abandoned-checkout.yaml")
    with Simulation([wf]) as sim:
        boto3.client("ssm", region_name=sim.stack.region).put_parameter(
            Name=KEY_PARAMETER, Value=LOCAL_UNSUBSCRIBE_KEY.decode(), Type="SecureString"
        )
        sim.send(event("co-1", "checkout.abandoned", CART, email="ana@example.com", first_name="Ana"))
        (sent,) = ses_sent()
        _https, mailto = re.findall(r"<([^>]+)>", mime(sent)["List-Unsubscribe"])
        address, subject = re.fullmatch(r"mailto:([^?]+)\?subject=(.+)", mailto).groups()  # type: ignore[union-attr]
        assert address == LOCAL_UNSUBSCRIBE_MAILTO

        # The contact's mail client sends the mailto: (a reply prefix does not matter); SES invokes the Lambda.
        answer = mail_handler.handler(ses_inbound(address, f"Re: {subject}"), LambdaCtx())
        assert answer == {"disposition": "STOP_RULE_SET"}
        cid = sim.contacts()[0]
        assert sim.store.get(cid).consent == {"email": False}
        # SES retries an asynchronous invocation that failed; a repeat changes nothing more and queues no event.
        mail_handler.handler(ses_inbound(address, subject), LambdaCtx())
        sim.settle()  # the router's stream consumer routes the outbox's email.unsubscribed
        assert [a["type"] for a in sim.store.activity(cid)].count("email.unsubscribed") == 1

        sim.advance(DEFAULT_START + timedelta(days=1, minutes=1))
        assert len(ses_sent()) == 1  # the reminder's second email was not sent
        why = {(h["step"], h["outcome"]): h["why"] for h in history(sim, email="ana@example.com")}
        assert why[("remind-again", "skipped")] == "contact withdrew email consent"


def test_a_mail_without_a_valid_token_or_with_a_virus_changes_nothing(templates: Path, mail_handler: Any) -> None:  # noqa: F811
    with Simulation([]) as sim:
        boto3.client("ssm", region_name=sim.stack.region).put_parameter(
            Name=KEY_PARAMETER, Value=LOCAL_UNSUBSCRIBE_KEY.decode(), Type="SecureString"
        )
        cid = sim.store.upsert(event("e", "x.y", {}, email="bo@example.com").contact)
        good = make_token(LOCAL_UNSUBSCRIBE_KEY, cid, "m1")
        forged = make_token(b"another key", cid, "m1")
        store, key = mail_handler.store(), LOCAL_UNSUBSCRIBE_KEY
        to = LOCAL_UNSUBSCRIBE_MAILTO
        assert mail_handler.handle_record(store, key, ses_inbound(to, "please stop")["Records"][0]) == "ignored (400)"
        assert mail_handler.handle_record(store, key, ses_inbound(to, f"unsubscribe-{forged}")["Records"][0]) == (
            "ignored (400)"
        )
        infected = ses_inbound(to, f"unsubscribe-{good}", virus="FAIL")["Records"][0]
        assert mail_handler.handle_record(store, key, infected) == "ignored (422)"
        assert sim.store.get(cid).consent == {}
        # The token may also travel in the address (unsubscribe+TOKEN@...).
        plus = ses_inbound(f"unsubscribe+{good}@stepwise.local", "")["Records"][0]
        assert mail_handler.handle_record(store, key, plus) == "unsubscribed"
        assert sim.store.get(cid).consent == {"email": False}


def test_mail_token_is_found_in_a_folded_or_prefixed_subject() -> None:
    token = make_token(b"k" * 32, "c-1", "m-1")
    assert mail_token(f"Re: unsubscribe-{token}") == token
    assert mail_token(f"unsubscribe-{token[:20]}\r\n {token[20:]}") == token  # folded by a client
    assert mail_token("unsubscribe") is None and mail_token("", ["unsubscribe@example.com"]) is None
