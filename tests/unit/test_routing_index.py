"""The routing index, the activity windows conditions read, and the profile changes an event makes (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from shared.events import ContactRef
from shared.facts import conditions_window
from shared.runtime.index import ACTIVITY_CEILING, RoutingIndex
from shared.store.contacts import ContactStore, Op, Snapshot, _expressible, apply_ops, event_ops
from shared.workflow.conditions import Condition
from shared.workflow.model import Workflow, parse_workflow

AT = datetime(2026, 11, 30, 9, tzinfo=UTC)


def wf(text: str) -> Workflow:
    return parse_workflow(yaml.safe_load(text), "<test>")


CART = wf("""
name: cart
triggers: [{event: checkout.abandoned}, {event: checkout.abandoned, where: {cart_value: {gt: 10}}}]
steps:
  - id: wait
    wait_until: {event: order.paid, timeout: 1d}
  - id: bought
    goal: {condition: {did_event: {event: order.paid, within: 2d}}}
""")
NEWS = wf("""
name: news
triggers: [{event: list.subscribed}]
steps:
  - id: hello
    send_email: {template: hello}
  - id: clicked
    goal: {event: email.clicked}
""")


def test_the_index_maps_each_event_type_to_the_workflows_that_listen_to_it() -> None:
    idx = RoutingIndex.build([CART, NEWS])
    ((wf_, triggers),) = idx.triggers["checkout.abandoned"]
    assert wf_.name == "cart" and len(triggers) == 2  # both triggers, in file order
    assert [w.name for w, _ in idx.triggers["list.subscribed"]] == ["news"]
    assert "page.visited" not in idx.triggers and not idx.listens("page.visited")
    assert idx.event_goals == {"email.clicked": {"news"}}
    assert idx.condition_goals == {"cart"}
    assert idx.wait_events == {"order.paid"} and not idx.condition_waits
    assert [g.id for g in idx.goals["cart"]] == ["bought"]
    assert idx.activity_window == timedelta(days=2)


def test_activity_windows_are_the_longest_within_and_the_ceiling_without_one() -> None:
    def cond(raw: dict[str, Any]) -> Condition:
        return Condition.model_validate(raw)

    assert conditions_window([cond({"has_tag": "vip"})]) is None  # reads no activity: none is read
    assert conditions_window([cond({"did_event": {"event": "a.b", "within": 3600}})]) == timedelta(hours=1)
    both = cond({"any": [{"did_event": {"event": "a.b", "within": 60}}, {"opened_email": "x", "within": 7200}]})
    assert conditions_window([both, None]) == timedelta(hours=2)
    assert conditions_window([cond({"did_event": "a.b"})]) == ACTIVITY_CEILING
    assert RoutingIndex.build([NEWS]).activity_window is None


def test_event_ops_and_their_update_expression_agree_with_the_profile_in_memory() -> None:
    profile = {"contact_id": "c1", "tags": ["a"], "fields": {}, "score": 0}
    ops = event_ops(profile, "tag.added", {"tag": "b"}, AT) + event_ops(
        profile, "consent.withdrawn", {"channel": "email"}, AT
    )
    after = apply_ops(profile, ops)
    assert after["tags"] == ["a", "b"] and after["consent"] == {"email": False}
    # The profile has no consent map: the update sets the whole map, never a key of a missing map.
    said = _expressible(profile, after, ops)
    assert Op("set", ("consent",), {"email": False}) in said
    assert Op("add", ("tags",), {"b"}) in said


def test_an_event_adds_a_missing_identity_and_never_replaces_one() -> None:
    store = ContactStore("t", client=None)  # contact_update builds writes; it calls nothing
    snap = Snapshot("c1", profile={"contact_id": "c1", "email": "a@example.com", "fields": {}, "external_ids": []})
    ref = ContactRef(email="new@example.com", phone="+393471234567", external_id="shopify:1")
    upd = store.contact_update(snap, ref, event_id="e1", at=AT)
    assert snap.profile is not None
    assert snap.profile["email"] == "a@example.com"  # kept
    assert snap.profile["phone"] == "+393471234567" and snap.profile["external_ids"] == ["shopify:1"]
    assert [(c["kind"], c["kept"], c["offered"]) for c in upd.conflicts] == [
        ("email", "a@example.com", "new@example.com")
    ]
    idents = [w["Put"]["Item"]["pk"]["S"] for w in upd.writes if "Put" in w]
    assert idents == ["IDENT#phone#+393471234567", "IDENT#ext#shopify:1"]  # none for the refused email
    # The same event again records no second conflict.
    again = store.contact_update(snap, ref, event_id="e1", at=AT)
    assert again.conflicts == [] and again.writes[1:] == []
