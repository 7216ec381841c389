"""Every published sample delivery -> the catalogue's ContactEvent: type, identity, money as Decimal, ids as strings."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from shared.events import CATALOGUE
from shared.intake.base import MalformedDelivery, NotAContactEvent
from shared.intake.pipeline import accept
from shared.intake.testing import KIT_FIXTURES, all_fixtures, load_fixture, signed

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
kit = pytest.mark.skipif(not KIT_FIXTURES.is_dir(), reason="the team kit's fixtures are not here")


def run(provider: str, topic: str, *, body: bytes | None = None, fixture: dict | None = None):
    f = fixture or load_fixture(provider, topic)
    return accept(provider, signed(f, "s", NOW, body=body), lambda _: "s")


def one(provider: str, topic: str, **kw):
    out = run(provider, topic, **kw)
    assert len(out.events) == 1
    return out.events[0]


EXPECTED = {
    ("shopify", "checkouts/create"): ("checkout.started", "john@example.com", "shopify:603851970716743400"),
    ("shopify", "checkouts/update"): ("checkout.updated", "john@example.com", "shopify:603851970716743400"),
    ("shopify", "orders/paid"): ("order.paid", "john@example.com", "shopify:115310627314723950"),
    ("shopify", "orders/cancelled"): ("order.cancelled", "john@example.com", "shopify:115310627314723950"),
    ("shopify", "customers/create"): ("contact.created", "bob@biller.com", "shopify:706405506930370000"),
    ("typeform", "form_response"): ("form.submitted", "laura@example.com", None),
    ("webflow", "form_submission"): ("form.submitted", "zaphod@heartofgold.ai", None),
    ("stripe", "checkout.session.completed"): ("order.paid", "hook@me.com", "stripe:cus_NSPHp4fOlXGw8P"),
    ("stripe", "charge.refunded"): ("order.refunded", None, "stripe:cus_00000000000000"),
    ("stripe", "invoice.payment_failed"): ("subscription.payment_failed", None, "stripe:cus_00000000000000"),
    ("stripe", "customer.subscription.deleted"): ("subscription.cancelled", None, "stripe:cus_00000000000000"),
    ("woocommerce", "order.created"): ("order.paid", "john.doe@example.com", None),
    ("woocommerce", "order.updated"): ("order.paid", "john.doe@example.com", None),
    ("calendly", "invitee.created"): ("appointment.scheduled", "test@example.com", None),
    ("calendly", "invitee.canceled"): ("appointment.cancelled", "test@example.com", None),
}
NOBODY = {("shopify", "refunds/create"), ("jotform", "submission")}  # published samples that name no contact
NOTHING = {("shopify", "orders/create")}  # a topic nobody maps: accepted, nothing to do


def test_every_fixture_is_expected_somewhere() -> None:
    assert set(all_fixtures()) <= set(EXPECTED) | NOBODY | NOTHING


@pytest.mark.parametrize(("provider", "topic"), sorted(EXPECTED))
def test_each_sample_becomes_its_catalogue_event(provider: str, topic: str) -> None:
    if provider in ("stripe", "woocommerce", "calendly") and not KIT_FIXTURES.is_dir():
        pytest.skip("the team kit's fixtures are not here")
    type_, email, external = EXPECTED[(provider, topic)]
    e = one(provider, topic)
    assert (e.type, e.contact.email, e.contact.external_id) == (type_, email, external)
    assert type_ in CATALOGUE and set(e.data) <= CATALOGUE[type_]
    assert e.source == provider
    assert e.occurred_at is None or e.occurred_at.utcoffset().total_seconds() == 0
    assert e.id.startswith(provider + ":")
    # a redelivery of the same body is the same event and the same dedupe key
    again = run(provider, topic)
    assert again.events[0].id == e.id and again.dedupe_key == run(provider, topic).dedupe_key


@pytest.mark.parametrize(("provider", "topic"), sorted(NOBODY))
def test_samples_about_nobody_are_not_contact_events(provider: str, topic: str) -> None:
    with pytest.raises(NotAContactEvent) as e:
        run(provider, topic)
    assert e.value.status == 422


def test_unmapped_topics_are_accepted_with_nothing_to_do() -> None:
    assert run("shopify", "orders/create").events == []


def test_shopify_order_money_products_and_test_flag() -> None:
    e = one("shopify", "orders/paid")
    assert e.data["order_id"] == "820982911946154500" and e.data["total"] == Decimal("388.00")
    assert e.data["currency"] == "USD" and e.test is True
    assert e.data["products"][0] == {
        "product_id": "632910392",
        "variant_id": "808950810",
        "name": "IPod Nano - 8GB",
        "quantity": 1,
        "price": Decimal("199.00"),
    }
    assert e.occurred_at == datetime(2022, 1, 1, 0, 0, tzinfo=UTC)  # 2021-12-31T19:00:00-05:00


def test_shopify_ids_beyond_2_53_stay_exact_and_the_topic_header_decides_the_type() -> None:
    f = load_fixture("shopify", "orders/paid")
    raw = json.dumps(f["body"]).replace("820982911946154500", "820982911946154508").encode()
    raw = raw.replace(b"115310627314723950", b"115310627314723954")
    e = one("shopify", "orders/paid", body=raw)
    assert e.data["order_id"] == "820982911946154508"
    assert e.contact.external_id == "shopify:115310627314723954"
    f["headers"]["x-shopify-topic"] = "orders/cancelled"
    assert one("shopify", "", fixture=f, body=raw).type == "order.cancelled"


def test_shopify_checkout_carries_the_token_cart_value_and_recovery_url() -> None:
    e = one("shopify", "checkouts/create")
    assert e.data["checkout_id"] == "123123123" and e.data["cart_value"] == Decimal("421.88")
    assert e.data["url"].startswith("https://checkout.local/")
    assert e.id == "shopify:64566a18-1d82-46a5-b639-9ccb9c7fd42a"  # X-Shopify-Webhook-Id: no Event-Id captured


def test_shopify_event_id_header_wins_and_a_missing_topic_names_the_header() -> None:
    f = load_fixture("shopify", "checkouts/create")
    f["headers"]["X-Shopify-Event-Id"] = "98880550-7158-44d4-b7cd-2c97c8a091b5"
    out = run("shopify", "", fixture=f)
    assert out.delivery_id == "98880550-7158-44d4-b7cd-2c97c8a091b5"
    assert out.dedupe_key.startswith("shopify:98880550-7158-44d4-b7cd-2c97c8a091b5:")
    del f["headers"]["x-shopify-topic"]
    with pytest.raises(MalformedDelivery) as e:
        run("shopify", "", fixture=f)
    assert e.value.field == "X-Shopify-Topic"


def test_a_wrong_kind_of_value_is_400_naming_the_field() -> None:
    f = load_fixture("shopify", "orders/paid")
    f["body"]["customer"]["email"] = ["not", "a", "string"]
    with pytest.raises(MalformedDelivery) as e:
        run("shopify", "", fixture=f)
    assert e.value.field == "customer.email"
    f = load_fixture("shopify", "orders/paid")
    f["body"]["total_price"] = "lots"
    with pytest.raises(MalformedDelivery, match="total_price"):
        run("shopify", "", fixture=f)


@kit
def test_stripe_cents_become_decimal_with_the_currency_exponent() -> None:
    e = one("stripe", "invoice.payment_failed")
    assert e.data["amount"] == Decimal("2.12") and e.data["attempt"] == 1 and e.test is True
    f = load_fixture("stripe", "invoice.payment_failed")
    f["body"]["data"]["object"].update({"currency": "jpy", "amount_due": 500})
    assert one("stripe", "", fixture=f).data["amount"] == Decimal("500")
    f["body"]["data"]["object"].update({"currency": "kwd", "amount_due": 1500})
    assert one("stripe", "", fixture=f).data["amount"] == Decimal("1.500")


@kit
def test_stripe_test_events_sharing_one_id_are_not_duplicates_but_a_redelivery_is() -> None:
    a = run("stripe", "charge.refunded")
    b = run("stripe", "invoice.payment_failed")
    assert a.delivery_id == b.delivery_id == "evt_00000000000000"
    assert a.dedupe_key != b.dedupe_key and a.events[0].id != b.events[0].id
    assert run("stripe", "charge.refunded").dedupe_key == a.dedupe_key


@kit
def test_stripe_livemode_event_keeps_its_id_and_is_not_test() -> None:
    f = load_fixture("stripe", "checkout.session.completed")
    f["body"]["livemode"] = True
    e = one("stripe", "", fixture=f)
    assert e.test is False and e.id == "stripe:evt_1MhUT6E0b6fckueSlc4GyvIi"
    f["body"]["data"]["object"]["payment_status"] = "unpaid"
    assert run("stripe", "", fixture=f).events == []


@kit
def test_woocommerce_guest_order_identity_products_and_one_id_per_order() -> None:
    created, updated = one("woocommerce", "order.created"), one("woocommerce", "order.updated")
    assert created.contact.phone is None  # "(555) 555-5555" has no country code: dropped, the email stays
    assert (created.contact.first_name, created.contact.last_name) == ("John", "Doe")
    assert created.data["total"] == Decimal("29.35") and created.data["products"][1]["variant_id"] == "23"
    assert created.data["products"][1]["name"].startswith("Ship Your Idea \u2013 Color")
    assert created.id == updated.id == "woocommerce:order:727:order.paid"  # processing then completed: once
    assert created.occurred_at == datetime(2017, 3, 22, 19, 28, 8, tzinfo=UTC)


@kit
@pytest.mark.parametrize(
    ("status", "type_"),
    [("cancelled", "order.cancelled"), ("refunded", "order.refunded"), ("pending", "checkout.started")],
)
def test_woocommerce_status_decides_the_event(status: str, type_: str) -> None:
    f = load_fixture("woocommerce", "order.updated")
    f["body"]["status"] = status
    e = one("woocommerce", "", fixture=f)
    assert e.type == type_
    if type_ == "order.refunded":
        assert e.data["amount_refunded"] == Decimal("29.35")
    if type_ == "checkout.started":
        assert e.data["checkout_id"] == "wc_order_58d2d042d1d"
    f["body"]["status"] = "failed"
    assert run("woocommerce", "", fixture=f).events == []


@kit
def test_calendly_appointment_times_and_reason() -> None:
    e = one("calendly", "invitee.created")
    assert e.data["starts_at"] == "2019-08-24T14:15:22.123456+00:00"
    assert e.contact.timezone == "America/New_York"
    assert one("calendly", "invitee.canceled").data["reason"] == "Meeting Conflict"


def test_typeform_answers_by_question_title() -> None:
    e = one("typeform", "form_response")
    assert e.data["form"] == "Webhooks example" and e.data["form_id"] == "lT4Z3j"
    assert e.data["fields"]["What is your first name?"] == "Laura"
    assert e.data["fields"]["Which of these cities is your favorite?"] == "London"
    assert e.contact.first_name == "Laura" and e.id == "typeform:LtWXD3crgy"


def test_webflow_number_phone_becomes_e164() -> None:
    e = one("webflow", "form_submission")
    assert e.contact.phone == "+15550000000" and e.contact.last_name == "Beeblebrox"
    assert e.data["fields"]["Phone Number"] == 15550000000


PRO = {"id": "o1", "text": "Pro"}


def test_tally_fields_by_label_options_as_text() -> None:
    body = {
        "eventId": "e1",
        "eventType": "FORM_RESPONSE",
        "createdAt": "2023-06-28T15:00:21.889Z",
        "data": {
            "formId": "VwbNEw",
            "formName": "Signup",
            "fields": [
                {"key": "q1", "label": "Email", "type": "INPUT_EMAIL", "value": "Ann@Example.com"},
                {"key": "q2", "label": "Phone", "type": "INPUT_PHONE_NUMBER", "value": "not a number"},
                {"key": "q3", "label": "Plan", "type": "DROPDOWN", "value": ["o1"], "options": [PRO]},
            ],
        },
    }
    e = one("tally", "", fixture={"provider": "tally", "headers": {}, "body": body})
    assert e.contact.email == "ann@example.com" and e.contact.phone is None
    assert e.data["fields"]["Plan"] == ["Pro"] and e.id == "tally:e1"


def test_jotform_answers_by_name_and_email_answer() -> None:
    f = load_fixture("jotform", "submission")
    f["body"] = f["body"].replace('"q33_typeOf"', '"q4_email":"Niloth@Example.com","q33_typeOf"')
    out = run("jotform", "", fixture=f)
    e = out.events[0]
    assert out.delivery_id == "6084250982513018472" and e.id == "jotform:6084250982513018472"
    assert e.contact.email == "niloth@example.com" and e.contact.first_name == "Niloth"
    assert e.data["form"] == "Tutor Appointment Form" and e.data["fields"]["subjectFor"] == "Math"


def test_equal_id_with_a_different_body_is_not_a_duplicate() -> None:
    f = load_fixture("typeform", "form_response")
    a = run("typeform", "", fixture=f)
    f["body"]["form_response"]["answers"][2]["text"] = "Laure"
    b = run("typeform", "", fixture=f)
    assert a.delivery_id == b.delivery_id and a.dedupe_key != b.dedupe_key


def test_redelivery_with_another_received_time_keeps_the_event() -> None:
    f = load_fixture("typeform", "form_response")
    d = signed(f, "s", NOW)
    later = accept("typeform", replace(d, received_at=datetime(2027, 1, 1, tzinfo=UTC)), lambda _: "s")
    assert later.events == accept("typeform", d, lambda _: "s").events
