"""The worked examples of PRODUCT.md, as written in workflows/, on the local stack: the path each contact takes,
the contact's resulting data, the messages sent and the history records with their 30-day TTL.
(Example 1, abandoned checkout, is in test_examples.py.)"""

from __future__ import annotations

from datetime import timedelta

from shared.store.contacts import contact_pk
from shared.workflow.model import Workflow, load_workflow
from stepwise.simulate import Simulation
from tests.integration.support import (
    assert_history_ttl,
    at,
    contact,
    executions,
    history,
    messages,
    run_in_order,
    steps,
    timed,
)


def example(*names: str) -> list[Workflow]:
    return [load_workflow(f"workflows/{name}.yaml") for name in names]


def routed(sim: Simulation, workflow: str, email: str) -> list[tuple[str, str, str]]:
    """(time, outcome, why) of each time routing considered the contact for the workflow's triggers."""
    cid = contact(sim, email=email)["id"]
    return [
        (r["at"], r["outcome"], r["why"])
        for r in sim.timeline()
        if r["contact"] == cid and r["workflow"] == workflow and r["step"].startswith("(")
    ]


def completed(sim: Simulation, contact_id: str) -> list[tuple[str, str]]:
    """(time, campaign) of each campaign the contact completed."""
    return [
        (a["at"], a["data"]["campaign"]) for a in sim.store.activity(contact_id) if a["type"] == "campaign.completed"
    ]


def test_two_offers_moves_buyers_of_offer_1_to_campaign_2_and_ends_for_the_others() -> None:
    with Simulation(example("two-offers", "campaign-1", "campaign-2")) as sim:
        funnel = {"form": "offer-1-signup", "form_type": "funnel"}
        run_in_order(
            sim,
            [
                timed(timedelta(0), "f1", "form.submitted", funnel, email="dario@example.com"),
                timed(timedelta(0), "f2", "form.submitted", funnel, email="elena@example.com"),
                timed(
                    timedelta(0), "f3", "form.submitted", {"form": "blog", "form_type": "blog"}, email="gus@example.com"
                ),
                timed(timedelta(days=2), "t1", "tag.added", {"tag": "Customer 1"}, email="dario@example.com"),
            ],
        )
        # Dario bought offer 1 while Campaign 1 ran: out of Campaign 1, into Campaign 2.
        assert steps(sim, "two-offers", email="dario@example.com") == [
            (at(), "join-campaign-1", "done"),
            (at(), "let-campaign-1-run", "waiting"),
            (at(days=3), "bought-offer-1", "branch then"),
            (at(days=3), "leave-campaign-1", "done"),
            (at(days=3), "join-campaign-2", "done"),
        ]
        assert steps(sim, "campaign-1", email="dario@example.com") == [
            (at(), "offer-1-intro", "done"),
            (at(), "two-days", "waiting"),
            (at(days=2), "offer-1-reminder", "done"),
        ]
        assert steps(sim, "campaign-2", email="dario@example.com") == [(at(days=3), "offer-2-intro", "done")]
        dario = contact(sim, email="dario@example.com")
        # Campaign 2 is one email: sent, it is completed and Dario is in no campaign any more.
        assert (dario["tags"], dario["campaigns"]) == (["Customer 1"], {})
        assert completed(sim, dario["id"]) == [(at(days=2), "campaign-1"), (at(days=3), "campaign-2")]
        assert messages(sim, email="dario@example.com") == [
            (at(), "email", "offer-1-intro"),
            (at(days=2), "email", "offer-1-reminder"),
            (at(days=3), "email", "offer-2-intro"),
        ]
        (decision,) = [h for h in history(sim, "two-offers", email="dario@example.com") if h["kind"] == "if"]
        assert decision["conditions"] == [
            {"condition": "has tag 'Customer 1'", "value": ["Customer 1"], "result": True}
        ]
        # Elena did not buy: her run ends at the decision; she completed Campaign 1 (its last email, day 2).
        assert steps(sim, "two-offers", email="elena@example.com")[2:] == [
            (at(days=3), "bought-offer-1", "branch else"),
            (at(days=3), "not-yet", "ended"),
        ]
        (ended,) = [h for h in history(sim, email="elena@example.com") if h["step"] == "not-yet"]
        assert ended["why"] == "has not bought offer 1"
        elena = contact(sim, email="elena@example.com")
        assert elena["campaigns"] == {}
        assert completed(sim, elena["id"]) == [(at(days=2), "campaign-1")]
        assert [t for _, _, t in messages(sim, email="elena@example.com")] == ["offer-1-intro", "offer-1-reminder"]
        assert steps(sim, "campaign-2", email="elena@example.com") == []
        # A blog form is not the funnel form.
        assert routed(sim, "two-offers", "gus@example.com") == [
            (at(), "not entered", "filter failed: form_type eq 'funnel'")
        ]
        assert messages(sim, email="gus@example.com") == []
        assert {e["status"] for w in ("two-offers", "campaign-1", "campaign-2") for e in executions(sim, w)} == {
            "SUCCEEDED"
        }
        assert_history_ttl(history(sim, email="dario@example.com") + history(sim, email="elena@example.com"))


def test_welcome_series_sends_sms_and_email_ten_minutes_after_joining_the_newsletter_once() -> None:
    with Simulation(example("welcome-series")) as sim:
        newsletter = {"list": "newsletter"}
        run_in_order(
            sim,
            [
                timed(
                    timedelta(0),
                    "s1",
                    "list.subscribed",
                    newsletter,
                    email="fabio@example.com",
                    phone="+44 7700 900123",
                ),
                timed(timedelta(0), "s2", "list.subscribed", {"list": "customers"}, email="ana@example.com"),
                timed(timedelta(days=1), "u1", "list.unsubscribed", newsletter, email="fabio@example.com"),
                timed(timedelta(days=2), "s3", "list.subscribed", newsletter, email="fabio@example.com"),
            ],
        )
        # The run starts at a wait: the enroller records it (no Task runs before it), once for the one entry.
        assert steps(sim, email="fabio@example.com") == [
            (at(), "settle-in", "waiting"),
            (at(minutes=10), "welcome-sms", "done"),
            (at(minutes=10), "welcome-email", "done"),
        ]
        fabio = contact(sim, email="fabio@example.com")
        assert [(m["channel"], m["template"], m["to"], m.get("subject")) for m in fabio["messages"]] == [
            ("sms", "welcome-sms", "+447700900123", None),
            ("email", "welcome-email", "fabio@example.com", "Welcome!"),
        ]
        assert {m["at"] for m in fabio["messages"]} == {at(minutes=10)}
        assert fabio["lists"] == ["newsletter"]
        # Re-entry is once: joining the newsletter again does not welcome him again.
        assert routed(sim, "welcome-series", "fabio@example.com") == [
            (at(), "entered", "started"),
            (at(days=2), "not entered", "entered before and re-entry is once"),
        ]
        assert routed(sim, "welcome-series", "ana@example.com") == [
            (at(), "not entered", "filter failed: list eq 'newsletter'")
        ]
        assert messages(sim, email="ana@example.com") == []
        assert_history_ttl(history(sim, email="fabio@example.com"))


def test_sms_not_delivered_sends_the_same_offer_by_email_each_time() -> None:
    with Simulation(example("sms-not-delivered")) as sim:
        failed = {"campaign": "spring-sale", "message_id": "m-9", "reason": "unreachable"}
        run_in_order(
            sim,
            [
                # Dario is known by email and phone; the SMS provider knows only the phone, written its own way.
                timed(
                    timedelta(0),
                    "f1",
                    "form.submitted",
                    {"form": "x"},
                    email="dario@example.com",
                    phone="+39 347 123 4567",
                ),
                timed(timedelta(hours=3), "n1", "sms.not_delivered", failed, phone="+393471234567"),
                timed(
                    timedelta(days=1),
                    "n2",
                    "sms.not_delivered",
                    {**failed, "message_id": "m-10"},
                    phone="+393471234567",
                ),
                timed(
                    timedelta(hours=4),
                    "n3",
                    "sms.not_delivered",
                    {**failed, "campaign": "autumn"},
                    phone="+393471234567",
                ),
                timed(timedelta(hours=5), "n4", "sms.not_delivered", failed, phone="+447700900999"),
            ],
        )
        # Re-entry is always: each undelivered SMS of the campaign gets its email.
        assert steps(sim, email="dario@example.com") == [
            (at(hours=3), "offer-by-email", "done"),
            (at(days=1), "offer-by-email", "done"),
        ]
        dario = contact(sim, email="dario@example.com")
        assert [(m["at"], m["channel"], m["template"], m["to"]) for m in dario["messages"]] == [
            (at(hours=3), "email", "spring-sale-offer", "dario@example.com"),
            (at(days=1), "email", "spring-sale-offer", "dario@example.com"),
        ]
        assert routed(sim, "sms-not-delivered", "dario@example.com")[1] == (
            at(hours=4),
            "not entered",
            "filter failed: campaign eq 'spring-sale'",
        )
        # A contact known only by phone has no address to email: the step is skipped, and says why.
        (stranger,) = [h for h in history(sim, phone="+447700900999")]
        assert (stranger["step"], stranger["outcome"], stranger["why"]) == (
            "offer-by-email",
            "skipped",
            "contact has no email address",
        )
        assert messages(sim, phone="+447700900999") == []
        assert_history_ttl([*history(sim, email="dario@example.com"), stranger])


def test_lead_score_alert_notifies_sales_once_when_the_score_passes_80() -> None:
    with Simulation(example("lead-score-alert")) as sim:
        run_in_order(
            sim,
            [
                timed(
                    timedelta(0),
                    "s1",
                    "score.changed",
                    {"score": 85, "previous": 60, "delta": 25},
                    email="elena@example.com",
                ),
                timed(
                    timedelta(0),
                    "s2",
                    "score.changed",
                    {"score": 40, "previous": 35, "delta": 5},
                    email="bo@example.com",
                ),
                timed(
                    timedelta(days=2),
                    "s3",
                    "score.changed",
                    {"score": 95, "previous": 85, "delta": 10},
                    email="elena@example.com",
                ),
            ],
        )
        assert steps(sim, email="elena@example.com") == [
            (at(), "mark-hot", "done"),
            (at(), "stage-qualified", "done"),
            (at(), "tell-sales", "done"),
        ]
        elena = contact(sim, email="elena@example.com")
        assert (elena["tags"], elena["stages"], elena["score"]) == (["hot-lead"], {"sales": "qualified"}, 95)
        (alert,) = elena["messages"]
        assert (alert["at"], alert["channel"], alert["to"], alert["subject"]) == (
            at(),
            "alert",
            ["sales@example.com", "lead-desk@example.com"],
            "A lead passed score 80",
        )
        # Passing 80 again within 90 days does not alert again; a score of 40 never did.
        assert routed(sim, "lead-score-alert", "elena@example.com")[1][:2] == (at(days=2), "not entered")
        assert "within once_per period" in routed(sim, "lead-score-alert", "elena@example.com")[1][2]
        assert routed(sim, "lead-score-alert", "bo@example.com") == [
            (at(), "not entered", "filter failed: score gt 80")
        ]
        bo = contact(sim, email="bo@example.com")
        assert (bo["tags"], bo["stages"], bo["messages"]) == ([], {}, [])
        assert_history_ttl(history(sim, email="elena@example.com"))


def test_holiday_series_starts_at_its_date_for_every_customer_and_branches_on_coupon_use() -> None:
    with Simulation(example("holiday-series")) as sim:
        customers = {"list": "customers"}
        fired = "2026-12-01T08:00:00+00:00"  # 09:00 in Rome
        a_week_later = "2026-12-08T08:00:00+00:00"
        run_in_order(
            sim,
            [
                timed(timedelta(0), "l1", "list.subscribed", customers, email="ana@example.com"),
                timed(
                    timedelta(0), "l2", "list.subscribed", customers, email="dario@example.com", phone="+393471234567"
                ),
                timed(timedelta(0), "l3", "list.subscribed", {"list": "newsletter"}, email="nina@example.com"),
                timed(
                    timedelta(days=1, hours=1),
                    "c1",
                    "coupon.used",
                    {"coupon": "XMAS", "order_id": "5001"},
                    email="ana@example.com",
                ),
                timed(timedelta(days=2), "l4", "list.subscribed", customers, email="late@example.com"),
            ],
        )
        # Ana used her coupon within the week: thanked.
        assert steps(sim, email="ana@example.com") == [
            (fired, "first-offer", "done"),
            (fired, "give-coupon", "done"),
            (fired, "a-week-later", "waiting"),
            (a_week_later, "used-coupon", "branch then"),
            (a_week_later, "thank-you", "done"),
        ]
        assert messages(sim, email="ana@example.com") == [
            (fired, "email", "holiday-1"),
            (a_week_later, "email", "holiday-thanks"),
        ]
        (decision,) = [h for h in history(sim, email="ana@example.com") if h["step"] == "used-coupon"]
        assert decision["conditions"][0] == {
            "condition": "did event coupon.used within 604800s",
            "value": 1,
            "result": True,
        }
        # Dario did not: a last call by email and SMS.
        assert steps(sim, email="dario@example.com")[3:] == [
            (a_week_later, "used-coupon", "branch else"),
            (a_week_later, "last-call", "done"),
            (a_week_later, "last-call-sms", "done"),
        ]
        assert sorted(messages(sim, email="dario@example.com")) == [
            (fired, "email", "holiday-1"),
            (a_week_later, "email", "holiday-last-call"),
            (a_week_later, "sms", "holiday-last-call-sms"),
        ]
        # Each got a 15% coupon valid for 14 days, in the field templates read.
        for email in ("ana@example.com", "dario@example.com"):
            code = contact(sim, email=email)["fields"]["coupon_code"]
            assert code.startswith("XMAS") and len(code) == len("XMAS") + 8
            coupon = sim.store.get_item(f"COUPON#{code}", "COUPON")
            assert coupon is not None
            assert (coupon["contact_id"], coupon["percent_off"]) == (contact(sim, email=email)["id"], 15)
            assert coupon["valid_until"] == "2026-12-15T08:00:00+00:00"
        # Not on the list, or on it only after the date: never enrolled.
        for email in ("nina@example.com", "late@example.com"):
            assert history(sim, email=email) == []
            assert messages(sim, email=email) == []
            assert sim.store.get_item(contact_pk(contact(sim, email=email)["id"]), "ENROLL#holiday-series") is None
        assert len(executions(sim, "holiday-series")) == 2
        assert_history_ttl(history(sim, email="ana@example.com") + history(sim, email="dario@example.com"))
