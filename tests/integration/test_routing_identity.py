"""Identity safety and activation: an event adds identities a contact lacks and never replaces one it has (the
conflict is kept and shown); an unknown contact_id is refused; events from before a workflow's activation never
count."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.events import ContactEvent
from shared.lifecycle import ensure_activated, read_status
from shared.routing import UnknownContact
from shared.store.contacts import contact_pk
from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import contact, event, executions, messages, workflow

HELLO = """
name: hello
triggers: [{event: order.paid}]
reentry: always
steps:
  - id: hello
    send_email: {template: hello}
"""

TAGGED = """
name: vip
triggers: [{event: tag.added, where: {tag: vip}}]
steps:
  - id: welcome-vip
    send_email: {template: vip}
"""


def test_a_known_phone_with_a_new_email_keeps_the_stored_email_and_records_the_conflict() -> None:
    with Simulation([workflow(HELLO)]) as sim:
        sim.send(event("o1", "order.paid", {}, email="ann@example.com", phone="+393471234567"))
        sim.advance(DEFAULT_START + timedelta(days=1))
        sim.send(event("o2", "order.paid", {}, email="ann.new@example.com", phone="+393471234567"))
        sim.finish()
        ann = contact(sim, phone="+393471234567")
        assert ann["email"] == "ann@example.com"
        assert [m[2] for m in messages(sim, phone="+393471234567")] == ["hello", "hello"]
        assert {m["to"] for m in ann["messages"]} == {"ann@example.com"}  # mail never goes to the new address
        (conflict,) = ann["identity_conflicts"]
        assert {k: conflict[k] for k in ("kind", "kept", "offered")} == {
            "kind": "email",
            "kept": "ann@example.com",
            "offered": "ann.new@example.com",
        }
        # The new address points at nobody: an event naming only it is a different person.
        assert sim.store.get_item("IDENT#email#ann.new@example.com", "IDENT") is None
        sim.send(event("o3", "order.paid", {}, email="ann.new@example.com"))
        sim.send(event("o2", "order.paid", {}, email="ann.new@example.com", phone="+393471234567"))  # redelivery
        assert len(contact(sim, phone="+393471234567")["identity_conflicts"]) == 1
        assert len(sim.contacts()) == 2


def test_an_identity_another_contact_holds_is_not_moved_and_the_conflict_is_recorded() -> None:
    with Simulation([workflow(HELLO)]) as sim:
        sim.send(event("o1", "order.paid", {}, email="bo@example.com"))
        sim.send(event("o2", "order.paid", {}, phone="+393470000001"))
        sim.send(event("o3", "order.paid", {}, email="bo@example.com", phone="+393470000001"))
        bo = contact(sim, email="bo@example.com")
        assert bo["phone"] is None
        assert [c["kind"] for c in bo["identity_conflicts"]] == ["phone"]
        assert bo["identity_conflicts"][0]["other_contact"] == contact(sim, phone="+393470000001")["id"]
        assert sim.store.get_item("IDENT#phone#+393470000001", "IDENT")["contact_id"] != bo["id"]


def test_an_event_adds_identities_the_contact_lacks_and_the_summary_shows_them() -> None:
    with Simulation([workflow(HELLO)]) as sim:
        sim.send(event("o1", "order.paid", {}, email="cy@example.com"))
        sim.send(event("o2", "order.paid", {}, email="cy@example.com", phone="+393470000002", external_id="shopify:9"))
        sim.send(event("o3", "order.paid", {}, external_id="stripe:cus_1", phone="+393470000002"))
        cy = contact(sim, email="cy@example.com")
        assert cy["identities"] == {
            "email": "cy@example.com",
            "phone": "+393470000002",
            "external": ["shopify:9", "stripe:cus_1"],
        }
        assert cy["identity_conflicts"] == []
        # A second Shopify id for the same person is a conflict, not a second id of that provider.
        sim.send(event("o4", "order.paid", {}, email="cy@example.com", external_id="shopify:10"))
        assert contact(sim, email="cy@example.com")["identities"]["external"] == ["shopify:9", "stripe:cus_1"]
        assert [c["offered"] for c in contact(sim, email="cy@example.com")["identity_conflicts"]] == ["shopify:10"]
        assert len(sim.contacts()) == 1


def test_an_unknown_contact_id_is_refused_and_creates_nothing() -> None:
    with Simulation([workflow(HELLO)]) as sim:
        ghost = ContactEvent.model_validate(
            {"id": "g1", "type": "order.paid", "contact": {"contact_id": "c-nobody"}, "data": {}}
        )
        with pytest.raises(UnknownContact, match=r"contact_id.*c-nobody"):
            sim.router.handle(ghost)
        assert sim.contacts() == []
        assert sim.store.get_item(contact_pk("c-nobody"), "PROFILE") is None
        assert sim.store.query_prefix(contact_pk("c-nobody"), "ACT#") == []
        assert executions(sim, "hello") == []


def test_tags_added_before_the_workflow_was_activated_do_not_trigger_it() -> None:
    activated = DEFAULT_START + timedelta(hours=2)
    with Simulation([workflow(TAGGED)], activated_at=activated) as sim:

        def tag(eid: str, email: str, occurred: timedelta) -> ContactEvent:
            body = {"id": eid, "type": "tag.added", "contact": {"email": email}, "data": {"tag": "vip"}}
            return ContactEvent.model_validate({**body, "occurred_at": (DEFAULT_START + occurred).isoformat()})

        old = sim.send(tag("t1", "dee@example.com", timedelta(days=-365 * 6)))  # dated 2020, replayed now
        early = sim.send(tag("t2", "eve@example.com", timedelta(hours=1)))
        sim.advance(activated + timedelta(minutes=1))
        fresh = sim.send(tag("t3", "fay@example.com", timedelta(hours=2, minutes=1)))
        sim.finish()
        refusal = f"the event happened before the workflow was activated ({activated.isoformat()})"
        assert [r.why for r in old] == [refusal]
        assert [r.why for r in early] == [refusal]
        assert [r.action for r in fresh] == ["entered"]
        assert [c["email"] for c in sim.summary()["contacts"] if c["messages"]] == ["fay@example.com"]
        # The tag itself is still the contact's: only the entry is refused.
        assert contact(sim, email="dee@example.com")["tags"] == ["vip"]
        status = read_status(sim.store, "vip")
        assert (status.active, status.since) == (True, activated)


def test_activation_is_recorded_once_and_never_moves_or_undoes_a_deactivation() -> None:
    with Simulation([workflow(HELLO)]) as sim:
        first = ensure_activated(sim.store, "hello", DEFAULT_START)
        again = ensure_activated(sim.store, "hello", DEFAULT_START + timedelta(days=3))  # a redeploy
        assert first.since == again.since == DEFAULT_START
        sim.lifecycle.deactivate("hello")
        assert ensure_activated(sim.store, "hello", DEFAULT_START + timedelta(days=4)).active is False
        routed = sim.send(event("o1", "order.paid", {}, email="gus@example.com"))
        assert [r.action for r in routed] == ["not entered"]
