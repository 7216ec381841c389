"""The router (shared/routing.py) driven directly, against moto's DynamoDB and Step Functions in-process (executions
are created and stay RUNNING until stopped; no definition runs): which workflows an event enters, why one is not
entered, which waits it resumes, which goals it meets, what it learns from the message it reports on, the field
changes it routes next, and a campaign's completion. Fast enough to run for every mutant of the module
(docs/mutation.md); the end-to-end behaviour on compiled machines is in tests/integration."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from shared import clock
from shared import constants as C
from shared.enrollment import Enroller
from shared.events import ContactEvent, stable_hash
from shared.history import EntryPlan
from shared.routing import Routed, Router, outbox_to_event
from shared.runtime import schedules as sched
from shared.runtime.index import RoutingIndex
from shared.splits import SplitTests
from shared.store.checkouts import CheckoutStore
from shared.store.contacts import (
    ContactStore,
    IdentityRace,
    UnknownContact,
    activity_item,
    contact_pk,
    create_table,
    new_contact_id,
    tombstone_item,
)
from shared.store.schedules import ScheduleStore
from shared.workflow.model import SplitStep, Workflow, parse_workflow

REGION = "us-east-1"
ACCOUNT = "123456789012"
TABLE = "stepwise-test"
TEMPLATE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:stepwise-{{workflow}}"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/stepwise-test"
# Executions are only created, never run (moto without execute_state_machine): any valid definition will do.
DEFINITION = json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 86400, "End": True}}})


def wf(text: str) -> Workflow:
    return parse_workflow(yaml.safe_load(text), "<test>")


class Clock:
    """The domain clock, settable. It stays behind the wall clock, as moto dates executions by the wall clock and
    the enroller tells a repeat of StartExecution from a new run by comparing the two."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> datetime:
        self.at += timedelta(**delta)
        return self.at


@dataclass
class Env:
    store: ContactStore
    sfn: Any
    ddb: Any
    clock: Clock
    metrics: list[tuple[str, str, str, dict[str, str]]] = field(default_factory=list)

    def metric(self, name: str, workflow: str, step: str, dims: dict[str, str]) -> None:
        self.metrics.append((name, workflow, step, dims))

    def machines(self, *names: str) -> None:
        for n in names:
            self.sfn.create_state_machine(name=f"stepwise-{n}", definition=DEFINITION, roleArn=ROLE)

    def enroller(self, plans: dict[str, EntryPlan] | None = None, **kw: Any) -> Enroller:
        kw.setdefault("activated_at", self.clock.at - timedelta(days=1))
        return Enroller(self.store, self.sfn, TEMPLATE, self.metric, plans, **kw)

    def router(self, *workflows: Workflow, **kw: Any) -> Router:
        self.machines(*(w.name for w in workflows))
        return Router(list(workflows), self.store, self.enroller(), self.sfn, **kw)

    def item(self, contact_id: str, sk: str) -> dict[str, Any] | None:
        return self.store.get_item(contact_pk(contact_id), sk)

    def enrolment(self, contact_id: str, workflow: str) -> dict[str, Any]:
        got = self.item(contact_id, f"ENROLL#{workflow}")
        assert got is not None, f"no enrolment of {contact_id} in {workflow}"
        return got

    def run_input(self, contact_id: str, workflow: str) -> dict[str, Any]:
        arn = self.enrolment(contact_id, workflow)["execution_arn"]
        return dict(json.loads(self.sfn.describe_execution(executionArn=arn)["input"]))

    def trigger(self, contact_id: str, workflow: str) -> dict[str, Any]:
        """The event the contact's run of `workflow` was started with: in the execution input, or, when the input
        carries a reference to it (`stored`: the sort key of the item keeping it), read back from the partition."""
        event = dict(self.run_input(contact_id, workflow)["event"])
        if "stored" in event and "contact" not in event:
            kept = self.item(contact_id, str(event["stored"]))
            assert kept is not None, f"the trigger {event} is not kept"
            return dict(kept["event"])
        return event

    def executions(self, workflow: str) -> list[dict[str, Any]]:
        arn = TEMPLATE.replace("{workflow}", workflow)
        return list(self.sfn.list_executions(stateMachineArn=arn)["executions"])

    def history(self, contact_id: str) -> list[dict[str, Any]]:
        return self.store.history(contact_id)


@dataclass
class Aws:
    mock: Any
    ddb: Any
    sfn: Any


@pytest.fixture(name="aws", scope="module")
def aws_fixture() -> Iterator[Aws]:
    """One moto and one pair of clients for the module: creating the clients cost 0.3 s a test, most of the file's
    time (it runs for every mutant of routing.py). Each test still starts from empty backends (`env`)."""
    with mock_aws() as mock:
        yield Aws(mock, boto3.client("dynamodb", region_name=REGION), boto3.client("stepfunctions", region_name=REGION))


@pytest.fixture(name="env")
def env_fixture(aws: Aws) -> Iterator[Env]:
    aws.mock.reset()  # every backend emptied: no table, machine or execution of an earlier test is left
    create_table(aws.ddb, TABLE)
    c = Clock()
    clock.use(c)
    try:
        yield Env(ContactStore(TABLE, aws.ddb), aws.sfn, aws.ddb, c)
    finally:
        clock.use(None)


def ev(
    eid: str, etype: str, data: dict[str, Any] | None = None, at: datetime | None = None, **contact: Any
) -> ContactEvent:
    return ContactEvent.model_validate(
        {
            "id": eid,
            "type": etype,
            "contact": contact or {"email": "ada@example.com"},
            "data": data or {},
            **({"occurred_at": at.isoformat()} if at else {}),
        }
    )


def acts(out: list[Routed]) -> list[tuple[str, str, str]]:
    return [(r.workflow, r.action, r.why) for r in out]


NEWS = wf("""
name: news
triggers: [{event: list.subscribed}]
steps:
  - id: hello
    send_email: {template: hello}
""")

CART = wf("""
name: cart
triggers:
  - {event: checkout.abandoned, where: {cart_value: {gt: 100}}}
  - {event: checkout.abandoned, where: {cart_value: {gt: 10}}, delay: 1h}
steps:
  - id: remind
    send_email: {template: cart-reminder}
""")


# ---- entering -------------------------------------------------------------------------------------------------


def test_an_event_enters_the_workflows_triggered_by_its_type_once(env: Env) -> None:
    r = env.router(NEWS)
    e = ev("e1", "list.subscribed", {"list": "weekly"}, at=env.clock.at)
    (entered,) = r.handle(e)
    cid = entered.contact
    assert (entered.workflow, entered.action, entered.why) == ("news", "entered", "started")
    assert cid.startswith("c-") and env.item(cid, "PROFILE") is not None
    run = env.run_input(cid, "news")
    assert run["contact_id"] == cid and run["workflow"] == "news" and run["start_delay"] == 0
    trigger = env.trigger(cid, "news")
    assert trigger["id"] == "e1" and trigger["type"] == "list.subscribed" and trigger["data"] == {"list": "weekly"}
    assert trigger["occurred_at"] == e.model_dump(mode="json")["occurred_at"]  # as JSON gives it: ISO, with a T
    assert run["run"] == {"loops": 0, "branch": "", "resume_at": ""}
    # The same delivery again: the run exists, nothing new starts.
    assert acts(r.handle(e)) == [("news", "not entered", "already in this workflow")]
    assert len(env.executions("news")) == 1
    # Another type enters nothing.
    assert r.handle(ev("e2", "page.visited", {"url": "/"})) == []


def test_the_event_is_recorded_as_activity_and_applied_to_the_profile_unless_internal(env: Env) -> None:
    r = env.router(NEWS)
    (entered,) = r.handle(ev("e1", "list.subscribed", {"list": "weekly"}))
    cid = entered.contact
    r.handle(ev("t1", "tag.added", {"tag": "VIP"}, contact_id=cid))
    assert "VIP" in env.store.get(cid).tags
    # An internal event (the step runner's outbox, already applied) changes nothing on the profile itself...
    r.handle(ev("t2", "tag.added", {"tag": "Gold"}, contact_id=cid), internal=True)
    assert "Gold" not in env.store.get(cid).tags
    # ...and both are recorded as the contact's activity.
    types = [a["type"] for a in env.store.activity(cid)]
    assert types.count("tag.added") == 2 and "list.subscribed" in types


def test_a_contact_id_no_contact_has_is_refused(env: Env) -> None:
    r = env.router(NEWS)
    with pytest.raises(UnknownContact):
        r.handle(ev("e1", "list.subscribed", contact_id="c-nobody"))


def test_a_filter_that_fails_says_which_comparison_failed_and_the_next_trigger_is_tried(env: Env) -> None:
    r = env.router(CART)
    out = r.handle(ev("e1", "checkout.abandoned", {"cart_value": 50, "currency": "EUR"}))
    assert acts(out) == [
        ("cart", "not entered", "filter failed: cart_value gt 100"),
        ("cart", "entered", "started"),
    ]
    cid = out[0].contact
    # The trigger that matched is the one whose delay applies.
    assert env.run_input(cid, "cart")["start_delay"] == 3600
    out = r.handle(ev("e2", "checkout.abandoned", {"cart_value": 5}, email="bob@example.com"))
    assert acts(out) == [
        ("cart", "not entered", "filter failed: cart_value gt 100"),
        ("cart", "not entered", "filter failed: cart_value gt 10"),
    ]
    # The first trigger that matches wins: no second claim for the same event.
    out = r.handle(ev("e3", "checkout.abandoned", {"cart_value": 500}, email="cy@example.com"))
    assert acts(out) == [("cart", "entered", "started")]
    assert env.run_input(out[0].contact, "cart")["start_delay"] == 0


def test_a_failed_filter_lists_only_the_comparisons_that_failed(env: Env) -> None:
    two = wf("""
name: two
triggers: [{event: order.paid, where: {total: {gte: 10}, currency: EUR, coupon: {exists: true}}}]
steps: [{id: s, send_email: {template: t}}]
""")
    r = env.router(two)
    (out,) = r.handle(ev("e1", "order.paid", {"total": 5, "currency": "EUR"}))
    assert out.action == "not entered"
    assert out.why.startswith("filter failed: ")
    failed = out.why.removeprefix("filter failed: ").split("; ")
    assert len(failed) == 2 and failed[0].startswith("total ") and failed[1].startswith("coupon ")


def test_every_workflow_listening_to_the_type_is_tried_in_file_order(env: Env) -> None:
    other = wf("""
name: another
triggers: [{event: list.subscribed}]
steps: [{id: s, send_email: {template: t}}]
""")
    r = env.router(NEWS, other)
    out = r.handle(ev("e1", "list.subscribed"))
    assert acts(out) == [("news", "entered", "started"), ("another", "entered", "started")]


def test_reentry_once_refuses_a_second_entry_after_the_run_ended(env: Env) -> None:
    r = env.router(NEWS)
    (first,) = r.handle(ev("e1", "list.subscribed"))
    env.sfn.stop_execution(executionArn=env.enrolment(first.contact, "news")["execution_arn"])
    assert r.handle(ev("e2", "list.subscribed")) == [
        Routed(first.contact, "news", "not entered", "entered before and re-entry is once")
    ]


def test_reentry_always_starts_a_new_run_for_each_event_once_the_last_ended(env: Env) -> None:
    always = wf("""
name: always
triggers: [{event: order.paid}]
reentry: always
steps: [{id: s, send_email: {template: t}}]
""")
    r = env.router(always)
    (first,) = r.handle(ev("e1", "order.paid"))
    env.sfn.stop_execution(executionArn=env.enrolment(first.contact, "always")["execution_arn"])
    assert acts(r.handle(ev("e2", "order.paid"))) == [("always", "entered", "started")]
    assert len(env.executions("always")) == 2
    assert env.enrolment(first.contact, "always")["count"] == 2


def test_an_event_that_happened_before_the_workflow_was_activated_does_not_enter(env: Env) -> None:
    r = env.router(NEWS)
    old = env.clock.at - timedelta(days=3)
    (out,) = r.handle(ev("e1", "list.subscribed", at=old))
    assert out.action == "not entered"
    assert out.why.startswith("the event happened before the workflow was activated")


def test_activated_at_given_to_the_router_is_the_enrollers(env: Env) -> None:
    env.machines("news")
    enroller = env.enroller(activated_at=None)
    at = env.clock.at - timedelta(hours=5)
    Router([NEWS], env.store, enroller, env.sfn, activated_at=at)
    assert enroller.activated_at == at
    Router([NEWS], env.store, enroller, env.sfn)
    assert enroller.activated_at == at


def test_a_given_index_is_the_one_used(env: Env) -> None:
    env.machines("news", "cart")
    index = RoutingIndex.build([CART])
    r = Router([NEWS, CART], env.store, env.enroller(), env.sfn, index=index)
    assert r.index is index
    assert r.handle(ev("e1", "list.subscribed")) == []


def test_a_goal_the_contact_already_meets_on_entry_starts_the_run_there(env: Env) -> None:
    vip = wf("""
name: vip
triggers: [{event: list.subscribed, delay: 2h}]
steps:
  - id: hello
    send_email: {template: hello}
  - id: not-a-condition
    goal: {event: order.paid}
  - id: is-vip
    goal: {condition: {has_tag: VIP}}
  - id: is-gold
    goal: {condition: {has_tag: Gold}}
  - id: welcome-vip
    send_email: {template: vip}
""")
    r = env.router(vip)
    (plain,) = r.handle(ev("e1", "list.subscribed"))
    assert acts([plain]) == [("vip", "entered", "started")]
    assert env.run_input(plain.contact, "vip")["start_delay"] == 7200
    assert env.run_input(plain.contact, "vip")["run"]["resume_at"] == ""
    r.handle(ev("t1", "tag.added", {"tag": "Gold"}, email="bo@example.com"))
    r.handle(ev("t2", "tag.added", {"tag": "VIP"}, email="bo@example.com"))
    (out,) = r.handle(ev("e2", "list.subscribed", email="bo@example.com"))
    # The first goal in file order that is met; no start delay.
    assert acts([out]) == [("vip", "entered", "started at goal is-vip: goal condition has tag 'VIP' already met")]
    run = env.run_input(out.contact, "vip")
    assert run["run"]["resume_at"] == "is-vip" and run["start_delay"] == 0


def test_the_facts_a_goal_on_entry_reads_include_the_triggering_event(env: Env) -> None:
    big = wf("""
name: big
triggers: [{event: order.paid}]
steps:
  - id: hello
    send_email: {template: hello}
  - id: big-order
    goal: {condition: {event_field: total, gt: 100}}
""")
    r = env.router(big)
    (small,) = r.handle(ev("e1", "order.paid", {"total": 50}))
    assert small.why == "started"
    (large,) = r.handle(ev("e2", "order.paid", {"total": 500}, email="bo@example.com"))
    assert large.why.startswith("started at goal big-order: goal condition ")


# ---- what an event learns from the message it reports on ------------------------------------------------------


def _message(env: Env, cid: str, mid: str, **extra: Any) -> None:
    env.store.put_item({C.PK: contact_pk(cid), C.SK: f"MSG#{mid}", "message_id": mid, **extra})


def test_a_status_event_takes_the_template_campaign_workflow_and_step_of_its_message(env: Env) -> None:
    clicked = wf("""
name: clicked
triggers: [{event: email.clicked, where: {template: spring-sale, step: offer}}]
steps: [{id: s, send_email: {template: t}}]
""")
    r = env.router(clicked, NEWS)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    _message(env, cid, "m1", template="spring-sale", campaign="spring", workflow="news", step="offer", other="x")
    out = r.handle(ev("c1", "email.clicked", {"message_id": "m1", "link": "https://x.io"}, contact_id=cid))
    assert ("clicked", "entered", "started") in acts(out)
    data = env.trigger(cid, "clicked")["data"]
    assert data == {
        "message_id": "m1",
        "link": "https://x.io",
        "template": "spring-sale",
        "campaign": "spring",
        "workflow": "news",
        "step": "offer",
    }


def test_what_the_provider_said_wins_over_the_message_record(env: Env) -> None:
    clicked = wf("""
name: clicked
triggers: [{event: email.clicked}]
steps: [{id: s, send_email: {template: t}}]
""")
    r = env.router(clicked, NEWS)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    _message(env, cid, "m1", template="spring-sale", step="offer")
    r.handle(ev("c1", "email.clicked", {"message_id": "m1", "template": "echoed"}, contact_id=cid))
    data = env.trigger(cid, "clicked")["data"]
    assert data == {"message_id": "m1", "template": "echoed", "step": "offer"}


def test_only_email_and_sms_events_are_matched_to_a_message(env: Env) -> None:
    paid = wf("""
name: paid
triggers: [{event: order.paid}, {event: sms.delivered}]
reentry: always
steps: [{id: s, send_email: {template: t}}]
""")
    r = env.router(paid, NEWS)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    _message(env, cid, "m1", template="spring-sale")
    r.handle(ev("o1", "order.paid", {"message_id": "m1"}, contact_id=cid))
    assert env.trigger(cid, "paid")["data"] == {"message_id": "m1"}
    env.sfn.stop_execution(executionArn=env.enrolment(cid, "paid")["execution_arn"])
    r.handle(ev("s1", "sms.delivered", {"message_id": "m1"}, contact_id=cid))
    assert env.trigger(cid, "paid")["data"] == {"message_id": "m1", "template": "spring-sale"}


def test_an_event_naming_no_stored_message_is_routed_as_it_came(env: Env) -> None:
    clicked = wf("""
name: clicked
triggers: [{event: email.clicked}]
steps: [{id: s, send_email: {template: t}}]
""")
    r = env.router(clicked, NEWS)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    r.handle(ev("c1", "email.clicked", {"message_id": "m404"}, contact_id=cid))
    assert env.trigger(cid, "clicked")["data"] == {"message_id": "m404"}
    assert env.item(cid, "MSG#m404") is None


def test_the_first_open_and_click_of_a_sent_message_are_noted_and_counted_once(env: Env) -> None:
    r = env.router(NEWS)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    _message(env, cid, "m1", workflow="news", step="hello")
    _message(env, cid, "m2", workflow="news")
    _message(env, cid, "m3", template="not-from-a-workflow")
    env.metrics.clear()
    first = env.clock.advance(minutes=5)
    r.handle(ev("o1", "email.opened", {"message_id": "m1"}, contact_id=cid))
    env.clock.advance(minutes=5)
    r.handle(ev("o2", "email.opened", {"message_id": "m1"}, contact_id=cid))
    r.handle(ev("k1", "email.clicked", {"message_id": "m1"}, contact_id=cid))
    r.handle(ev("k2", "email.clicked", {"message_id": "m2"}, contact_id=cid))
    r.handle(ev("o3", "email.opened", {"message_id": "m3"}, contact_id=cid))
    r.handle(ev("b1", "email.bounced", {"message_id": "m1"}, contact_id=cid))
    assert env.metrics == [
        (C.METRIC_MESSAGE_OPENED, "news", "hello", {}),
        (C.METRIC_MESSAGE_CLICKED, "news", "hello", {}),
        (C.METRIC_MESSAGE_CLICKED, "news", "", {}),
    ]
    m1 = env.item(cid, "MSG#m1")
    assert m1 is not None and m1["opened_at"] == first.isoformat() and "clicked_at" in m1
    m3 = env.item(cid, "MSG#m3")
    assert m3 is not None and "opened_at" not in m3


def test_engagement_is_noted_without_a_metrics_sink(env: Env) -> None:
    env.machines("news")
    enroller = Enroller(env.store, env.sfn, TEMPLATE, None, activated_at=env.clock.at - timedelta(days=1))
    r = Router([NEWS], env.store, enroller, env.sfn)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    _message(env, sub.contact, "m1", workflow="news", step="hello")
    r.handle(ev("o1", "email.opened", {"message_id": "m1"}, contact_id=sub.contact))
    m1 = env.item(sub.contact, "MSG#m1")
    assert m1 is not None and "opened_at" in m1


# ---- waits ----------------------------------------------------------------------------------------------------


def _wait(env: Env, cid: str, step: str, **spec: Any) -> dict[str, Any]:
    item = {
        C.PK: contact_pk(cid),
        C.SK: f"WAIT#exec-{step}#{step}",
        "step": step,
        "workflow": "news",
        "execution": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:stepwise-news:exec-{step}",
        "token": f"token-{step}",
        "event": None,
        "where": None,
        "same": {},
        "condition": None,
        "trigger": {},
        "loops": 0,
        "goto": False,
        "history_days": 30,
        **spec,
    }
    env.store.put_item(item)
    return item


def _waiting(env: Env, cid: str) -> set[str]:
    return {w["step"] for w in env.store.query_prefix(contact_pk(cid), "WAIT#", live_only=False)}


def test_an_event_resumes_the_waits_for_its_type_whose_where_and_same_match(env: Env) -> None:
    r = env.router(NEWS)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    _wait(env, cid, "for-click", event="email.clicked", where={"link": {"contains": "pricing"}})
    _wait(env, cid, "for-order", event="order.paid", same={"order.id": "o-7"})
    _wait(env, cid, "for-other-order", event="order.paid", same={"order.id": "o-8"})
    _wait(env, cid, "for-open", event="email.opened")
    _wait(env, cid, "nothing")  # neither an event nor a condition: left alone
    out = r.handle(ev("c1", "email.clicked", {"link": "https://x.io/about"}, contact_id=cid))
    assert [o for o in out if o.action == "resumed"] == []
    assert _waiting(env, cid) == {"for-click", "for-order", "for-other-order", "for-open", "nothing"}
    out = r.handle(ev("c2", "email.clicked", {"link": "https://x.io/pricing"}, contact_id=cid))
    assert acts(out) == [("news", "resumed", "for-click: event email.clicked arrived")]
    assert out[0].contact == cid
    out = r.handle(ev("p1", "order.paid", {"order": {"id": "o-7"}}, contact_id=cid))
    assert acts(out) == [("news", "resumed", "for-order: event order.paid arrived")]
    assert _waiting(env, cid) == {"for-other-order", "for-open", "nothing"}
    (resumed,) = [h for h in env.history(cid) if h["outcome"] == "resumed" and h["step"] == "for-order"]
    assert resumed["why"] == "event order.paid arrived" and resumed["at"] == env.clock.at.isoformat()


def test_a_condition_wait_resumes_when_the_event_makes_the_condition_hold(env: Env) -> None:
    r = env.router(NEWS)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    _wait(env, cid, "until-vip", condition={"has_tag": "VIP"})
    _wait(env, cid, "until-big", condition={"event_field": "total", "gt": 100}, trigger={"total": 500})
    _wait(env, cid, "until-small", condition={"event_field": "total", "gt": 100}, trigger={"total": 5})
    out = r.handle(ev("t0", "tag.added", {"tag": "Other"}, contact_id=cid))
    # The condition on the event that started the run is read from the wait's own copy of it.
    assert acts(out) == [("news", "resumed", "until-big: condition trigger event total gt 100 now holds")]
    out = r.handle(ev("t1", "tag.added", {"tag": "VIP"}, contact_id=cid))
    assert acts(out) == [("news", "resumed", "until-vip: condition has tag 'VIP' now holds")]
    assert _waiting(env, cid) == {"until-small"}


def test_a_resumed_wait_is_not_resumed_again_by_the_field_change_routed_after_it(env: Env) -> None:
    r = env.router(NEWS)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    _wait(env, cid, "until-named", condition={"field": "plan", "eq": "pro"})
    out = r.handle(ev("f1", "form.submitted", {}, contact_id=cid, fields={"plan": "pro"}))
    assert [o.action for o in out].count("resumed") == 1


# ---- goals ----------------------------------------------------------------------------------------------------

GOALS = wf("""
name: goals
triggers: [{event: list.subscribed}]
steps:
  - id: hello
    send_email: {template: hello}
  - id: clicked-pricing
    goal: {event: email.clicked, where: {link: {contains: pricing}}}
  - id: clicked-any
    goal: {event: email.clicked}
  - id: bought
    goal: {condition: {has_tag: Customer}}
  - id: after
    send_email: {template: after}
""")


def test_an_event_goal_stops_the_run_and_restarts_it_at_the_first_goal_met(env: Env) -> None:
    r = env.router(GOALS)
    (sub,) = r.handle(ev("e0", "list.subscribed", {"list": "weekly"}))
    cid = sub.contact
    first = env.enrolment(cid, "goals")
    assert r.handle(ev("o1", "email.opened", {}, contact_id=cid)) == []
    out = r.handle(ev("c1", "email.clicked", {"link": "https://x.io/pricing"}, contact_id=cid))
    assert acts(out) == [("goals", "goal", "jumped to clicked-pricing: goal event email.clicked")]
    assert out[0].contact == cid
    stopped = env.sfn.describe_execution(executionArn=first["execution_arn"])
    assert stopped["status"] == "ABORTED"
    now = env.enrolment(cid, "goals")
    assert now["execution_arn"] != first["execution_arn"] and now["status"] == "running"
    assert now["goals"] == ["clicked-pricing"] and now["count"] == 1  # the same entry: not counted again
    run = env.run_input(cid, "goals")
    assert run["run"]["resume_at"] == "clicked-pricing"
    assert env.trigger(cid, "goals")["data"] == {"list": "weekly"}  # the run's own triggering event, not the click
    # A goal already reached is not met again; the next goal in order can be.
    out = r.handle(ev("c2", "email.clicked", {"link": "https://x.io/pricing"}, contact_id=cid))
    assert acts(out) == [("goals", "goal", "jumped to clicked-any: goal event email.clicked")]
    assert env.enrolment(cid, "goals")["goals"] == ["clicked-any", "clicked-pricing"]


def test_a_condition_goal_is_met_by_any_event_that_changes_the_contact(env: Env) -> None:
    r = env.router(GOALS)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    assert r.handle(ev("t0", "tag.added", {"tag": "Lead"}, contact_id=cid)) == []
    out = r.handle(ev("t1", "tag.added", {"tag": "Customer"}, contact_id=cid))
    assert acts(out) == [("goals", "goal", "jumped to bought: goal condition has tag 'Customer'")]
    assert env.run_input(cid, "goals")["run"]["resume_at"] == "bought"


def test_a_condition_goal_on_the_triggering_event_reads_the_runs_own_event(env: Env) -> None:
    big = wf("""
name: big
triggers: [{event: order.paid}]
steps:
  - id: hello
    send_email: {template: hello}
  - id: tagged-big
    goal: {condition: {all: [{has_tag: Reviewed}, {event_field: total, gt: 100}]}}
""")
    r = env.router(big)
    (small,) = r.handle(ev("e1", "order.paid", {"total": 50}))
    (large,) = r.handle(ev("e2", "order.paid", {"total": 500}, email="bo@example.com"))
    assert r.handle(ev("t1", "tag.added", {"tag": "Reviewed", "total": 500}, contact_id=small.contact)) == []
    out = r.handle(ev("t2", "tag.added", {"tag": "Reviewed", "total": 5}, contact_id=large.contact))
    assert [o.action for o in out] == ["goal"]


def test_goals_of_a_run_that_is_not_running_are_not_met(env: Env) -> None:
    r = env.router(GOALS)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    env.sfn.stop_execution(executionArn=env.enrolment(cid, "goals")["execution_arn"])
    assert r.handle(ev("c1", "email.clicked", {"link": "pricing"}, contact_id=cid)) == []
    # A record that says stopped is not looked at either.
    item = env.enrolment(cid, "goals")
    env.store.put_item({**item, "status": "stopped"})
    assert r.handle(ev("c2", "email.clicked", {"link": "pricing"}, contact_id=cid)) == []


def test_a_claim_never_confirmed_is_not_a_run_whose_goals_count(env: Env) -> None:
    r = env.router(GOALS)
    assert r.handle(ev("t0", "tag.added", {"tag": "x"})) == []
    cid = env.store.resolve(ev("t0", "tag.added").contact)
    assert cid is not None
    env.store.put_item({C.PK: contact_pk(cid), C.SK: "ENROLL#goals", "claim": {"execution_arn": "arn:x"}, "rev": 1})
    assert r.handle(ev("c1", "email.clicked", {"link": "pricing"}, contact_id=cid)) == []


def test_goals_are_checked_for_each_running_workflow_in_file_order(env: Env) -> None:
    zeta = wf("""
name: zeta
triggers: [{event: list.subscribed}]
steps:
  - {id: hello, send_email: {template: hello}}
  - {id: z-goal, goal: {event: order.paid}}
""")
    alpha = wf("""
name: alpha
triggers: [{event: list.subscribed}]
steps:
  - {id: hello, send_email: {template: hello}}
  - {id: a-goal, goal: {event: order.paid}}
""")
    r = env.router(zeta, alpha)
    (sub, _) = r.handle(ev("e0", "list.subscribed"))
    out = r.handle(ev("p1", "order.paid", {}, contact_id=sub.contact))
    assert acts(out) == [
        ("zeta", "goal", "jumped to z-goal: goal event order.paid"),
        ("alpha", "goal", "jumped to a-goal: goal event order.paid"),
    ]
    assert r._order("zeta") == 0 and r._order("alpha") == 1 and r._order("gone") == 2


def test_the_original_event_of_a_run_that_cannot_be_described_is_empty(env: Env) -> None:
    r = env.router(NEWS)
    assert r._original_event({"execution_arn": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:stepwise-news:x"}) == {}


# ---- field changes and the end of a campaign run --------------------------------------------------------------


def test_contact_data_an_event_brings_is_routed_next_as_field_changed(env: Env) -> None:
    named = wf("""
name: named
triggers: [{event: field.changed, where: {field: first_name, value: Mario}}]
steps: [{id: s, send_email: {template: t}}]
""")
    r = env.router(named)
    out = r.handle(
        ev("f1", "form.submitted", {"form": "signup"}, email="mario@example.com", fields={"first_name": "Mario"})
    )
    assert acts(out) == [("named", "entered", "started")]
    cid = out[0].contact
    trigger = env.trigger(cid, "named")
    assert trigger["type"] == "field.changed" and trigger["id"] == "f1:field:first_name"
    assert trigger["data"] == {"field": "first_name", "value": "Mario", "previous": None}
    assert trigger["contact"]["contact_id"] == cid
    # The same value again changes nothing, so nothing is routed.
    assert r.handle(ev("f2", "form.submitted", {}, contact_id=cid, fields={"first_name": "Mario"})) == []


def test_a_finished_campaign_run_completes_the_campaign_once(env: Env) -> None:
    done = wf("""
name: done
triggers: [{event: campaign.completed, where: {campaign: spring}}]
steps: [{id: s, send_email: {template: t}}]
""")
    spring = wf("""
name: spring
triggers: [{event: list.subscribed}]
steps: [{id: s, send_email: {template: t}}]
""")
    r = env.router(spring, done)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    arn = env.enrolment(cid, "spring")["execution_arn"]
    run_input = env.run_input(cid, "spring")
    # Not subscribed to it as a campaign: nothing.
    assert r.execution_ended(arn, "SUCCEEDED", run_input) == []
    profile = env.item(cid, "PROFILE")
    assert profile is not None
    env.store.put_item({**profile, "campaigns": {"spring": None}})
    assert r.execution_ended(arn, "FAILED", run_input) == []
    assert r.execution_ended(arn, "SUCCEEDED", {"workflow": "spring"}) == []
    assert r.execution_ended(arn, "SUCCEEDED", {"contact_id": cid}) == []
    assert r.execution_ended(arn + "-old", "SUCCEEDED", run_input) == []
    assert r.execution_ended(arn, "SUCCEEDED", {**run_input, "workflow": "never-entered"}) == []
    out = r.execution_ended(arn, "SUCCEEDED", run_input)
    assert acts(out) == [
        ("spring", "completed", "campaign completed: its run ended"),
        ("done", "entered", "started"),
    ]
    assert out[0].contact == cid
    trig = env.trigger(cid, "done")
    assert trig["type"] == C.EVENT_CAMPAIGN_COMPLETED and trig["data"] == {"campaign": "spring"}
    assert trig["id"] == "completed:" + arn.rsplit(":", 1)[-1]
    assert datetime.fromisoformat(trig["occurred_at"]) == env.clock.at  # when the run was reported ended
    assert "spring" not in env.store.get(cid).campaigns
    # A repeat of the report finds the contact gone from the campaign.
    assert r.execution_ended(arn, "SUCCEEDED", run_input) == []


def test_an_outbox_item_becomes_the_event_it_describes() -> None:
    got = outbox_to_event(
        {
            "id": "o-1",
            "type": "tag.added",
            "contact_id": "c-1",
            "data": {"tag": "VIP"},
            "at": "2026-11-30T09:00:00+00:00",
        }
    )
    assert got.id == "o-1" and got.type == "tag.added" and got.contact.contact_id == "c-1"
    assert got.data == {"tag": "VIP"} and got.occurred_at == datetime(2026, 11, 30, 9, tzinfo=UTC)
    bare = outbox_to_event({"id": "o-2", "type": "x.y", "contact_id": "c-1", "at": "2026-11-30T09:00:00+00:00"})
    assert bare.data == {}


# ---- killing the first run's survivors (docs/mutation.md) -----------------------------------------------------


def _activity(env: Env, cid: str, etype: str, at: datetime, eid: str = "old") -> None:
    env.store.put_item(activity_item(cid, eid, etype, {}, at))


def test_a_goal_on_recent_activity_counts_only_activity_within_its_window(env: Env) -> None:
    recent = wf("""
name: recent
triggers: [{event: list.subscribed}]
steps:
  - {id: hello, send_email: {template: hello}}
  - {id: bought, goal: {condition: {did_event: {event: order.paid, within: 2d}}}}
""")
    r = env.router(recent)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    _activity(env, cid, "order.paid", env.clock.at - timedelta(days=3))
    assert r.handle(ev("t0", "tag.added", {"tag": "x"}, contact_id=cid)) == []
    _activity(env, cid, "order.paid", env.clock.at - timedelta(days=1), "new")
    out = r.handle(ev("t1", "tag.added", {"tag": "y"}, contact_id=cid))
    assert [o.action for o in out] == ["goal"]


def test_a_goal_on_recent_activity_met_on_entry_counts_only_activity_within_its_window(env: Env) -> None:
    recent = wf("""
name: recent
triggers: [{event: list.subscribed}]
steps:
  - {id: hello, send_email: {template: hello}}
  - {id: bought, goal: {condition: {did_event: {event: order.paid, within: 2d}}}}
""")
    r = env.router(recent)
    r.handle(ev("t0", "tag.added", {"tag": "x"}))
    cid = env.store.resolve(ev("t0", "tag.added").contact)
    assert cid is not None
    _activity(env, cid, "order.paid", env.clock.at - timedelta(days=3))
    (out,) = r.handle(ev("e1", "list.subscribed", contact_id=cid))
    assert out.why == "started"
    env.sfn.stop_execution(executionArn=env.enrolment(cid, "recent")["execution_arn"])
    env.store.put_item({**env.enrolment(cid, "recent"), "status": "stopped"})
    env.store.delete_item(contact_pk(cid), "ENROLL#recent")
    _activity(env, cid, "order.paid", env.clock.at - timedelta(hours=1), "new")
    (out,) = r.handle(ev("e2", "list.subscribed", contact_id=cid))
    assert out.why.startswith("started at goal bought")


def test_a_goal_on_the_triggering_event_of_a_run_started_without_one_reads_nothing(env: Env) -> None:
    big = wf("""
name: big
triggers: [{event: order.paid}]
steps:
  - {id: hello, send_email: {template: hello}}
  - {id: big-order, goal: {condition: {event_field: total, gt: 100}}}
""")
    r = env.router(big)
    r.handle(ev("t0", "tag.added", {"tag": "x"}))
    cid = env.store.resolve(ev("t0", "tag.added").contact)
    assert cid is not None
    # A run started by hand (the console, an older release) with an input carrying no event.
    started = env.sfn.start_execution(stateMachineArn=TEMPLATE.replace("{workflow}", "big"), name="by-hand", input="{}")
    env.store.put_item(
        {
            C.PK: contact_pk(cid),
            C.SK: "ENROLL#big",
            "workflow": "big",
            "execution_arn": started["executionArn"],
            "status": "running",
            "entered_at": env.clock.at.isoformat(),
            "count": 1,
            "goals": [],
        }
    )
    assert r.handle(ev("t1", "tag.added", {"tag": "y", "total": 500}, contact_id=cid)) == []


def _split_assignment(env: Env, cid: str, by: str, path: str, path_steps: list[str]) -> None:
    """The contact's path of a split judged by opens or clicks, as the step runner writes it."""
    split = wf(f"""
name: news
triggers: [{{event: list.subscribed}}]
steps:
  - id: pick
    split:
      - {{name: short, percent: 50, steps: [{{id: offer-short, send_email: {{template: offer}}}}]}}
      - {{name: long, percent: 50, steps: [{{id: offer-long, send_email: {{template: offer}}}}]}}
    winner: {{by: {by}, min_contacts: 10, after: 1d}}
""")
    step = split.steps[0].root
    assert isinstance(step, SplitStep)
    writes = SplitTests(env.store).assignment_writes(cid, "news", "pick", step, path, path_steps, env.clock.at)
    assert env.store.transact(writes)


def test_an_open_or_click_of_a_message_from_a_split_path_counts_for_that_path_once(env: Env) -> None:
    r = env.router(NEWS)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    _split_assignment(env, cid, "email_clicked", "long", ["offer-long"])
    _message(env, cid, "m-short", workflow="news", step="offer-short")
    _message(env, cid, "m-long", workflow="news", step="offer-long")
    # An open does not count for a split judged by clicks; a click on another path's message does not either.
    assert r.handle(ev("o1", "email.opened", {"message_id": "m-long"}, contact_id=cid)) == []
    assert r.handle(ev("k1", "email.clicked", {"message_id": "m-short"}, contact_id=cid)) == []
    # An event naming no stored message counts for nothing.
    assert r.handle(ev("k0", "email.clicked", {"message_id": "m-gone"}, contact_id=cid)) == []
    out = r.handle(ev("k2", "email.clicked", {"message_id": "m-long"}, contact_id=cid))
    assert acts(out) == [("news", "converted", "split news/pick/long: email.clicked")]
    assert out[0].contact == cid
    assert r.handle(ev("k3", "email.clicked", {"message_id": "m-long"}, contact_id=cid)) == []
    assert SplitTests(env.store).stats("news", "pick")["c_long"] == 1


def test_an_open_counts_for_a_split_judged_by_opens(env: Env) -> None:
    r = env.router(NEWS)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    _split_assignment(env, cid, "email_opened", "short", ["offer-short"])
    _message(env, cid, "m-short", workflow="news", step="offer-short")
    assert r.handle(ev("k1", "email.clicked", {"message_id": "m-short"}, contact_id=cid)) == []
    out = r.handle(ev("o1", "email.opened", {"message_id": "m-short"}, contact_id=cid))
    assert acts(out) == [("news", "converted", "split news/pick/short: email.opened")]


def test_a_wait_that_does_not_match_does_not_stop_the_next_one_from_resuming(env: Env) -> None:
    r = env.router(NEWS)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    # Waits are read in sort-key order: each non-matching one here comes before one that matches.
    _wait(env, cid, "a-pricing", event="email.clicked", where={"link": {"contains": "pricing"}})
    _wait(env, cid, "b-any-click", event="email.clicked")
    out = r.handle(ev("c1", "email.clicked", {"link": "https://x.io/about"}, contact_id=cid))
    assert acts(out) == [("news", "resumed", "b-any-click: event email.clicked arrived")]
    _wait(env, cid, "c-order-8", event="order.paid", same={"order.id": "o-8"})
    _wait(env, cid, "d-order-7", event="order.paid", same={"order.id": "o-7"})
    out = r.handle(ev("p1", "order.paid", {"order": {"id": "o-7"}}, contact_id=cid))
    assert acts(out) == [("news", "resumed", "d-order-7: event order.paid arrived")]
    _wait(env, cid, "e-nothing")
    _wait(env, cid, "f-open", event="email.opened")
    out = r.handle(ev("o1", "email.opened", {}, contact_id=cid))
    assert acts(out) == [("news", "resumed", "f-open: event email.opened arrived")]
    assert _waiting(env, cid) == {"a-pricing", "c-order-8", "e-nothing"}


def test_a_condition_wait_on_recent_activity_counts_only_activity_within_its_window(env: Env) -> None:
    waiter = wf("""
name: waiter
triggers: [{event: form.submitted}]
steps:
  - id: until-bought
    wait_until: {condition: {did_event: {event: order.paid, within: 2d}}, timeout: 3d}
""")
    r = env.router(NEWS, waiter)  # the waiter's condition is why the router reads two days of activity
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    _wait(env, cid, "until-bought", condition={"did_event": {"event": "order.paid", "within": 172800}})
    _activity(env, cid, "order.paid", env.clock.at - timedelta(days=3))
    assert r.handle(ev("t0", "tag.added", {"tag": "x"}, contact_id=cid)) == []
    _activity(env, cid, "order.paid", env.clock.at - timedelta(hours=1), "new")
    out = r.handle(ev("t1", "tag.added", {"tag": "y"}, contact_id=cid))
    assert [o.action for o in out] == ["resumed"]


def test_an_event_naming_an_erased_contact_is_dropped_and_writes_nothing(env: Env) -> None:
    r = env.router(NEWS)
    env.store.put_item(tombstone_item("c-erased", env.clock.at))
    out = r.handle(ev("t1", "tag.added", {"tag": "VIP"}, contact_id="c-erased"))
    assert out == [Routed("c-erased", "", "dropped", "contact erased")]
    assert env.item("c-erased", "PROFILE") is None and env.store.activity("c-erased") == []
    # A contact id nobody has and nobody erased is still refused.
    with pytest.raises(UnknownContact):
        r.handle(ev("t2", "tag.added", {"tag": "VIP"}, contact_id="c-never"))


def test_the_archived_delivery_is_kept_on_the_events_activity_and_field_changes_routed_after_it_are_at_its_time(
    env: Env,
) -> None:
    r = env.router(NEWS)
    (entered,) = r.handle(ev("e1", "list.subscribed"))
    cid = entered.contact
    at = env.clock.at - timedelta(hours=2)
    form = ev("f1", "form.submitted", {"form": "signup"}, at=at, contact_id=cid, fields={"first_name": "Mario"})
    assert r.handle(form, archive_key="deliveries/f1.json") == []
    by_type = {a["type"]: a for a in env.store.activity(cid)}
    assert by_type["form.submitted"]["archive_key"] == "deliveries/f1.json"
    assert by_type["form.submitted"]["at"] == at.isoformat()
    # The field change the form brought is routed next, at the form's time, and it came in no delivery of its own.
    assert by_type["field.changed"]["at"] == at.isoformat() and "archive_key" not in by_type["field.changed"]
    assert "archive_key" not in by_type["list.subscribed"]


def test_a_resumed_wait_counts_the_waits_the_contact_meets_after_it(env: Env) -> None:
    r = env.router(NEWS)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    _wait(env, cid, "for-open", event="email.opened", ahead=[{"id": "pause", "kind": "wait", "seconds": 60}])
    env.metrics.clear()
    out = r.handle(ev("o1", "email.opened", {}, contact_id=cid))
    assert acts(out) == [("news", "resumed", "for-open: event email.opened arrived")]
    assert env.metrics == [(C.METRIC_WAIT_STARTED, "news", "pause", {})]


def test_a_workflow_not_running_or_a_condition_goal_not_met_does_not_stop_the_goals_after_it(env: Env) -> None:
    first = wf("""
name: first
triggers: [{event: list.subscribed}]
steps:
  - {id: hello, send_email: {template: hello}}
  - {id: clicked, goal: {event: email.clicked}}
""")
    second = wf("""
name: second
triggers: [{event: list.subscribed}]
steps:
  - {id: hello, send_email: {template: hello}}
  - {id: customer, goal: {condition: {has_tag: Customer}}}
  - {id: clicked, goal: {event: email.clicked}}
""")
    r = env.router(first, second)
    out = r.handle(ev("e0", "list.subscribed"))
    cid = out[0].contact
    env.store.put_item({**env.enrolment(cid, "first"), "status": "stopped"})
    out = r.handle(ev("c1", "email.clicked", {}, contact_id=cid))
    assert acts(out) == [("second", "goal", "jumped to clicked: goal event email.clicked")]


# ---- killing the full run's gaps (docs/mutation.md, routing.py survivors) -------------------------------------


def test_a_mapped_form_gets_its_form_type_and_name_before_triggers_match(env: Env) -> None:
    funnel = wf("""
name: funnel
triggers: [{event: form.submitted, where: {form_type: funnel}}]
steps: [{id: s, send_email: {template: t}}]
settings:
  forms:
    lT4Z3j: {type: funnel, name: offer-1-signup}
""")
    r = env.router(funnel)
    e = ContactEvent.model_validate(
        {
            "id": "f1",
            "type": "form.submitted",
            "source": "typeform",
            "contact": {"email": "ada@example.com"},
            "data": {"form_id": "lT4Z3j", "form": "Webhooks example", "form_type": "typeform"},
        }
    )
    (out,) = r.handle(e)
    assert (out.workflow, out.action, out.why) == ("funnel", "entered", "started")
    trigger = env.trigger(out.contact, "funnel")
    assert trigger["data"] == {"form_id": "lT4Z3j", "form": "offer-1-signup", "form_type": "funnel"}


def test_a_goal_restarts_the_run_under_the_key_of_the_run_it_stopped(env: Env) -> None:
    r = env.router(GOALS)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    first = env.enrolment(cid, "goals")["execution_arn"]
    r.handle(ev("c1", "email.clicked", {"link": "https://x.io/pricing"}, contact_id=cid))
    restarted = env.enrolment(cid, "goals")["execution_arn"]
    name = "goals-" + stable_hash(cid, "goals", f"goal:{first}", "clicked-pricing", length=24)
    assert restarted.rsplit(":", 1)[-1] == name


def test_a_checkout_update_schedules_its_abandonment_for_the_contact_at_the_updates_time(env: Env) -> None:
    scheduler = boto3.client("scheduler", region_name=REGION)
    store = ScheduleStore(scheduler, "stepwise-test", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:router", ROLE)
    store.create_group()
    sched.bind(sched.Schedules(store))
    try:
        r = env.router(CART)
        at = env.clock.at - timedelta(minutes=10)
        cid = env.store.upsert(ev("x", "x.y").contact)
        e = ev("u1", "checkout.started", {"checkout_id": "tok-1", "cart_value": 50}, at=at, contact_id=cid)
        assert r.handle(e) == []
        pending = sched.required().pending()
    finally:
        sched.bind(None)
    assert [(s.at, s.payload) for s in pending] == [
        (
            at + timedelta(hours=1),
            {"checkout_id": "tok-1", "version": e.digest(), "after_seconds": 3600, "kind": "abandonment"},
        )
    ]
    checkout = CheckoutStore(env.store).get("tok-1")
    assert checkout is not None and checkout.contact_id == cid and checkout.updated_at == at


def test_an_identity_conflict_names_the_event_that_offered_it(env: Env) -> None:
    r = env.router(NEWS)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    e = ev("t1", "tag.added", {"tag": "x"}, contact_id=cid, email="other@example.com")
    r.handle(e)
    profile = env.item(cid, "PROFILE")
    assert profile is not None
    (conflict,) = profile["identity_conflicts"]
    assert conflict["event"] == e.digest() and conflict["offered"] == "other@example.com"


def _rival_profile(env: Env, cid: str) -> None:
    env.store.put_item(
        {C.PK: contact_pk(cid), C.SK: "PROFILE", "contact_id": cid, "email": "ada@example.com", "fields": {}}
        | {"campaigns": {}, "stages": {}, "score": 0}
    )


def _ident(env: Env, cid: str) -> None:
    env.store.put_item({C.PK: "IDENT#email#ada@example.com", C.SK: "IDENT", "contact_id": cid})


def test_an_event_that_loses_its_identity_to_a_racing_contact_is_routed_again_for_that_contact(env: Env) -> None:
    r = env.router(NEWS)
    calls = {"TransactWriteItems": 0, "BatchGetItem": 0}

    def race(params: dict[str, Any], **_: Any) -> None:
        # Between our read and our write, another delivery creates the contact with the same email.
        if "IDENT#email#ada@example.com" not in json.dumps(params, default=str):
            return  # the enrolment's own writes
        calls["TransactWriteItems"] += 1
        if calls["TransactWriteItems"] == 1:
            _rival_profile(env, "c-rival")
            _ident(env, "c-rival")

    def count(params: dict[str, Any], **_: Any) -> None:
        calls["BatchGetItem"] += 1

    env.ddb.meta.events.register("before-call.dynamodb.TransactWriteItems", race)
    env.ddb.meta.events.register("before-call.dynamodb.BatchGetItem", count)
    try:
        out = r.handle(ev("e1", "list.subscribed"))
    finally:
        env.ddb.meta.events.unregister("before-call.dynamodb.TransactWriteItems", race)
        env.ddb.meta.events.unregister("before-call.dynamodb.BatchGetItem", count)
    assert out == [Routed("c-rival", "news", "entered", "started")]
    # Writes of the email: only the first try's, which assumed the contact from its derived id; the second looked
    # the identity up (one BatchGetItem) and wrote to the contact holding it.
    assert calls == {"TransactWriteItems": 1, "BatchGetItem": 1}


def test_an_event_that_keeps_losing_its_identity_gives_up_after_three_tries(env: Env) -> None:
    r = env.router(NEWS)
    tries: list[int] = []

    def race(params: dict[str, Any], **_: Any) -> None:
        # Before each of our writes, the email moves on to yet another contact.
        tries.append(1)
        _ident(env, f"c-rival-{len(tries)}")

    env.ddb.meta.events.register("before-call.dynamodb.TransactWriteItems", race)
    try:
        with pytest.raises(IdentityRace):
            r.handle(ev("e1", "list.subscribed"))
    finally:
        env.ddb.meta.events.unregister("before-call.dynamodb.TransactWriteItems", race)
    assert len(tries) == 3 and env.executions("news") == []


def test_an_identity_lost_while_the_event_is_written_again_without_a_failed_claim_is_routed_again(env: Env) -> None:
    r = env.router(NEWS)
    guess = new_contact_id(("email", "ada@example.com"))
    calls: list[int] = []

    def race(params: dict[str, Any], **_: Any) -> None:
        calls.append(1)
        if len(calls) == 1:  # the event's write: a racing enrolment takes the claim's item
            env.store.put_item({C.PK: contact_pk(guess), C.SK: "ENROLL#news", "rev": 1})
        elif len(calls) == 2:  # its write without the claim: another delivery creates the contact
            _rival_profile(env, "c-rival")
            _ident(env, "c-rival")

    env.ddb.meta.events.register("before-call.dynamodb.TransactWriteItems", race)
    try:
        out = r.handle(ev("e1", "list.subscribed"))
    finally:
        env.ddb.meta.events.unregister("before-call.dynamodb.TransactWriteItems", race)
    assert out == [Routed("c-rival", "news", "entered", "started")]
    assert env.item(guess, "PROFILE") is None


# ---- a run's end: the record's final status (execution_ended) ------------------------------------------------


def _ended(env: Env, cid: str, workflow: str) -> tuple[str, str]:
    item = env.enrolment(cid, workflow)
    return str(item["status"]), str(item[C.GSI1_SK])


def test_an_ended_run_takes_its_final_status_on_the_record_and_the_run_index_once(env: Env) -> None:
    r = env.router(NEWS)
    (sub,) = r.handle(ev("e1", "list.subscribed"))
    cid, arn = sub.contact, env.enrolment(sub.contact, "news")["execution_arn"]
    run_input = env.run_input(cid, "news")
    assert r.execution_ended(arn + "-older", "SUCCEEDED", run_input) == []  # another run's report
    assert _ended(env, cid, "news")[0] == "running"
    assert r.execution_ended(arn, "RUNNING", run_input) == []  # not an end
    assert _ended(env, cid, "news")[0] == "running"
    r.execution_ended(arn, "SUCCEEDED", run_input)
    status, sk = _ended(env, cid, "news")
    assert status == "completed" and sk.startswith("completed#") and sk.endswith(f"#{cid}")
    before = env.enrolment(cid, "news")
    r.execution_ended(arn, "FAILED", run_input)  # a late or repeated report: the record no longer reads running
    assert env.enrolment(cid, "news") == before


@pytest.mark.parametrize(("reported", "final"), [("FAILED", "failed"), ("TIMED_OUT", "timed_out")])
def test_a_failed_or_timed_out_run_is_marked_unless_it_runs_again(env: Env, reported: str, final: str) -> None:
    r = env.router(NEWS)
    (sub,) = r.handle(ev("e1", "list.subscribed"))
    cid, arn = sub.contact, env.enrolment(sub.contact, "news")["execution_arn"]
    run_input = env.run_input(cid, "news")
    assert r.execution_ended(arn, reported, run_input) == []
    assert _ended(env, cid, "news")[0] == "running"  # DescribeExecution says RUNNING: redriven since, it wins
    env.sfn.stop_execution(executionArn=arn)  # no longer running per DescribeExecution
    assert r.execution_ended(arn, reported, run_input) == []
    status, sk = _ended(env, cid, "news")
    assert status == final and sk.startswith(f"{final}#")


def test_a_run_aborted_not_by_us_reads_aborted_and_one_we_stopped_stays_stopped(env: Env) -> None:
    r = env.router(NEWS)
    (sub,) = r.handle(ev("e1", "list.subscribed"))
    cid, arn = sub.contact, env.enrolment(sub.contact, "news")["execution_arn"]
    run_input = env.run_input(cid, "news")
    r.execution_ended(arn, "ABORTED", run_input)
    assert _ended(env, cid, "news")[0] == "aborted"
    env.store.put_item({**env.enrolment(cid, "news"), "status": "stopped"})
    r.execution_ended(arn, "ABORTED", run_input)
    assert _ended(env, cid, "news")[0] == "stopped"


def test_a_failed_report_of_another_run_or_of_no_enrolment_changes_nothing(env: Env) -> None:
    r = env.router(NEWS)
    (sub,) = r.handle(ev("e1", "list.subscribed"))
    cid, arn = sub.contact, env.enrolment(sub.contact, "news")["execution_arn"]
    run_input = env.run_input(cid, "news")
    before = env.enrolment(cid, "news")
    assert r.execution_ended(arn + "-older", "FAILED", run_input) == []  # the record names the current run
    assert env.enrolment(cid, "news") == before
    assert r.execution_ended(arn, "TIMED_OUT", {**run_input, "workflow": "never-entered"}) == []
    assert env.item(cid, "ENROLL#never-entered") is None


def test_a_failed_run_whose_execution_is_gone_is_marked_failed(env: Env) -> None:
    r = env.router(NEWS)
    (sub,) = r.handle(ev("e1", "list.subscribed"))
    cid = sub.contact
    run_input = env.run_input(cid, "news")
    gone = TEMPLATE.replace("{workflow}", "news").replace(":stateMachine:", ":execution:") + ":gone"
    env.store.put_item({**env.enrolment(cid, "news"), "execution_arn": gone})  # DescribeExecution: no such run
    assert r.execution_ended(gone, "FAILED", run_input) == []
    status, sk = _ended(env, cid, "news")
    assert status == "failed" and sk.startswith("failed#")


# ---- a run's end: its kept trigger event (~TRIGGER#) ------------------------------------------------------------


def _kept(env: Env, cid: str) -> str:
    """The sort key of the ~TRIGGER# item the contact's run of news references; it is there."""
    key = str(env.run_input(cid, "news")["event"]["stored"])
    assert key.startswith("~TRIGGER#") and env.item(cid, key) is not None
    return key


def test_a_run_that_succeeds_has_its_trigger_deleted_and_nothing_else(env: Env) -> None:
    r = env.router(NEWS)
    (sub,) = r.handle(ev("e1", "list.subscribed"))
    cid, arn = sub.contact, env.enrolment(sub.contact, "news")["execution_arn"]
    run_input, key = env.run_input(cid, "news"), _kept(env, cid)
    r.execution_ended(arn, "FAILED", {**run_input, "contact_id": "c-other"})  # another contact's report
    r.execution_ended(arn, "SUCCEEDED", {**run_input, "event": {"type": "list.subscribed", "stored": "~TRIGGER#x"}})
    assert env.item(cid, key) is not None  # a report naming another reference deletes only that one
    r.execution_ended(arn, "SUCCEEDED", run_input)
    assert env.item(cid, key) is None
    assert env.item(cid, "PROFILE") is not None and env.enrolment(cid, "news")["status"] == "completed"


def test_a_run_that_fails_keeps_its_trigger(env: Env) -> None:
    r = env.router(NEWS)
    (sub,) = r.handle(ev("e1", "list.subscribed"))
    cid, arn = sub.contact, env.enrolment(sub.contact, "news")["execution_arn"]
    run_input, key = env.run_input(cid, "news"), _kept(env, cid)
    env.sfn.stop_execution(executionArn=arn)
    for status in ("FAILED", "TIMED_OUT", "ABORTED"):
        r.execution_ended(arn, status, run_input)
    assert env.item(cid, key) is not None


def test_an_enrolment_claimed_for_another_run_keeps_the_trigger_one_for_this_run_does_not(env: Env) -> None:
    r = env.router(NEWS)
    (sub,) = r.handle(ev("e1", "list.subscribed"))
    cid, arn = sub.contact, env.enrolment(sub.contact, "news")["execution_arn"]
    run_input, key = env.run_input(cid, "news"), _kept(env, cid)
    record = env.enrolment(cid, "news")
    env.store.put_item({**record, "claim": {"execution_arn": arn + "-restart"}})  # a restart under way
    r.execution_ended(arn, "SUCCEEDED", run_input)
    assert env.item(cid, key) is not None
    env.store.put_item({**record, "claim": {"execution_arn": arn}})  # this run's own claim, left behind
    r.execution_ended(arn, "SUCCEEDED", run_input)
    assert env.item(cid, key) is None


def test_the_trigger_stays_while_another_current_run_goes_on_with_it(env: Env) -> None:
    r = env.router(NEWS)
    (sub,) = r.handle(ev("e1", "list.subscribed"))
    cid, arn = sub.contact, env.enrolment(sub.contact, "news")["execution_arn"]
    run_input, key = env.run_input(cid, "news"), _kept(env, cid)
    record, machine = env.enrolment(cid, "news"), TEMPLATE.replace("{workflow}", "news")

    def current(name: str, event: dict[str, Any]) -> None:
        other = env.sfn.start_execution(
            stateMachineArn=machine, name=name, input=json.dumps({**run_input, "event": event})
        )
        env.store.put_item({**record, "execution_arn": other["executionArn"]})

    current("restart", run_input["event"])  # a goal's restart passing this run's reference on
    assert r.execution_ended(arn, "SUCCEEDED", run_input) == []
    assert env.item(cid, key) is not None
    current("next-entry", {"type": "list.subscribed", "stored": "~TRIGGER#another"})  # a new entry: its own event
    r.execution_ended(arn, "SUCCEEDED", run_input)
    assert env.item(cid, key) is None
    env.store.put_item({C.PK: contact_pk(cid), C.SK: key, "event": {"type": "list.subscribed"}})
    env.store.put_item({**record, "execution_arn": f"{machine.replace(':stateMachine:', ':execution:')}:gone"})
    r.execution_ended(arn, "SUCCEEDED", run_input)  # the current run cannot be described: nothing goes on with it
    assert env.item(cid, key) is None


# ---- message events count for the run that sent the message -------------------------------------------------


def test_a_message_event_is_on_the_funnel_of_the_run_that_sent_the_message(env: Env) -> None:
    r = env.router(NEWS)
    (sub,) = r.handle(ev("e0", "list.subscribed"))
    cid = sub.contact
    _message(env, cid, "m1", workflow="news", step="hello", execution="run-7")
    _message(env, cid, "m2", workflow="news", step="hello")  # written before messages named their run
    opened = env.clock.advance(minutes=5)
    r.handle(ev("o1", "email.opened", {"message_id": "m1"}, at=opened, contact_id=cid))
    r.handle(ev("o2", "email.opened", {"message_id": "m2"}, at=opened, contact_id=cid))
    keys = {
        a["data"]["message_id"]: (a[C.GSI1_PK], a[C.GSI1_SK])
        for a in env.store.query_prefix(contact_pk(cid), "ACT#", live_only=False)
        if a.get("type") == "email.opened"
    }
    funnel = keys["m1"][0]
    assert funnel.startswith("FUNNEL#news#") and keys["m2"][0] == funnel
    assert keys["m1"][1].startswith(opened.isoformat() + "#msg#") and keys["m1"][1].endswith("#run-7/m1")
    assert keys["m2"][1].endswith("#m2") and "/" not in keys["m2"][1].rsplit("#", 1)[-1]


# ---- a fixed-date trigger hands the list to the broadcast -------------------------------------------------------


def test_a_fixed_date_trigger_snapshots_its_list_and_starts_the_broadcast(env: Env, aws: Aws) -> None:
    from shared.runtime import broadcast
    from shared.store.broadcasts import BroadcastStore

    blast = wf("""
name: blast
triggers: [{at: "2026-12-01T09:00:00+01:00", list: customers}]
steps: [{id: s, send_email: {template: t}}]
""")
    r = env.router(blast, NEWS)
    members = sorted(
        r.handle(ev(f"e{i}", "list.subscribed", {"list": "customers"}, email=f"c{i}@example.com"))[0].contact
        for i in range(3)
    )
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="stepwise-archive")
    machine = env.sfn.create_state_machine(name="stepwise-broadcast", definition=DEFINITION, roleArn=ROLE)
    broadcast.bind(
        broadcast.Broadcaster(r, BroadcastStore(s3, env.sfn, "stepwise-archive", machine["stateMachineArn"]))
    )
    try:
        (out,) = r.fire_schedule(blast, blast.triggers[0].root)  # type: ignore[arg-type]
        again = r.fire_schedule(blast, blast.triggers[0].root)  # type: ignore[arg-type]
    finally:
        broadcast.bind(None)
    assert (out.contact, out.workflow, out.action) == ("(list customers)", "blast", "broadcast")
    assert out.why.startswith("list customers: 3 contacts in 1 batches, broadcast ") and out.why.endswith(" started")
    assert again[0].why == out.why  # a repeat of the date's schedule: the same broadcast, no second one
    (run,) = env.sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]
    given = json.loads(env.sfn.describe_execution(executionArn=run["executionArn"])["input"])
    assert (given["workflow"], given["list"], given["at"]) == ("blast", "customers", "2026-12-01T09:00:00+01:00")
    snapshot = json.loads(s3.get_object(Bucket="stepwise-archive", Key=given["key"])["Body"].read())
    assert snapshot == [{"batch": 0, "contacts": members}]
