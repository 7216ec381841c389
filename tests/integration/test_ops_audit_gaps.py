"""What the audit of issue 10 found untested in `history`, `stuck` and the runaway budgets, on the local stack:
delivery events listed under their message with their times, a contact found by its external id, every send not
made with why (consent withdrawn: skipped; outside the send window or over the frequency cap: held, until when); a
run that timed out and a send held past its time listed by `stuck`; the per-contact message budget counted across
two workflows in one day, pausing the workflow whose send reached it."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared import constants as C
from shared.lifecycle import read_status
from shared.messaging.feedback import handle as feedback
from shared.store.operations import OperationsStore
from shared.workflow.compiler import compile_workflow
from shared.workflow.model import Workflow, load_workflow, parse_workflow
from stepwise.ops.history import contact_history, print_report
from stepwise.ops.stats import TableSource
from stepwise.ops.stuck import find_stuck, print_stuck
from stepwise.simulate import Simulation
from tests.integration.support import TRIAL_ONBOARDING, contact, event, history, workflow
from tests.integration.test_ops_audit_stats import ses

ROOT = Path(__file__).resolve().parents[2]
NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SHOPIFY_ID = "shopify:7039294554217"


def wf(name: str, steps: list[dict[str, Any]], **settings: Any) -> Workflow:
    """A workflow entered when the contact is tagged with its name."""
    return parse_workflow(
        {
            "name": name,
            "triggers": [{"event": "tag.added", "where": {"tag": name}}],
            "settings": settings,
            "steps": steps,
        }
    )


def tag(sim: Simulation, name: str, email: str = "ana@example.com") -> None:
    sim.send(event(f"t-{name}-{email}", "tag.added", {"tag": name}, email=email))


def test_history_lists_delivery_events_under_their_message_finds_an_external_id_and_says_why_each_send_was_not_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(C.ENV_TEMPLATES_DIR, str(ROOT / "templates"))  # the messages go out (SES on moto)
    cap = {"frequency_cap": {"email": 2}}  # UTC days
    flows = [
        wf("news", [{"id": "news-mail", "send_email": {"template": "welcome-email", "subject": "News"}}], **cap),
        wf("more", [{"id": "more-mail", "send_email": {"template": "welcome-email", "subject": "More"}}], **cap),
        wf("promo", [{"id": "promo-mail", "send_email": {"template": "welcome-email", "subject": "Promo"}}], **cap),
        wf(
            "night",
            [{"id": "night-sms", "send_sms": {"template": "welcome-sms"}}],
            send_window={"between": "09:00-10:00", "timezone": "UTC"},
        ),
        wf("after", [{"id": "after-mail", "send_email": {"template": "welcome-email", "subject": "After"}}], **cap),
    ]
    with Simulation(flows, start=NOON) as sim:
        sim.send(
            event(
                "hello", "customer.created", {}, email="ana@example.com", phone="+447700900123", external_id=SHOPIFY_ID
            )
        )
        tag(sim, "news")
        ana = contact(sim, email="ana@example.com")["id"]
        (news,) = [m for m in sim.store.messages(ana) if m["step"] == "news-mail"]
        delivered_at, opened_at, clicked_at = (NOON + timedelta(minutes=m) for m in (1, 30, 31))
        ses(sim, "Delivery", ana, news, delivered_at)
        ses(sim, "Open", ana, news, opened_at)
        ses(sim, "Click", ana, news, clicked_at, link="https://example.com/news")
        tag(sim, "more")  # the second email of the day: the cap's last slot
        tag(sim, "promo")  # the third: over the cap, held until the next UTC day
        tag(sim, "night")  # an SMS outside 09:00-10:00: held until the window opens
        sim.send(
            event("w1", "consent.withdrawn", {"channel": "email", "source": "preferences"}, email="ana@example.com")
        )
        tag(sim, "after")  # no consent: skipped

        report = contact_history(OperationsStore(sim.store, sfn=sim.stack.sfn), SHOPIFY_ID)
        assert report["contact"] == ana
        assert report["identities"] == {"email": "ana@example.com", "phone": "+447700900123", "external": [SHOPIFY_ID]}
        by_step = {m["step"]: m for m in report["messages"]}
        got = by_step["news-mail"]
        assert got["status"] == "sent" and got["provider_id"]
        # The delivery events under their message, in order, with their times.
        assert got["delivery"] == [
            {"at": delivered_at.isoformat(), "event": "delivered"},
            {"at": opened_at.isoformat(), "event": "opened"},
            {"at": clicked_at.isoformat(), "event": "clicked"},
        ]
        assert (got["opened_at"], got["clicked_at"]) == (opened_at.isoformat(), clicked_at.isoformat())
        assert by_step["more-mail"]["delivery"] == []
        assert "promo-mail" not in by_step and "after-mail" not in by_step  # never queued

        # Every send not made, with why: the two held ones (until when) and the skipped one.
        next_day, nine = "2026-12-01T00:00:00Z", "2026-12-01T09:00:00Z"
        skips = {s["step"]: s for s in report["skips"]}
        assert set(skips) == {"promo-mail", "night-sms", "after-mail"}
        assert skips["after-mail"]["outcome"] == "skipped"
        assert skips["after-mail"]["why"] == "contact withdrew email consent"
        assert skips["promo-mail"]["outcome"] == "held" and skips["promo-mail"]["until"] == next_day
        assert skips["promo-mail"]["why"].startswith("frequency cap: 2 email per day reached on 2026-11-30")
        assert skips["night-sms"]["outcome"] == "held" and skips["night-sms"]["until"] == nine
        assert skips["night-sms"]["why"].startswith("outside the send window")
        assert all(s["workflow"] == s["step"].split("-")[0] for s in report["skips"])

        out = io.StringIO()
        print_report(report, out)
        text = out.getvalue()
        assert f"delivered {delivered_at.isoformat()}, opened {opened_at.isoformat()}" in text
        assert f"clicked {clicked_at.isoformat()}" in text
        assert "after/after-mail: skipped: contact withdrew email consent" in text
        assert f"promo/promo-mail: held until {next_day}: frequency cap" in text
        assert f"night/night-sms: held until {nine}: outside the send window" in text
        assert f"external {SHOPIFY_ID}" in text
        json.dumps(report, default=str)


CART: list[dict[str, Any]] = [
    {"id": "remind", "send_email": {"template": "cart-reminder"}},
    {"id": "after-send", "add_tag": "reminded"},
]


def test_stuck_lists_a_run_that_timed_out_and_a_send_held_past_its_time() -> None:
    onboarding = workflow(TRIAL_ONBOARDING)
    cart = wf("cart", CART, send_window={"between": "09:00-10:00", "timezone": "UTC"})
    reply = wf(
        "reply",
        [
            {"id": "wait-reply", "wait_until": {"event": "form.submitted", "timeout": "1d"}},
            {"id": "replied", "add_tag": "replied"},
        ],
    )
    with Simulation([onboarding, cart, reply], start=NOON) as sim:
        # The product's own machines have no run timeout; one an operator puts on the machine (TimeoutSeconds: a
        # run may last at most an hour) ends the run TIMED_OUT during its three-day wait.
        sfn, machine = sim.stack.sfn, sim.machines["onboarding"]
        fn = sim.stack.lambda_.get_function(FunctionName="stepwise-step-runner")["Configuration"]["FunctionArn"]
        definition = {**compile_workflow(onboarding, fn), "TimeoutSeconds": 3600}
        sfn.update_state_machine(stateMachineArn=machine, definition=json.dumps(definition))
        sim.send(event("a1", "list.subscribed", {"list": "trial"}, email="ana@example.com"))
        tag(sim, "cart", "bo@example.com")  # outside 09:00-10:00: held until tomorrow 09:00
        sim.advance(NOON + timedelta(hours=2))
        ana = contact(sim, email="ana@example.com")["id"]
        bo = contact(sim, email="bo@example.com")["id"]
        (run,) = sfn.list_executions(stateMachineArn=machine)["executions"]
        assert run["status"] == "TIMED_OUT"
        ops = OperationsStore(sim.store, sfn=sfn, workers=1)

        report = find_stuck(ops, "onboarding", machine, now=sim.now)
        assert [(s.contact_id, s.problem, s.step) for s in report.stuck] == [(ana, "timed_out", "three-days")]
        (timed_out,) = report.stuck
        assert timed_out.execution_arn == run["executionArn"] and "TIMED_OUT" in timed_out.detail
        assert report.ended_read == 1
        out = io.StringIO()
        print_stuck(report, out)
        assert "timed_out at three-days" in out.getvalue()
        assert f"resume: stepwise resume {ana} onboarding --at three-days" in out.getvalue()

        # Bo's held send is due at 09:00 tomorrow: not stuck before 10:00 (the margin), listed after.
        cart_machine = sim.machines["cart"]
        due = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
        assert find_stuck(ops, "cart", cart_machine, now=due + timedelta(minutes=50)).stuck == []
        (held,) = find_stuck(ops, "cart", cart_machine, now=due + timedelta(hours=3)).stuck
        assert (held.contact_id, held.problem, held.step) == (bo, "overdue", "remind")
        assert held.detail.startswith(f"due {due.isoformat()}, 3:00:00 late")
        assert held.since == NOON.isoformat()

        # A wait_until whose timeout (1d) passed more than the margin ago while the run still waits there: overdue.
        tag(sim, "reply", "cy@example.com")
        cy = contact(sim, email="cy@example.com")["id"]
        began = sim.now
        assert find_stuck(ops, "reply", sim.machines["reply"], now=began + timedelta(days=1, minutes=30)).stuck == []
        (late,) = find_stuck(ops, "reply", sim.machines["reply"], now=began + timedelta(days=1, hours=2)).stuck
        assert (late.contact_id, late.problem, late.step) == (cy, "overdue", "wait-reply")
        assert late.detail.startswith(f"due {(began + timedelta(days=1)).isoformat()}, 2:00:00 late")


A_STEPS = """
name: {name}
triggers: [{{event: tag.added, where: {{tag: {name}}}}}]
reentry: always
steps:
  - id: {name}-1
    send_email: {{template: {name}-1}}
  - id: {name}-2
    send_email: {{template: {name}-2}}
  - id: {name}-done
    add_tag: {name}-done
"""


def test_the_message_budget_counts_two_workflows_together_and_pauses_the_one_whose_send_reached_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "stepwise.yaml").write_text("settings:\n  budgets: {messages_per_contact_per_day: 3}\n")
    for name in ("first", "second"):
        (tmp_path / f"{name}.yaml").write_text(A_STEPS.format(name=name))
    flows = [load_workflow(tmp_path / "first.yaml"), load_workflow(tmp_path / "second.yaml")]
    with Simulation(flows, start=NOON) as sim:
        tag(sim, "first")  # two emails: 2 of 3
        tag(sim, "second")  # one email (3 of 3), then the fourth of the day reaches the budget
        ana = contact(sim, email="ana@example.com")
        assert [m["template"] for m in ana["messages"] if m["channel"] == "email"] == ["first-1", "first-2", "second-1"]
        records = {(h["workflow"], h["step"]): h for h in history(sim, email="ana@example.com")}
        skipped = records[("second", "second-2")]
        assert skipped["outcome"] == "skipped"
        assert "runaway budget: 3 messages to one contact on 2026-11-30 (UTC) reached" in skipped["why"]
        assert "workflow second paused" in skipped["why"]
        # The run goes on after the skipped send (it is a skip, not a stop); the workflow is paused for new entries.
        assert records[("second", "second-done")]["outcome"] == "done"
        assert not read_status(sim.store, "second").active
        assert "runaway budget: 3 messages" in read_status(sim.store, "second").reason
        # The workflow whose sends came first, within the budget, is not paused.
        assert read_status(sim.store, "first").active
        # Nobody enters the paused workflow; the other still takes contacts (another contact's own budget).
        tag(sim, "second", "bo@example.com")
        tag(sim, "first", "bo@example.com")
        bo = contact(sim, email="bo@example.com")
        assert [m["template"] for m in bo["messages"] if m["channel"] == "email"] == ["first-1", "first-2"]
        refused = [r for _, r, _ in sim.routed if r.workflow == "second" and r.action == "not entered"]
        assert any(r.contact == bo["id"] and "runaway budget" in r.why for r in refused)
        # Ana's next email from `first` the same day is over her budget too: skipped, and `first` paused with it.
        sim.send(event("t-first-again", "tag.added", {"tag": "first"}, email="ana@example.com"))
        later = [h for h in history(sim, "first", email="ana@example.com") if h["outcome"] == "skipped"]
        assert later and all("runaway budget: 3 messages" in h["why"] for h in later)
        assert not read_status(sim.store, "first").active


def sms_receipt(sim: Simulation, contact_id: str, msg: dict[str, Any], kind: str, at: datetime) -> None:
    """End User Messaging's delivery receipt for our SMS (its documented shape, with the context the sender set),
    through the feedback Lambda's domain step, then routed."""
    detail = {
        "eventType": kind,
        "eventVersion": "1.0",
        "eventTimestamp": int(at.timestamp() * 1000),
        "isFinal": True,
        "messageId": msg.get("provider_id") or "sms-id",
        "messageStatus": kind.removeprefix("TEXT_"),
        "context": {"message_id": msg["message_id"], "contact_id": contact_id, "workflow": msg["workflow"]},
    }
    event_bridge = {"source": "aws.sms-voice", "detail-type": "Text Message Delivery Status Updated", "detail": detail}
    assert sim.delivery is not None
    for ev in feedback(event_bridge, sim.delivery.messages, sim.now):
        sim.send(ev)


def test_an_sms_delivery_receipt_counts_as_delivered_and_shows_under_its_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(C.ENV_TEMPLATES_DIR, str(ROOT / "templates"))
    texts = wf("texts", [{"id": "text", "send_sms": {"template": "welcome-sms"}}])
    with Simulation([texts], start=NOON) as sim:
        for phone in ("+447700900201", "+447700900202"):
            sim.send(event(f"t-{phone}", "tag.added", {"tag": "texts"}, phone=phone))
        ok, unreachable = (contact(sim, phone=p)["id"] for p in ("+447700900201", "+447700900202"))
        at = NOON + timedelta(seconds=20)
        for cid, kind in ((ok, "TEXT_DELIVERED"), (unreachable, "TEXT_CARRIER_UNREACHABLE")):
            (msg,) = sim.store.messages(cid)
            assert msg["status"] == "sent"
            sms_receipt(sim, cid, msg, kind, at)
        ops = OperationsStore(sim.store, sfn=sim.stack.sfn)
        f = TableSource(ops).funnel("texts", NOON - timedelta(days=1))
        assert f.messages == {"sent": 2, "delivered": 1, "opened": 0, "clicked": 0}
        (got,) = contact_history(ops, "+447700900201")["messages"]
        assert got["delivery"] == [{"at": at.isoformat(), "event": "delivered"}]
        (lost,) = contact_history(ops, "+447700900202")["messages"]
        assert lost["delivery"] == [{"at": at.isoformat(), "event": "not delivered"}]
