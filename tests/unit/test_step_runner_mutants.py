"""The step runner's domain (functions/step_runner/logic.py) driven directly with the Task payloads the compiler
writes (shared/workflow/compiler.py `_task`), against moto's DynamoDB and Step Functions in-process: what each
step kind records (kind, outcome, why, observed values), writes to the contact, queues as a message or an outbox
event; send windows, frequency caps and message budgets; decisions, waits, goals, go-to bounds, passive records
ahead, and retries of a Task (committed once). Fast enough to run for every mutant of the module
(docs/mutation.md); the compiled machines themselves run in tests/integration."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from functions.step_runner import logic
from functions.step_runner.logic import Deps, InvalidStep, LoopLimitReached, SendDeferred, StepRequest
from shared import clock, webhooks
from shared import constants as C
from shared.enrollment import Enroller
from shared.events import stable_hash
from shared.history import EntryPlan, visit_key
from shared.lifecycle import STATUS_SK, status_pk, write_status
from shared.store.contacts import ConditionFailed, ContactNotFound, ContactStore, contact_pk, create_table
from shared.workflow.compiler import compile_workflow
from shared.workflow.model import parse_workflow

REGION = "us-east-1"
ACCOUNT = "123456789012"
TABLE = "stepwise-test"
TEMPLATE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:stepwise-{{workflow}}"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/stepwise-test"
FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:step-runner"
EXEC = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:stepwise-w:run-1"
DEFINITION = json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 86400, "End": True}}})
# A Wednesday, 10:00 UTC.
NOON = datetime(2026, 11, 4, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.at = NOON

    def __call__(self) -> datetime:
        return self.at


@dataclass
class Env:
    store: ContactStore
    sfn: Any
    clock: Clock
    metrics: list[tuple[str, str, str, dict[str, str]]] = field(default_factory=list)
    plans: dict[str, EntryPlan] = field(default_factory=dict)
    secret: bytes | None = None
    secrets_asked: list[str] = field(default_factory=list)
    policy: webhooks.WebhookPolicy = field(default_factory=webhooks.WebhookPolicy)

    def metric(self, name: str, workflow: str, step: str, dims: dict[str, str]) -> None:
        self.metrics.append((name, workflow, step, dims))

    def deps(self) -> Deps:
        enroller = Enroller(
            self.store, self.sfn, TEMPLATE, self.metric, self.plans, activated_at=self.clock.at - timedelta(days=1)
        )
        secret = self.secret

        def secret_for(name: str) -> bytes:
            assert secret is not None
            self.secrets_asked.append(name)
            return secret

        return Deps(self.store, enroller, self.sfn, self.metric, self.policy, secret_for if secret else None)

    def contact(self, cid: str = "c1", **profile: Any) -> str:
        item: dict[str, Any] = {C.PK: contact_pk(cid), C.SK: "PROFILE", "contact_id": cid, "email": "ada@example.com"}
        item |= {"fields": {}, "stages": {}, "campaigns": {}, "consent": {}, "score": 0, **profile}
        self.store.put_item({k: v for k, v in item.items() if v is not None})
        return cid

    def item(self, sk: str, cid: str = "c1") -> dict[str, Any] | None:
        return self.store.get_item(contact_pk(cid), sk)

    def items(self, prefix: str, cid: str = "c1") -> list[dict[str, Any]]:
        return self.store.query_prefix(contact_pk(cid), prefix, live_only=False)

    def hist(self, cid: str = "c1") -> list[tuple[str, str, str, str]]:
        return [(h["step"], h["kind"], h["outcome"], h["why"]) for h in sorted(self.items("HIST#", cid), key=_order)]

    def outbox(self, cid: str = "c1") -> list[tuple[str, dict[str, Any]]]:
        got = self.store.scan_prefix("EVENT#")
        return sorted(((str(i["type"]), dict(i["data"])) for i in got if i.get("contact_id") == cid), key=json.dumps)

    def profile(self, cid: str = "c1") -> dict[str, Any]:
        got = self.item("PROFILE", cid)
        assert got is not None
        return got

    def named(self, name: str) -> list[tuple[str, str, dict[str, str]]]:
        return [(w, s, d) for n, w, s, d in self.metrics if n == name]


def _order(h: dict[str, Any]) -> tuple[str, int]:
    return (str(h["at"]), int(h["seq"]))


@dataclass
class Aws:
    mock: Any
    ddb: Any
    sfn: Any


@pytest.fixture(name="aws", scope="module")
def aws_fixture() -> Iterator[Aws]:
    with mock_aws() as mock:
        yield Aws(mock, boto3.client("dynamodb", region_name=REGION), boto3.client("stepfunctions", region_name=REGION))


@pytest.fixture(name="env")
def env_fixture(aws: Aws) -> Iterator[Env]:
    aws.mock.reset()
    create_table(aws.ddb, TABLE)
    for n in ("w", "other", "news"):
        aws.sfn.create_state_machine(name=f"stepwise-{n}", definition=DEFINITION, roleArn=ROLE)
    c = Clock()
    clock.use(c)
    try:
        yield Env(ContactStore(TABLE, aws.ddb), aws.sfn, c)
    finally:
        clock.use(None)


def tasks(text: str) -> dict[str, dict[str, Any]]:
    """The static part of each Task's payload in the compiled machine of `text`, by state name."""
    wf = parse_workflow(yaml.safe_load(text), "<test>")
    states = compile_workflow(wf, FUNCTION)["States"]
    return {
        n: {k: v for k, v in s["Parameters"]["Payload"].items() if not k.endswith(".$")}
        for n, s in states.items()
        if s["Type"] == "Task"
    }


def request(
    payload: dict[str, Any],
    cid: str = "c1",
    *,
    run: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
    execution: str = EXEC,
    token: str | None = None,
) -> StepRequest:
    return StepRequest.model_validate(
        {
            **payload,
            "contact_id": cid,
            "event": event if event is not None else {"type": "app.signup", "data": {"plan": "pro"}},
            "run": run if run is not None else {"loops": 0, "branch": "", "resume_at": ""},
            "execution": execution,
            "entered": "2026-11-04T10:00:00Z",
            **({"task_token": token} if token else {}),
        }
    )


def go(env: Env, payload: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return logic.run(request(payload, **kw), env.deps())


ACTIONS = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: tag
    add_tag: [vip, new]
  - id: untag
    remove_tag: [old, absent]
  - id: fields
    set_field: {plan: gold, city: Paris}
  - id: up
    adjust_score: {add: 5}
  - id: stage
    move_to_stage: {pipeline: sales, stage: won}
  - id: sub
    subscribe: {list: weekly}
  - id: unsub
    unsubscribe: {list: daily}
  - id: bye
    end: {reason: all done}
""")


def test_actions_write_the_profile_the_outbox_and_one_record_each(env: Env) -> None:
    env.contact(tags={"old", "keep"}, fields={"plan": "free", "city": "Paris"}, score=2, lists={"daily"})
    out = go(env, ACTIONS["tag"])
    assert out == {"loops": 0, "branch": ""}
    assert env.hist() == [
        ("tag", "add_tag", "done", "tags added: vip, new"),
        ("untag", "remove_tag", "done", "tags removed: old, absent"),
        ("fields", "set_field", "done", "fields set: city, plan"),
        ("up", "adjust_score", "done", "score 2 -> 7"),
        ("stage", "move_to_stage", "done", "pipeline sales: stage won"),
        ("sub", "subscribe", "done", "membership changed"),
        ("unsub", "unsubscribe", "done", "membership changed"),
        ("bye", "end", "ended", "all done"),
    ]
    p = env.profile()
    assert set(p["tags"]) == {"keep", "vip", "new"}
    assert p["fields"] == {"plan": "gold", "city": "Paris"} and p["score"] == 7
    assert p["stages"] == {"sales": "won"} and set(p["lists"]) == {"weekly"}
    assert env.item("LIST#weekly") is not None and env.item("LIST#daily") is None
    member = env.item("LIST#weekly")
    assert member is not None and member[C.GSI1_PK] == "LIST#weekly" and member[C.GSI1_SK] == "CONTACT#c1"
    assert member["at"] == NOON.isoformat()
    assert env.outbox() == [
        ("field.changed", {"field": "plan", "value": "gold", "previous": "free"}),
        ("list.subscribed", {"list": "weekly", "source": "w"}),
        ("list.unsubscribed", {"list": "daily"}),
        ("pipeline.stage_changed", {"pipeline": "sales", "stage": "won", "previous": None}),
        ("score.changed", {"score": 7, "previous": 2, "delta": 5}),
        ("tag.added", {"tag": "new"}),
        ("tag.added", {"tag": "vip"}),
        ("tag.removed", {"tag": "old"}),
    ]
    done = env.named(C.METRIC_STEP_COMPLETED)
    assert [s for _, s, _ in done] == ["tag", "untag", "fields", "up", "stage", "sub", "unsub"]
    assert env.named(C.METRIC_ENDED) == [("w", "bye", {"reason": "end_step"})]
    assert not env.named(C.METRIC_MESSAGE_SENT)
    # The same Task again (a retry): nothing is written twice, no metric counted again.
    before = len(env.metrics)
    assert go(env, ACTIONS["tag"]) == {"loops": 0, "branch": ""}
    assert len(env.hist()) == 8 and len(env.outbox()) == 8 and len(env.metrics) == before
    assert env.profile()["score"] == 7


def test_actions_already_applied_raise_no_events(env: Env) -> None:
    env.contact(
        tags={"vip", "new"}, fields={"plan": "gold", "city": "Paris"}, stages={"sales": "lost"}, lists={"weekly"}
    )
    go(env, ACTIONS["tag"])
    assert env.hist()[0][3] == "tags added: vip, new (already present)"
    assert env.outbox() == [
        ("pipeline.stage_changed", {"pipeline": "sales", "stage": "won", "previous": "lost"}),
        ("score.changed", {"score": 5, "previous": 0, "delta": 5}),
    ]
    assert set(env.profile()["lists"]) == {"weekly"}


SCORE_SET = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: reset
    adjust_score: {set: 3}
  - id: reset0
    adjust_score: {set: 0}
""")


def test_adjust_score_set(env: Env) -> None:
    env.contact(score=10)
    go(env, SCORE_SET["reset"])
    assert env.hist() == [
        ("reset", "adjust_score", "done", "score 10 -> 3"),
        ("reset0", "adjust_score", "done", "score 3 -> 0"),
    ]
    assert env.profile()["score"] == 0
    assert env.outbox() == [
        ("score.changed", {"score": 0, "previous": 3, "delta": -3}),
        ("score.changed", {"score": 3, "previous": 10, "delta": -7}),
    ]


SENDS = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: code
    generate_coupon: {field: coupon, percent_off: 10, valid_for: 7d, prefix: "W-"}
  - id: mail
    send_email: {template: welcome, subject: Hello, campaign: spring}
  - id: text
    send_sms: {template: sms-hi, campaign: spring}
  - id: site
    send_site_message: {template: banner}
  - id: team
    notify: {to: [ops@example.com, b@example.com], subject: New, template: alert-new}
""")


def test_sends_queue_one_message_each_with_the_coupon(env: Env) -> None:
    env.contact(phone="+15550100", fields={"plan": "pro"})
    event = {"type": "app.signup", "data": {"cart": [1, 2]}}
    go(env, SENDS["code"], event=event)
    code = env.profile()["fields"]["coupon"]
    assert code.startswith("W-") and len(code) == 10 and code[2:] == code[2:].upper()
    coupon = env.store.get_item(f"COUPON#{code}", "COUPON")
    assert coupon is not None
    assert (coupon["code"], coupon["contact_id"], coupon["percent_off"], coupon.get("amount_off")) == (
        code,
        "c1",
        10,
        None,
    )
    assert coupon["valid_until"] == (NOON + timedelta(days=7)).isoformat()
    assert int(coupon[C.TTL_ATTRIBUTE]) == int((NOON + timedelta(days=37)).timestamp())
    assert env.hist() == [
        ("code", "generate_coupon", "done", "coupon generated into field coupon"),
        ("mail", "send_email", "done", "email 'welcome' queued"),
        ("text", "send_sms", "done", "SMS 'sms-hi' queued"),
        ("site", "send_site_message", "done", "site message 'banner' queued"),
        ("team", "notify", "done", "alert to 2 team address(es)"),
    ]
    msgs = {m["channel"]: m for m in env.items("MSG#")}
    assert set(msgs) == {"email", "sms", "site", "alert"}
    mail = msgs["email"]
    assert mail[C.SK] == f"MSG#{mail['message_id']}" and len(mail["message_id"]) > 8
    assert (mail["workflow"], mail["step"], mail["execution"], mail["status"]) == ("w", "mail", "run-1", "queued")
    assert (mail["template"], mail["subject"], mail["campaign"], mail["to"]) == (
        "welcome",
        "Hello",
        "spring",
        "ada@example.com",
    )
    assert mail["coupon"] == code and "transactional" not in mail
    assert mail["at"] == NOON.isoformat() and mail["entered"].startswith("2026-11-04T10:00:00Z|")
    assert mail["event"] == {"cart": [1, 2]}
    assert int(mail[C.TTL_ATTRIBUTE]) == int((NOON + timedelta(days=30)).timestamp())
    sms = msgs["sms"]
    assert (sms["template"], sms["campaign"], sms["to"], sms["step"]) == ("sms-hi", "spring", "+15550100", "text")
    assert "subject" not in sms and sms["coupon"] == code
    assert (msgs["site"]["template"], msgs["site"]["step"]) == ("banner", "site")
    alert = msgs["alert"]
    assert alert["to"] == ["ops@example.com", "b@example.com"] and alert["about"] == "c1"
    assert (alert["subject"], alert["template"], alert["step"]) == ("New", "alert-new", "team")
    assert len({m["message_id"] for m in msgs.values()}) == 4
    assert [s for _, s, _ in env.named(C.METRIC_MESSAGE_SENT)] == ["mail", "text", "site", "team"]
    # A retry of the Task: the same coupon, no second message.
    go(env, SENDS["code"], event=event)
    assert len(env.items("MSG#")) == 4 and env.profile()["fields"]["coupon"] == code
    # Another run gets another message id and another coupon.
    go(env, SENDS["code"], execution=EXEC.replace("run-1", "run-2"))
    assert len(env.items("MSG#")) == 8 and env.profile()["fields"]["coupon"] != code


SKIPS = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: mail
    send_email: {template: welcome}
  - id: text
    send_sms: {template: sms-hi}
  - id: site
    send_site_message: {template: banner}
  - id: team
    notify: {to: [ops@example.com], subject: New, template: alert-new}
""")


def test_sends_skipped_without_address_or_consent(env: Env) -> None:
    env.contact(email=None)
    go(env, SKIPS["mail"])
    env.contact("c2", phone="+1555", consent={"email": False, "sms": False})
    go(env, SKIPS["mail"], cid="c2")
    assert env.hist()[:2] == [
        ("mail", "send_email", "skipped", "contact has no email address"),
        ("text", "send_sms", "skipped", "contact has no phone number"),
    ]
    assert env.hist("c2")[:2] == [
        ("mail", "send_email", "skipped", "contact withdrew email consent"),
        ("text", "send_sms", "skipped", "contact withdrew SMS consent"),
    ]
    assert [m["channel"] for m in env.items("MSG#")] and {m["channel"] for m in env.items("MSG#")} == {"site", "alert"}
    assert {m["channel"] for m in env.items("MSG#", "c2")} == {"site", "alert"}
    sent = [s for _, s, _ in env.named(C.METRIC_MESSAGE_SENT)]
    assert sent == ["site", "team", "site", "team"]
    assert [s for _, s, _ in env.named(C.METRIC_STEP_COMPLETED)][:2] == ["mail", "text"]


TRANSACTIONAL = tasks("""
name: w
triggers: [{event: app.signup}]
settings: {frequency_cap: {email: 1, sms: 1}}
steps:
  - id: receipt
    send_email: {template: receipt, transactional: true}
  - id: sms
    send_sms: {template: code, transactional: true}
""")


def test_transactional_sends_are_marked_and_not_capped(env: Env) -> None:
    env.contact(phone="+1555")
    go(env, TRANSACTIONAL["receipt"])
    go(env, TRANSACTIONAL["receipt"], execution=EXEC.replace("run-1", "run-2"))
    msgs = env.items("MSG#")
    assert len(msgs) == 4 and all(m["transactional"] is True for m in msgs)
    assert env.items("CAP#") == [] and all(o == "done" for _, _, o, _ in env.hist())


WINDOW = tasks("""
name: w
triggers: [{event: app.signup}]
settings: {send_window: {between: "09:00-17:00", timezone: UTC}, frequency_cap: {email: 2, sms: 2}}
steps:
  - id: before
    add_tag: [a]
  - id: mail
    send_email: {template: hi}
  - id: after
    add_tag: [b]
  - id: text
    send_sms: {template: t}
  - id: anytime
    send_email: {template: late, send_window: anytime}
""")


def test_a_send_outside_its_window_is_held_then_resumed_there(env: Env) -> None:
    env.contact(phone="+1555")
    env.clock.at = NOON.replace(hour=20)
    with pytest.raises(SendDeferred) as held:
        go(env, WINDOW["before"])
    opens = NOON.replace(day=5, hour=9)
    assert held.value.until == opens and str(held.value) == "2026-11-05T09:00:00Z"
    assert env.hist() == [
        ("before", "add_tag", "done", "tags added: a"),
        (
            "mail",
            "send_email",
            "held",
            "outside the send window 09:00-17:00 contact-local (fallback UTC); held until 2026-11-05T09:00:00Z",
        ),
    ]
    rec = next(h for h in env.items("HIST#") if h["outcome"] == "held")
    assert rec["until"] == "2026-11-05T09:00:00Z" and rec[C.SK].endswith("#mail#held-2026-11-05T09:00:00Z")
    assert rec["why"].startswith("outside the send window ") and rec["why"].endswith(
        "; held until 2026-11-05T09:00:00Z"
    )
    hold = env.item("HOLD#run-1")
    assert hold is not None and (hold["step"], hold["loops"], hold["until"]) == ("mail", 0, "2026-11-05T09:00:00Z")
    assert int(hold[C.TTL_ATTRIBUTE]) == int((opens + timedelta(days=2)).timestamp())
    assert env.items("MSG#") == []
    # The Wait brings the run back at 09:00 with `deferred` set: it goes on from the held step.
    env.clock.at = opens
    go(env, WINDOW["before"], run={"loops": 0, "branch": "", "resume_at": "", "deferred": {}})
    steps = [h[0] for h in env.hist()]
    assert steps.count("before") == 1 and steps[-3:] == ["after", "text", "anytime"]
    assert {m["channel"] for m in env.items("MSG#")} == {"email", "sms"} and len(env.items("MSG#")) == 3
    caps = {c[C.SK] for c in env.items("CAP#")}
    assert caps and len(env.items("CAP#")) == 2


def test_a_held_send_resumed_by_its_window_is_not_held_again_even_if_the_window_is_closed(env: Env) -> None:
    env.contact(phone="+1555")
    env.clock.at = NOON.replace(hour=20)
    with pytest.raises(SendDeferred):
        go(env, WINDOW["before"])
    # The hold is for another visit (loops): a plain resume from the top of the Task, held again at `mail`.
    with pytest.raises(SendDeferred):
        go(env, WINDOW["before"], run={"loops": 1, "branch": "", "resume_at": "", "deferred": {}})
    assert [h[0] for h in env.hist()].count("before") == 2
    # Its own visit: resumed at `mail` without a second hold, though the clock says 20:00 still; `text` is another
    # step: its window is checked, and the run is held there.
    with pytest.raises(SendDeferred):
        go(env, WINDOW["before"], run={"loops": 1, "branch": "", "resume_at": "", "deferred": {}})
    assert [m["step"] for m in env.items("MSG#")] == ["mail"]
    hold = env.item("HOLD#run-1")
    assert hold is not None and hold["step"] == "text"
    # A run back from a hold that is gone (or another's) starts the Task from the top.
    env.store.delete_item(contact_pk("c1"), "HOLD#run-1")
    with pytest.raises(SendDeferred):
        go(env, WINDOW["before"], run={"loops": 0, "branch": "", "resume_at": "", "deferred": {}})
    assert [h[0] for h in env.hist()].count("before") == 2


def test_the_frequency_cap_holds_the_second_send_of_the_day_until_the_next_window(env: Env) -> None:
    env.contact(phone="+1555")
    go(env, WINDOW["before"])
    cap = env.items("CAP#")
    assert len(cap) == 2
    with pytest.raises(SendDeferred) as held:
        go(env, WINDOW["before"], execution=EXEC.replace("run-1", "run-2"))
    assert held.value.until == NOON.replace(day=5, hour=9)
    why = [h["why"] for h in env.items("HIST#") if h["outcome"] == "held"]
    assert why == ["frequency cap: 2 email per day reached on 2026-11-04; held until 2026-11-05T09:00:00Z"]
    assert len(env.items("MSG#")) == 3  # the first run's only


def test_the_frequency_cap_without_a_window_holds_until_midnight(env: Env) -> None:
    env.contact(phone="+1555")
    go(env, TRANSACTIONAL["receipt"])  # no cap counted
    capped = tasks("""
name: w
triggers: [{event: app.signup}]
settings: {frequency_cap: {email: 1}}
steps:
  - id: mail
    send_email: {template: hi}
  - id: text
    send_sms: {template: t}
""")
    go(env, capped["mail"])
    assert len(env.items("CAP#")) == 1  # sms not capped: no counter
    with pytest.raises(SendDeferred) as held:
        go(env, capped["mail"], execution=EXEC.replace("run-1", "run-2"))
    assert held.value.until == datetime(2026, 11, 5, tzinfo=UTC)


def test_a_steps_own_send_window_holds_it_without_a_workflow_window(env: Env) -> None:
    own = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: mail
    send_email: {template: hi, send_window: {between: "09:00-17:00"}}
""")
    env.contact()
    env.clock.at = NOON.replace(hour=20)
    with pytest.raises(SendDeferred) as held:
        go(env, own["mail"])
    assert held.value.until == NOON.replace(day=5, hour=9) and env.items("MSG#") == []


def test_the_window_and_the_cap_day_are_the_contacts_own_zone(env: Env) -> None:
    # The send window is contact-local (the workflow's zone only the fallback): 10:00 UTC is 19:00 in Tokyo, so
    # the send is held until 09:00 Tokyo, 00:00 UTC the next day.
    env.contact(phone="+1555", timezone="Asia/Tokyo")
    with pytest.raises(SendDeferred) as held:
        go(env, WINDOW["before"])
    assert held.value.until == datetime(2026, 11, 5, 0, 0, tzinfo=UTC)
    # The frequency cap counts against the contact's local day: 20:00 UTC on the 4th is the 5th in Tokyo.
    capped = tasks("""
name: w
triggers: [{event: app.signup}]
settings: {frequency_cap: {email: 1}}
steps:
  - id: mail
    send_email: {template: hi}
""")
    env.clock.at = NOON.replace(hour=20)
    go(env, capped["mail"], execution=EXEC.replace("run-1", "run-2"))
    assert [c[C.SK] for c in env.items("CAP#")] == ["CAP#email#2026-11-05"]


def test_the_message_budget_skips_the_send_and_pauses_the_workflow(env: Env) -> None:
    env.contact(phone="+1555")
    env.plans["w"] = EntryPlan(
        version="v", history_days=7, budgets={"messages_per_contact_per_day": 1, "alert": ["ops@example.com"]}
    )
    go(env, {**SKIPS["mail"], "history_days": 7})
    paused = [h for h in env.items("HIST#") if h["kind"] == "budget"]
    assert int(paused[0][C.TTL_ATTRIBUTE]) == int((NOON + timedelta(days=7)).timestamp())
    hist = env.hist()
    reason = "runaway budget: 1 messages to one contact on 2026-11-04 (UTC) reached"
    assert hist == [
        ("(budget)", "budget", "paused", f"{reason}: workflow w paused"),
        ("mail", "send_email", "done", "email 'welcome' queued"),
        ("text", "send_sms", "skipped", f"{reason}; not sent, workflow w paused"),
        ("site", "send_site_message", "done", "site message 'banner' queued"),
        ("team", "notify", "done", "alert to 1 team address(es)"),
    ]
    msgs = sorted((m["channel"], m.get("about", ""), str(m.get("to"))) for m in env.items("MSG#"))
    assert [m[0] for m in msgs] == ["alert", "alert", "email", "site"]
    assert msgs[0][1:] == msgs[1][1:] == ("c1", "['ops@example.com']")
    status = env.store.get_item(status_pk("w"), STATUS_SK)
    assert status is not None and status["active"] is False and status["reason"] == reason
    assert [s for _, s, _ in env.named(C.METRIC_STEP_COMPLETED)] == ["mail", "text", "site", "team"]
    assert [s for _, s, _ in env.named(C.METRIC_MESSAGE_SENT)] == ["mail", "site", "team"]
    # Under the limit for another contact: counted.
    env.contact("c2", phone="+1")
    go(env, SKIPS["mail"], cid="c2")
    budget = env.store.get_item(contact_pk("c2"), "BUDGET#messages#2026-11-04")
    assert budget is not None and int(budget["count"]) == 1
    assert [h[2] for h in env.hist("c2")] == ["done", "skipped", "done", "done"]


START = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: go
    start_workflow: {workflow: other}
  - id: join
    subscribe: {campaign: news}
  - id: leave
    remove_from_campaign: other
""")


def test_start_workflow_and_campaigns_start_and_stop_runs_after_the_commit(env: Env) -> None:
    env.contact(campaigns={"other": ""})
    go(env, START["go"], event={"type": "app.signup", "data": {"x": 1}})
    assert env.hist()[:3] == [
        ("go", "start_workflow", "done", "start workflow other"),
        ("join", "subscribe", "done", "membership changed"),
        ("leave", "remove_from_campaign", "done", "membership changed"),
    ]
    p = env.profile()
    assert p["campaigns"] == {"news": ""}
    news = env.item("ENROLL#news")
    assert news is not None and news["execution_arn"].split(":")[-3] == "execution"
    other = env.item("ENROLL#other")
    assert other is not None
    arn = other["execution_arn"]
    assert env.sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
    runs = env.sfn.list_executions(stateMachineArn=TEMPLATE.replace("{workflow}", "news"))["executions"]
    assert len(runs) == 1
    inp = json.loads(env.sfn.describe_execution(executionArn=runs[0]["executionArn"])["input"])
    assert inp["contact_id"] == "c1" and inp["run"]["resume_at"] == ""


def test_start_workflow_at_a_step(env: Env) -> None:
    env.contact()
    at = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: go
    start_workflow: {workflow: other, at: later}
""")
    go(env, at["go"])
    assert env.hist() == [("go", "start_workflow", "done", "start workflow other at later")]
    arn = env.item("ENROLL#other")
    assert arn is not None
    inp = json.loads(env.sfn.describe_execution(executionArn=arn["execution_arn"])["input"])
    assert inp["run"]["resume_at"] == "later"


def test_a_start_the_other_workflow_refuses_is_recorded_once_and_starts_nothing(env: Env) -> None:
    env.contact()
    write_status(env.store, "other", active=False, since=env.clock.at - timedelta(hours=1))
    go(env, START["go"])
    go(env, START["go"])  # the Task retried: the same visit
    got = [h for h in env.hist() if h[0] == "go"]
    assert got == [
        ("go", "start_workflow", "done", "start workflow other"),
        (
            "go",
            "start_workflow",
            "not started",
            "other not started: workflow is not active (deactivated 2026-11-04T09:00:00+00:00)",
        ),
    ]
    assert env.item("ENROLL#other") is None
    machine = TEMPLATE.replace("{workflow}", "other")
    assert env.sfn.list_executions(stateMachineArn=machine)["executions"] == []


def test_a_start_that_went_through_has_no_refusal_record_also_when_retried(env: Env) -> None:
    env.contact()
    go(env, START["go"])
    go(env, START["go"])  # the retry's enrolment finds its own execution: a duplicate, not a refusal
    assert [h[2] for h in env.hist() if h[0] == "go"] == ["done"]
    machine = TEMPLATE.replace("{workflow}", "other")
    assert len(env.sfn.list_executions(stateMachineArn=machine)["executions"]) == 1
    # Keyed to this visit of the step, started at the other workflow's first step.
    other = env.item("ENROLL#other")
    name = f"other-{stable_hash('c1', 'other', visit_key(EXEC, 0, 'go'), '', length=24)}"
    assert other is not None and other["execution_arn"].rsplit(":", 1)[-1] == name
    inp = json.loads(env.sfn.describe_execution(executionArn=other["execution_arn"])["input"])
    assert inp["run"]["resume_at"] == ""


CAMPAIGN = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: one
    add_tag: [x]
  - id: two
    add_tag: [y]
""")


def test_a_campaign_records_the_stage_the_contact_reached(env: Env) -> None:
    env.contact(campaigns={"w": ""})
    go(env, CAMPAIGN["one"])
    assert env.profile()["campaigns"] == {"w": "two"}
    assert ("campaign.stage_entered", {"campaign": "w", "stage": "two"}) in [
        (t, {k: v for k, v in d.items() if k in ("campaign", "stage")}) for t, d in env.outbox()
    ]
    env.contact("c2")
    go(env, CAMPAIGN["one"], cid="c2")
    assert env.profile("c2")["campaigns"] == {}
    assert not [t for t, _ in env.outbox("c2") if t == "campaign.stage_entered"]


# ---- run, loops, ahead, timeouts ----------------------------------------------------------------------------


def test_run_needs_the_contact_and_a_step(env: Env) -> None:
    with pytest.raises(ContactNotFound):
        go(env, CAMPAIGN["one"], cid="nobody")
    env.contact()
    with pytest.raises(InvalidStep, match=r"^payload has no step$"):
        go(env, {**DECIDE["d"], "step": None})
    with pytest.raises(InvalidStep, match=r"^step d: ValueError: a condition needs exactly one of "):
        go(env, {**DECIDE["d"], "step": {"id": "d", "kind": "if", "if": {"nope": 1}}})
    with pytest.raises(InvalidStep, match="is not a decision"):
        go(env, {**DECIDE["d"], "step": {"id": "x", "add_tag": ["a"], "kind": "add_tag"}})
    with pytest.raises(InvalidStep, match="not a goal"):
        go(env, {**GOALS["g"], "step": {"id": "x", "add_tag": ["a"], "kind": "add_tag"}})
    with pytest.raises(InvalidStep, match="needs wait_until and a task token"):
        go(env, WAITS["w1"])
    with pytest.raises(InvalidStep, match=r"^step d: unknown action kind if$"):
        go(env, {**CAMPAIGN["one"], "steps": [DECIDE["d"]["step"]]})
    assert env.hist() == []


def test_the_trigger_reference_is_read_back(env: Env) -> None:
    env.contact()
    env.store.put_item(
        {C.PK: contact_pk("c1"), C.SK: "~TRIGGER#e1", "event": {"type": "app.signup", "data": {"cart": "big"}}}
    )
    go(env, SKIPS["mail"], event={"type": "app.signup", "stored": "~TRIGGER#e1"})
    mail = [m for m in env.items("MSG#") if m["channel"] == "email"]
    assert mail[0]["event"] == {"cart": "big"}


LOOP = tasks("""
name: w
triggers: [{event: app.signup}]
settings: {max_loops: 2}
steps:
  - id: top
    add_tag: [t]
  - id: pause
    wait: 1h
  - id: again
    goto: top
""")


def test_a_go_to_after_a_wait_records_the_wait_and_counts_the_jump(env: Env) -> None:
    env.contact()
    assert go(env, LOOP["top"]) == {"loops": 1, "branch": ""}
    assert env.hist() == [
        ("top", "add_tag", "done", "tags added: t"),
        ("pause", "wait", "waiting", f"for 3600s until {(NOON + timedelta(hours=1)).isoformat()}"),
    ]
    assert env.metrics == [(C.METRIC_STEP_COMPLETED, "w", "top", {}), ("WaitStarted", "w", "pause", {})]
    assert go(env, LOOP["top"], run={"loops": 1, "branch": ""}) == {"loops": 2, "branch": ""}
    # The jump one too many: after the wait, the run ends at the next call; its record is written ahead.
    assert go(env, LOOP["top"], run={"loops": 2, "branch": ""}) == {"loops": 3, "branch": ""}
    ends = [h for h in env.items("HIST#") if h["step"] == "loop-limit"]
    assert len(ends) == 1 and ends[0]["at"] == (NOON + timedelta(hours=1)).isoformat()
    assert ends[0]["why"] == "go-to jumped 2 times (settings.max_loops)" and ends[0]["outcome"] == "ended"
    assert ends[0][C.SK] == "HIST#run-1#0002#loop-limit" and ends[0]["kind"] == "end"
    # Its seq follows the wait's record of the same call: the records of one instant keep their order.
    waits = [h for h in env.items("HIST#run-1#0002#") if h["step"] == "pause"]
    assert int(ends[0]["seq"]) == int(waits[0]["seq"]) + 1 == 3
    with pytest.raises(LoopLimitReached, match="more than 2 go-to jumps"):
        go(env, LOOP["top"], run={"loops": 3, "branch": ""})
    assert len([h for h in env.items("HIST#") if h["step"] == "loop-limit"]) == 1
    assert env.named(C.METRIC_ENDED) == [("w", "loop-limit", {"reason": "loop_limit"})]


def test_a_go_to_with_nothing_before_it_ends_the_run_at_once(env: Env) -> None:
    env.contact()
    direct = tasks("""
name: w
triggers: [{event: app.signup}]
settings: {max_loops: 1}
steps:
  - id: top
    add_tag: [t]
  - id: again
    goto: top
""")
    assert go(env, direct["top"]) == {"loops": 1, "branch": ""}
    with pytest.raises(LoopLimitReached):
        go(env, direct["top"], run={"loops": 1, "branch": ""})
    ends = [h for h in env.items("HIST#") if h["step"] == "loop-limit"]
    assert len(ends) == 1 and ends[0]["at"] == NOON.isoformat()


WAITS = tasks("""
name: w
triggers: [{event: app.signup}]
settings: {max_loops: 3}
steps:
  - id: w1
    wait_until:
      {event: email.clicked, where: {template: hi}, same: [plan], timeout: 2h, on_timeout: [{id: late, goto: w1}]}
  - id: w2
    wait_until: {condition: {has_tag: paid}, timeout: 1h}
  - id: after
    add_tag: [z]
""")


def test_an_event_wait_records_its_item_and_a_retry_takes_the_new_token(env: Env) -> None:
    env.contact()
    out = go(env, WAITS["w1"], token="tok-1")
    assert out == {"loops": 0, "branch": "waiting"}
    assert env.hist() == [
        ("w1", "wait_until", "waiting", "for event email.clicked where {'template': 'hi'}, at most 7200s")
    ]
    item = env.item("WAIT#run-1#w1")
    assert item is not None
    assert (item["step"], item["workflow"], item["execution"], item["token"]) == ("w1", "w", EXEC, "tok-1")
    assert (item["event"], item["where"], item["same"], item.get("condition")) == (
        "email.clicked",
        {"template": "hi"},
        {"plan": "pro"},
        None,
    )
    assert (item["trigger"], item["loops"], item["goto"], item["max_loops"]) == ({}, 0, False, 3)
    assert item["ahead"] == [] and item["version"] == WAITS["w1"]["version"] and item["history_days"] == 30
    assert item["since"] == NOON.isoformat()
    assert int(item[C.TTL_ATTRIBUTE]) == int((NOON + timedelta(hours=2, days=1)).timestamp())
    assert env.named(C.METRIC_WAIT_STARTED) == [("w", "w1", {})]
    go(env, WAITS["w1"], token="tok-2")
    item = env.item("WAIT#run-1#w1")
    assert item is not None and item["token"] == "tok-2" and len(env.hist()) == 1
    assert len(env.named(C.METRIC_WAIT_STARTED)) == 1
    # A retry after the wait was resumed (its item gone) writes nothing back.
    env.store.delete_item(contact_pk("c1"), "WAIT#run-1#w1")
    go(env, WAITS["w1"], token="tok-3")
    assert env.item("WAIT#run-1#w1") is None


def test_a_condition_wait_resumes_at_once_when_it_already_holds(env: Env) -> None:
    env.contact(tags={"paid"})
    arn = env.sfn.start_execution(stateMachineArn=TEMPLATE.replace("{workflow}", "w"), name="run-1")["executionArn"]
    go(env, WAITS["w2"], token="tok", execution=arn)
    assert env.hist() == [
        ("w2", "wait_until", "resumed", "condition already held"),
        ("w2", "wait_until", "waiting", "for condition has tag 'paid', at most 3600s"),
    ]
    assert env.item("WAIT#run-1#w2") is None  # resumed: the item is gone
    env.contact("c2")
    go(env, WAITS["w2"], cid="c2", token="tok", execution=arn)
    item = env.item("WAIT#run-1#w2", "c2")
    assert item is not None and item.get("event") is None and item["condition"] == {"has_tag": "paid"}
    assert item["trigger"] == {}


def test_timeouts_are_recorded_once_and_a_timeout_goto_counts_its_jump(env: Env) -> None:
    env.contact()
    go(env, WAITS["w1"], token="tok-1")
    go(env, WAITS["w2"], token="tok-2", run={"loops": 2, "branch": ""})
    out = go(env, WAITS["w1"], token="tok-3", run={"loops": 0, "branch": "", C.RUN_TIMED_OUT_GOTO: {}})
    assert out["loops"] == 1
    timed = {h[C.SK]: h for h in env.items("HIST#") if h["outcome"] == "timed out"}
    assert set(timed) == {"HIST#run-1#0000#w1#timed-out", "HIST#run-1#0002#w2#timed-out"}
    assert sorted((h["step"], h["kind"]) for h in timed.values()) == [("w1", "wait_until"), ("w2", "wait_until")]
    assert timed["HIST#run-1#0000#w1#timed-out"]["why"] == "no email.clicked in time"
    assert timed["HIST#run-1#0002#w2#timed-out"]["why"] == "no condition in time"
    assert sorted(s for _, s, _ in env.named(C.METRIC_WAIT_TIMED_OUT)) == ["w1", "w2"]
    # The new visit's wait is recorded under the jumped loop count.
    assert env.item("HIST#run-1#0001#w1") is not None
    # Once only.
    go(env, TIMEOUT_TASK, run={"loops": 1, "branch": "", C.RUN_TIMED_OUT: {}})
    assert len([h for h in env.items("HIST#") if h["outcome"] == "timed out"]) == 3


TIMEOUTS = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: w3
    wait_until: {event: email.opened, timeout: 1h, on_timeout: [{id: late, add_tag: [late]}]}
""")
TIMEOUT_TASK = TIMEOUTS["late"]


def test_a_timeout_long_after_the_wait_item_expired_is_still_recorded(env: Env) -> None:
    env.contact()
    go(env, WAITS["w1"], token="tok-1")
    env.clock.at = NOON + timedelta(days=5)  # past the item's TTL: DynamoDB may not have deleted it yet
    go(env, TIMEOUT_TASK, run={"loops": 0, "branch": "", C.RUN_TIMED_OUT: {}})
    assert ("w1", "wait_until", "timed out", "no email.clicked in time") in env.hist()
    assert env.item("WAIT#run-1#w1") is None


def test_a_timeout_beyond_the_loop_bound_ends_the_run(env: Env) -> None:
    env.contact()
    with pytest.raises(LoopLimitReached):
        go(env, WAITS["w1"], token="t", run={"loops": 3, "branch": "", C.RUN_TIMED_OUT_GOTO: {}})
    with pytest.raises(LoopLimitReached):
        go(env, {**TIMEOUT_TASK, "max_loops": 3}, run={"loops": 4, "branch": ""})
    go(env, {**TIMEOUT_TASK, "max_loops": 3}, run={"loops": 3, "branch": ""})
    assert ("late", "add_tag", "done", "tags added: late") in env.hist()


# ---- decisions ----------------------------------------------------------------------------------------------

DECIDE = tasks("""
name: w
triggers: [{event: app.signup}]
settings: {max_loops: 5}
steps:
  - id: d
    if: {all: [{has_tag: vip}, {score: {gte: 10}}]}
    then: [{id: hold, wait: 1h}, {id: back, goto: d}]
    else: [{id: nope, add_tag: [n]}]
  - id: b
    branch:
      - {name: big, when: {field: plan, eq: gold}}
      - {name: also, when: {score: {gte: 1}}}
  - id: s
    split:
      - {name: a, percent: 50, steps: [{id: sa, add_tag: [a]}]}
      - {name: c, percent: 50, steps: [{id: sc, add_tag: [c]}]}
""")


def test_an_if_records_the_branch_and_each_condition_observed(env: Env) -> None:
    env.contact(tags={"vip"}, score=12)
    out = go(env, DECIDE["d"])
    assert out == {"loops": 1, "branch": "then"}
    (rec,) = [h for h in env.items("HIST#") if h["step"] == "d"]
    assert (rec["kind"], rec["outcome"], rec["branch"]) == ("if", "branch then", "then")
    assert rec["why"].endswith(" is true")
    assert rec["conditions"] == [
        {"condition": "has tag 'vip'", "value": ["vip"], "result": True},
        {"condition": "score gte 10", "value": 12, "result": True},
    ]
    assert rec["why"] == "all of (has tag 'vip'; score gte 10) is true"
    assert all(isinstance(c["condition"], str) and c["condition"] for c in rec["conditions"])
    assert ("hold", "wait", "waiting", f"for 3600s until {(NOON + timedelta(hours=1)).isoformat()}") in env.hist()
    assert env.named(C.METRIC_BRANCH_TAKEN) == [("w", "d", {"branch": "then"})]
    # A retry, the facts changed meanwhile: the branch recorded is the one taken.
    env.store.put_item({**env.profile(), "score": 0})
    assert go(env, DECIDE["d"]) == {"loops": 1, "branch": "then"}
    assert len(env.named(C.METRIC_BRANCH_TAKEN)) == 1
    env.contact("c2", score=12)
    assert go(env, DECIDE["d"], cid="c2") == {"loops": 0, "branch": "else"}
    (rec,) = [h for h in env.items("HIST#", "c2") if h["step"] == "d"]
    assert rec["why"].endswith(" is false") and rec["conditions"][0]["result"] is False


def test_a_branch_takes_the_first_case_that_matches_or_otherwise(env: Env) -> None:
    env.contact(fields={"plan": "gold"}, score=3)
    assert go(env, DECIDE["b"]) == {"loops": 0, "branch": "big"}
    (rec,) = [h for h in env.items("HIST#") if h["step"] == "b"]
    assert rec["why"].startswith("case big: ") and rec["outcome"] == "branch big" and rec["kind"] == "branch"
    assert len(rec["conditions"]) == 1 and rec["conditions"][0]["value"] == "gold"
    env.contact("c2", fields={"plan": "free"}, score=3)
    assert go(env, DECIDE["b"], cid="c2")["branch"] == "also"
    (rec,) = [h for h in env.items("HIST#", "c2") if h["step"] == "b"]
    assert [c["result"] for c in rec["conditions"]] == [False, True] and rec["why"].startswith("case also: ")
    env.contact("c3")
    assert go(env, DECIDE["b"], cid="c3")["branch"] == "otherwise"
    (rec,) = [h for h in env.items("HIST#", "c3") if h["step"] == "b"]
    assert rec["why"] == "no case matched" and rec["outcome"] == "branch otherwise"


def test_a_split_puts_each_contact_in_its_bucket_once(env: Env) -> None:
    seen: dict[str, str] = {}
    for i in range(12):
        cid = env.contact(f"c{i}")
        seen[cid] = go(env, DECIDE["s"], cid=cid)["branch"]
        (rec,) = [h for h in env.items("HIST#", cid) if h["step"] == "s"]
        bucket = float(rec["why"].split()[2])
        assert rec["why"] == f"contact's bucket {bucket:.2f} of 100 falls in path {seen[cid]}"
        assert seen[cid] == ("a" if bucket < 50 else "c") and rec["conditions"] == []
        assert rec["kind"] == "split"
    assert set(seen.values()) == {"a", "c"}
    assert go(env, DECIDE["s"], cid="c0")["branch"] == seen["c0"]


# ---- goals --------------------------------------------------------------------------------------------------

GOALS = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: g
    goal: {event: order.placed, where: {total: {gt: 10}}, otherwise: end}
  - id: pause
    wait: 1h
  - id: h
    goal: {condition: {has_tag: buyer}}
  - id: last
    add_tag: [l]
""")


def test_an_event_goal_is_met_by_a_matching_activity(env: Env) -> None:
    env.contact()
    assert go(env, GOALS["g"]) == {"loops": 0, "branch": "not_met"}
    assert env.hist() == [("g", "goal", "not reached", "event order.placed not seen")]
    env.store.record_activity("c1", "e1", "order.placed", {"total": 5}, NOON)
    env.store.record_activity("c1", "e0", "order.cancelled", {"total": 50}, NOON)
    assert go(env, GOALS["g"], execution=EXEC.replace("run-1", "run-2"))["branch"] == "not_met"
    env.store.record_activity("c1", "e2", "order.placed", {"total": 50}, NOON)
    env.store.put_item(
        {C.PK: contact_pk("c1"), C.SK: "ENROLL#w", "execution_arn": EXEC.replace("run-1", "run-3"), "goals": ["x"]}
    )
    assert go(env, GOALS["g"], execution=EXEC.replace("run-1", "run-3")) == {"loops": 0, "branch": "met"}
    rec = env.item("HIST#run-3#0000#g")
    assert rec is not None and (rec["outcome"], rec["why"]) == ("reached", "event order.placed seen")
    assert env.item("HIST#run-3#0000#pause") is not None  # met: what follows is recorded ahead
    assert env.item("HIST#run-1#0000#pause") is None  # not met and otherwise end
    assert env.named(C.METRIC_GOAL_REACHED) == [("w", "g", {})]
    enrol = env.item("ENROLL#w")
    assert enrol is not None and enrol["goals"] == ["g", "x"]
    go(env, GOALS["g"], execution=EXEC.replace("run-1", "run-3"))
    assert len(env.named(C.METRIC_GOAL_REACHED)) == 1
    # Another run's enrolment is left alone.
    env.store.put_item({C.PK: contact_pk("c1"), C.SK: "ENROLL#w", "execution_arn": "other", "goals": []})
    go(env, GOALS["g"], execution=EXEC.replace("run-1", "run-4"))
    enrol = env.item("ENROLL#w")
    assert enrol is not None and enrol["goals"] == []


def test_a_condition_goal_and_a_goal_jumped_to(env: Env) -> None:
    env.contact()
    env.store.put_item({C.PK: contact_pk("c1"), C.SK: "ENROLL#w", "execution_arn": EXEC})  # no goals yet
    assert go(env, GOALS["h"]) == {"loops": 0, "branch": "not_met"}
    (rec,) = env.hist()
    assert rec[:3] == ("h", "goal", "not reached") and rec[3].endswith(" is false")
    assert env.item("HIST#run-1#0000#last") is None
    env.contact("c2", tags={"buyer"})
    assert go(env, GOALS["h"], cid="c2")["branch"] == "met"
    assert env.hist("c2")[0][3].endswith(" is true")
    env.contact("c3")
    assert go(env, GOALS["g"], cid="c3", run={"loops": 0, "branch": "", "resume_at": "g"})["branch"] == "met"
    assert env.hist("c3")[0] == ("g", "goal", "reached", "jumped here when the goal was met")
    go(env, {**GOALS["h"], "step": {"id": "h2", "goal": {"condition": {"has_tag": "absent"}}, "kind": "goal"}})
    go(env, GOALS["g"], run={"loops": 0, "branch": "", "resume_at": "g"})
    enrol = env.item("ENROLL#w")
    assert enrol is not None and enrol["goals"] == ["g"]
    # otherwise continue (the default): the passive steps after it are recorded though not met.
    cont = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: g
    goal: {event: order.placed}
  - id: pause
    wait: 1h
  - id: t
    add_tag: [x]
""")
    env.contact("c4")
    assert go(env, cont["g"], cid="c4")["branch"] == "not_met"
    assert [h[0] for h in env.hist("c4")] == ["g", "pause"]


# ---- webhooks -----------------------------------------------------------------------------------------------


@dataclass
class Receiver:
    url: str
    got: list[tuple[str, dict[str, str], bytes]]
    status: list[int]


@pytest.fixture(name="receiver", scope="module")
def receiver_fixture() -> Iterator[Receiver]:
    got: list[tuple[str, dict[str, str], bytes]] = []
    status = [200]

    class H(BaseHTTPRequestHandler):
        def _any(self) -> None:
            if self.path.endswith("/slow"):
                time.sleep(2.5)
            n = int(self.headers.get("Content-Length", 0))
            got.append((self.command, dict(self.headers), self.rfile.read(n)))
            self.send_response(status[0])
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = _any

        def log_message(self, *a: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield Receiver(f"http://127.0.0.1:{srv.server_port}/hook", got, status)
    finally:
        srv.shutdown()


def hook(url: str, **more: Any) -> dict[str, dict[str, Any]]:
    extra = "".join(f", {k}: {v}" for k, v in more.items())
    return tasks(f"""
name: w
triggers: [{{event: app.signup}}]
steps:
  - id: call
    call_webhook: {{url: "{url}", body: {{n: 1}}{extra}}}
  - id: after
    add_tag: [x]
""")


def test_a_webhook_is_called_once_with_its_body_key_and_signature(env: Env, receiver: Receiver) -> None:
    receiver.got.clear()
    receiver.status[0] = 200
    env.policy = webhooks.WebhookPolicy.from_allowlist("127.0.0.1")
    env.secret = b"s3cret"
    env.contact()
    t = hook(receiver.url, secret="/hooks/key")
    # The trigger is read back from the table (its reference in the input).
    env.store.put_item({C.PK: contact_pk("c1"), C.SK: "~TRIGGER#e1", "event": {"type": "app.signup", "data": {"n": 2}}})
    go(env, t["call"], event={"type": "app.signup", "stored": "~TRIGGER#e1"})
    assert env.secrets_asked == ["/hooks/key"]
    assert env.hist() == [
        ("call", "call_webhook", "done", "webhook POST answered"),
        ("after", "add_tag", "done", "tags added: x"),
    ]
    ((method, headers, body),) = receiver.got
    assert method == "POST"
    assert json.loads(body) == {
        "workflow": "w",
        "step": "call",
        "contact_id": "c1",
        "event": {"type": "app.signup", "data": {"n": 2}},
        "data": {"n": 1},
    }
    low = {k.lower(): v for k, v in headers.items()}
    assert low["content-type"] == "application/json"
    assert low["idempotency-key"] == stable_hash("run-1#0000#call", "webhook", length=32)
    assert low["x-stepwise-signature"] == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    go(env, t["call"])  # a retry: the receiver already has it
    assert len(receiver.got) == 1
    go(env, t["call"], execution=EXEC.replace("run-1", "run-2"))
    assert len(receiver.got) == 2
    assert {k.lower(): v for k, v in receiver.got[1][1].items()}["idempotency-key"] != low["idempotency-key"]


def test_a_webhook_failure_raises_before_anything_is_committed(env: Env, receiver: Receiver) -> None:
    receiver.got.clear()
    env.contact()
    t = hook(receiver.url)
    with pytest.raises(InvalidStep, match=r"^step call: webhook refused: "):
        go(env, t["call"])  # plain http to 127.0.0.1 without the allowlist
    env.policy = webhooks.WebhookPolicy.from_allowlist("127.0.0.1")
    receiver.status[0] = 500
    try:
        with pytest.raises(logic.WebhookFailed, match=r"^step call: webhook answered HTTP 500$"):
            go(env, t["call"])
        receiver.status[0] = 300
        with pytest.raises(logic.WebhookFailed, match="HTTP 300"):
            go(env, t["call"])
        receiver.status[0] = 299
        go(env, t["call"])
    finally:
        receiver.status[0] = 200
    assert [h[0] for h in env.hist()] == ["call", "after"]
    assert "x-stepwise-signature" not in {k.lower() for k in receiver.got[0][1]}
    with pytest.raises(logic.WebhookFailed, match=r"^step call: secret '/k' given but no secret store configured$"):
        go(env, hook(receiver.url, secret="/k")["call"], execution=EXEC.replace("run-1", "run-2"))
    with pytest.raises(logic.WebhookFailed, match=r"^step call: webhook unreachable: "):
        go(env, hook("http://127.0.0.1:9/x")["call"], execution=EXEC.replace("run-1", "run-3"))
    # The step's timeout is the call's: a receiver slower than it is unreachable.
    with pytest.raises(logic.WebhookFailed, match="unreachable"):
        go(env, hook(receiver.url + "/slow", timeout="1s")["call"], execution=EXEC.replace("run-1", "run-4"))


RECENT = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: d
    if: {did_event: {event: page.visited, within: 3d}}
    then: [{id: t, add_tag: [recent]}]
  - id: w
    wait_until:
      condition:
        all: [{did_event: {event: page.visited, within: 3d}}, {not: {has_tag: never}}, {event_field: plan, eq: pro}]
      timeout: 1h
  - id: g
    goal: {condition: {did_event: {event: page.visited, within: 3d}}}
  - id: b
    branch:
      - {name: seen, when: {did_event: {event: page.visited, within: 3d}}}
  - id: after
    add_tag: [x]
""")


def test_decisions_waits_and_goals_read_the_activity_their_conditions_look_at(env: Env) -> None:
    arn = env.sfn.start_execution(stateMachineArn=TEMPLATE.replace("{workflow}", "w"), name="run-1")["executionArn"]
    env.contact()
    env.store.record_activity("c1", "v1", "page.visited", {"url": "/"}, NOON - timedelta(days=1))
    env.contact("c2")
    env.store.record_activity("c2", "v2", "page.visited", {"url": "/"}, NOON - timedelta(days=5))
    assert go(env, RECENT["d"], execution=arn)["branch"] == "then"
    assert go(env, RECENT["d"], cid="c2", execution=arn)["branch"] == "else"
    (rec,) = [h for h in env.items("HIST#") if h["step"] == "d"]
    assert rec["conditions"][0]["result"] is True
    go(env, RECENT["w"], token="tok", execution=arn)
    assert env.item("WAIT#run-1#w") is None  # already held: resumed at once
    go(env, RECENT["w"], cid="c2", token="tok", execution=arn)
    item = env.item("WAIT#run-1#w", "c2")
    assert item is not None and item["trigger"] == {"plan": "pro"}  # what the condition reads of the event
    assert item["condition"] == {
        "all": [
            {"did_event": {"event": "page.visited", "within": "3d"}},
            {"not": {"has_tag": "never"}},
            {"event_field": "plan", "eq": "pro"},
        ]
    }
    assert go(env, RECENT["g"], execution=arn)["branch"] == "met"
    assert go(env, RECENT["g"], cid="c2", execution=arn)["branch"] == "not_met"
    assert go(env, RECENT["b"], execution=arn)["branch"] == "seen"
    assert go(env, RECENT["b"], cid="c2", execution=arn)["branch"] == "otherwise"


def test_a_wait_item_written_without_its_loop_count_times_out_as_the_first_visit(env: Env) -> None:
    env.contact()
    env.store.put_item({C.PK: contact_pk("c1"), C.SK: "WAIT#run-1#old", "step": "old", "event": "email.opened"})
    go(env, TIMEOUT_TASK, run={"loops": 0, "branch": "", C.RUN_TIMED_OUT: {}})
    rec = env.item("HIST#run-1#0000#old#timed-out")
    assert rec is not None and rec["why"] == "no email.opened in time"
    assert env.item("WAIT#run-1#old") is None


def test_a_goal_converts_the_split_the_contact_took_and_a_goal_into_a_go_to_counts_the_jump(env: Env) -> None:
    t = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: s
    split:
      - {name: a, percent: 50, steps: [{id: sa, add_tag: [a]}]}
      - {name: b, percent: 50, steps: [{id: sb, add_tag: [b]}]}
    winner: {by: goal}
  - id: g
    goal: {event: order.placed}
  - id: back
    goto: s
""")
    env.contact()
    go(env, t["s"])
    env.store.record_activity("c1", "o1", "order.placed", {}, NOON)
    assert go(env, t["g"]) == {"loops": 1, "branch": "met"}
    (split,) = env.items("SPLIT#")
    assert split["converted"] is True and split["converted_at"] == NOON.isoformat()


def test_a_wait_leading_into_a_go_to_says_so_in_its_item(env: Env) -> None:
    t = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: top
    add_tag: [x]
  - id: w
    wait_until: {event: email.opened, timeout: 1h}
  - id: back
    goto: top
""")
    env.contact()
    go(env, t["w"], token="tok")
    item = env.item("WAIT#run-1#w")
    assert item is not None and item["goto"] is True and item["ahead"] == [{"id": "back", "kind": "goto"}]


WINNER = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: s
    split:
      - {name: a, percent: 50, steps: [{id: sa, add_tag: [a]}]}
      - {name: b, percent: 50, steps: [{id: sb, add_tag: [b]}]}
    winner: {by: goal, min_contacts: 10, after: 1d}
  - id: g
    goal: {event: order.placed}
""")


def _bucket_path(cid: str) -> str:
    """The path the contact's bucket falls in (s: a below 50, b above), to tell a winner from a bucket."""
    return "a" if int(stable_hash(cid, "w", "s"), 16) % 10_000 / 100 < 50 else "b"


def test_a_split_whose_winner_is_picked_sends_every_contact_down_the_winner(env: Env) -> None:
    cid = env.contact()
    winner = "b" if _bucket_path(cid) == "a" else "a"
    at = (NOON - timedelta(days=1)).isoformat()
    stats = {C.PK: "SPLIT#w#s", C.SK: "STATS", "winner": winner, "decided_at": at, "basis": "by goal: earlier"}
    env.store.put_item(stats)
    assert go(env, WINNER["s"]) == {"loops": 0, "branch": winner}
    (rec,) = [h for h in env.items("HIST#") if h["step"] == "s"]
    assert (rec["outcome"], rec["branch"]) == (f"branch {winner}", winner)
    assert rec["why"] == f"winner {winner} chosen {at}: by goal: earlier"
    (assigned,) = env.items("SPLIT#")
    assert assigned["path"] == winner and assigned["by"] == "goal" and assigned["path_steps"] == []
    assert env.named(C.METRIC_BRANCH_TAKEN) == [("w", "s", {"branch": winner})]


def test_a_split_picks_its_winner_when_every_path_has_enough_contacts_and_time(env: Env) -> None:
    cid = env.contact()
    winner = "b" if _bucket_path(cid) == "a" else "a"
    loser = "a" if winner == "b" else "b"
    first = (NOON - timedelta(days=2)).isoformat()
    counts = {f"n_{winner}": 10, f"c_{winner}": 3, f"n_{loser}": 10, f"c_{loser}": 1}
    env.store.put_item({C.PK: "SPLIT#w#s", C.SK: "STATS", "first_at": first, **counts})
    assert go(env, WINNER["s"])["branch"] == winner
    (rec,) = [h for h in env.items("HIST#") if h["step"] == "s"]
    rate = {winner: "3/10 = 30.0%", loser: "1/10 = 10.0%"}
    basis = f"by goal: a {rate['a']}, b {rate['b']}"
    assert rec["why"] == f"winner {winner} chosen {NOON.isoformat()}: {basis}"
    stats = env.store.get_item("SPLIT#w#s", "STATS")
    assert stats is not None and (stats["winner"], stats["decided_at"], stats["basis"]) == (
        winner,
        NOON.isoformat(),
        basis,
    )
    assert stats[f"n_{winner}"] == 11 and stats[f"n_{loser}"] == 10


def test_a_condition_wait_resumed_at_once_counts_the_waits_it_reaches(env: Env) -> None:
    t = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: w
    wait_until: {condition: {has_tag: paid}, timeout: 1h}
  - id: pause
    wait: 1h
  - id: after
    add_tag: [z]
""")
    env.contact(tags={"paid"})
    arn = env.sfn.start_execution(stateMachineArn=TEMPLATE.replace("{workflow}", "w"), name="run-1")["executionArn"]
    go(env, t["w"], token="tok", execution=arn)
    until = (NOON + timedelta(hours=1)).isoformat()
    assert env.hist() == [
        ("w", "wait_until", "resumed", "condition already held"),
        ("pause", "wait", "waiting", f"for 3600s until {until}"),
        ("w", "wait_until", "waiting", "for condition has tag 'paid', at most 3600s"),
    ]
    assert env.named(C.METRIC_WAIT_STARTED) == [("w", "w", {}), ("w", "pause", {})]


def test_list_changes_in_one_task_see_each_other_and_key_their_events_to_their_step(env: Env) -> None:
    t = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: out
    unsubscribe: {list: weekly}
  - id: back
    subscribe: {list: weekly}
""")
    env.contact(lists={"weekly"})
    go(env, t["out"])
    assert env.outbox() == [
        ("list.subscribed", {"list": "weekly", "source": "w"}),
        ("list.unsubscribed", {"list": "weekly"}),
    ]
    ids = {i["type"]: i["id"] for i in env.store.scan_prefix("EVENT#")}
    for etype, sid, data in (
        ("list.unsubscribed", "out", {"list": "weekly"}),
        ("list.subscribed", "back", {"list": "weekly", "source": "w"}),
    ):
        assert ids[etype] == stable_hash(visit_key(EXEC, 0, sid), etype, json.dumps(data, sort_keys=True))


def test_campaign_changes_key_the_start_to_the_step_and_leaving_one_never_joined_is_done(env: Env) -> None:
    t = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: join
    subscribe: {campaign: news}
  - id: leave
    remove_from_campaign: other
""")
    env.contact()
    go(env, t["join"])
    assert env.hist() == [
        ("join", "subscribe", "done", "membership changed"),
        ("leave", "remove_from_campaign", "done", "membership changed"),
    ]
    assert env.profile()["campaigns"] == {"news": ""}
    news = env.item("ENROLL#news")
    name = f"news-{stable_hash('c1', 'news', visit_key(EXEC, 0, 'join'), '', length=24)}"
    assert news is not None and news["execution_arn"].rsplit(":", 1)[-1] == name


def _cid_in(low: float, high: float, sid: str) -> str:
    """A contact id whose bucket at split `sid` of w falls in [low, high)."""
    return next(f"b{i}" for i in range(200_000) if low <= int(stable_hash(f"b{i}", "w", sid), 16) % 10_000 / 100 < high)


def test_a_split_of_three_paths_adds_up_the_percents_and_a_bucket_on_a_boundary_takes_the_next_path(
    env: Env,
) -> None:
    t = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: s3
    split:
      - {name: a, percent: 20, steps: [{id: sa, add_tag: [a]}]}
      - {name: b, percent: 30, steps: [{id: sb, send_email: {template: hi}}]}
      - {name: c, percent: 50, steps: [{id: sc, add_tag: [c]}]}
    winner: {by: email_opened, min_contacts: 10}
""")
    for low, high, path in ((20, 20.001, "b"), (30, 50, "b"), (10, 20, "a"), (50, 50.001, "c"), (99, 100, "c")):
        cid = env.contact(_cid_in(low, high, "s3"))
        assert go(env, t["s3"], cid=cid)["branch"] == path, (low, high)
        (assigned,) = env.items("SPLIT#", cid)
        assert assigned["path"] == path and assigned["path_steps"] == ["s" + path]


def test_a_decision_compiled_before_go_tos_were_listed_ahead_counts_its_jump(env: Env) -> None:
    env.contact(fields={"plan": "gold"})
    old = {**DECIDE["b"], "ahead": {"big": [], "also": [], "otherwise": []}, "goto": {"big": True}}
    assert go(env, old) == {"loops": 1, "branch": "big"}
    env.contact("c2", fields={"plan": "gold"})
    assert go(env, {**DECIDE["b"], "ahead": [], "goto": True}, cid="c2") == {"loops": 1, "branch": "big"}


# ---- survivors of the run on HEAD (issue 12): one Task's steps, resumes, holds, old machines -----------------


def test_a_run_started_at_a_step_skips_the_steps_of_the_task_before_it(env: Env) -> None:
    # start_workflow's `at` (and a restart) resume at a step: the Entry Choice enters the Task holding it, which
    # goes on from that step. A resume_at this Task does not hold runs it from the top.
    env.contact()
    assert go(env, CAMPAIGN["one"], run={"loops": 0, "branch": "", "resume_at": "two"}) == {"loops": 0, "branch": ""}
    assert env.hist() == [("two", "add_tag", "done", "tags added: y")]
    env.contact("c2")
    go(env, CAMPAIGN["one"], cid="c2", run={"loops": 0, "branch": "", "resume_at": "gone"})
    assert [h[0] for h in env.hist("c2")] == ["one", "two"]


def test_each_run_reaching_a_campaign_stage_says_so(env: Env) -> None:
    env.contact(campaigns={"w": ""})
    go(env, CAMPAIGN["one"])
    go(env, CAMPAIGN["one"], execution=EXEC.replace("run-1", "run-2"))
    entered = sorted(d["stage"] for t, d in env.outbox() if t == "campaign.stage_entered")
    assert entered == ["one", "one", "two", "two"]


AGAIN = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: tag1
    add_tag: [vip]
  - id: untag
    remove_tag: [vip, old]
  - id: tag2
    add_tag: [vip, keep]
  - id: lead
    move_to_stage: {pipeline: sales, stage: lead}
  - id: won
    move_to_stage: {pipeline: sales, stage: won}
  - id: f
    set_field: {plan: gold}
  - id: up
    adjust_score: {add: 2}
  - id: ten
    generate_coupon: {field: c10, percent_off: 10, valid_for: 7d}
  - id: five
    generate_coupon: {field: c5, amount_off: 5, valid_for: 1d}
""")


def test_one_tasks_steps_see_each_others_changes_and_key_their_events_to_their_step(env: Env) -> None:
    env.contact(tags={"keep", "old"})
    go(env, AGAIN["tag1"])
    # tag2 sees vip removed by untag and keep still there.
    assert env.hist()[2] == ("tag2", "add_tag", "done", "tags added: vip, keep")
    expected = [
        ("tag.added", "tag1", {"tag": "vip"}),
        ("tag.removed", "untag", {"tag": "vip"}),
        ("tag.removed", "untag", {"tag": "old"}),
        ("tag.added", "tag2", {"tag": "vip"}),
        ("pipeline.stage_changed", "lead", {"pipeline": "sales", "stage": "lead", "previous": None}),
        ("pipeline.stage_changed", "won", {"pipeline": "sales", "stage": "won", "previous": "lead"}),
        ("field.changed", "f", {"field": "plan", "value": "gold", "previous": None}),
        ("score.changed", "up", {"score": 2, "previous": 0, "delta": 2}),
    ]
    got = sorted((str(i["type"]), str(i["id"])) for i in env.store.scan_prefix("EVENT#"))
    ids = [(t, stable_hash(visit_key(EXEC, 0, sid), t, json.dumps(d, sort_keys=True))) for t, sid, d in expected]
    assert got == sorted(ids)
    # Two coupon steps of one Task: two codes, each with its own terms.
    fields = env.profile()["fields"]
    assert fields["c10"] != fields["c5"]
    ten = env.store.get_item(f"COUPON#{fields['c10']}", "COUPON")
    five = env.store.get_item(f"COUPON#{fields['c5']}", "COUPON")
    assert ten is not None and (ten["percent_off"], ten.get("amount_off")) == (10, None)
    assert five is not None and (five.get("percent_off"), five["amount_off"]) == (None, 5)


def test_a_list_joined_and_left_in_one_task_and_leaving_the_running_campaign(env: Env) -> None:
    t = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: join
    subscribe: {list: weekly}
  - id: leave
    unsubscribe: {list: weekly}
""")
    env.contact()
    go(env, t["join"])
    assert env.outbox() == [
        ("list.subscribed", {"list": "weekly", "source": "w"}),
        ("list.unsubscribed", {"list": "weekly"}),
    ]
    # A campaign's run taking the contact out of that campaign: the steps after it are no stages of it.
    own = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: one
    add_tag: [x]
  - id: out
    remove_from_campaign: w
  - id: two
    add_tag: [y]
""")
    env.contact("c2", campaigns={"w": ""})
    go(env, own["one"], cid="c2")
    assert [d["stage"] for t, d in env.outbox("c2") if t == "campaign.stage_entered"] == ["one"]
    assert "w" not in env.profile("c2")["campaigns"]


CAPPED = """
name: w
triggers: [{event: app.signup}]
settings: {frequency_cap: {email: 1}%s}
steps:
  - id: a
    add_tag: [a]
  - id: b
    add_tag: [b]
  - id: mail
    send_email: {template: hi}
"""


def _seqs(env: Env, cid: str = "c1", run: str = "run-1") -> dict[str, int]:
    return {str(h["step"]): int(h["seq"]) for h in env.items(f"HIST#{run}#", cid)}


def test_the_cap_holds_a_send_under_the_budget_without_pausing_and_the_hold_follows_in_seq(env: Env) -> None:
    env.contact()
    env.plans["w"] = EntryPlan(version="v", history_days=7, budgets={"messages_per_contact_per_day": 5})
    t = tasks(CAPPED % "")
    go(env, t["a"])
    with pytest.raises(SendDeferred) as held:
        go(env, t["a"], execution=EXEC.replace("run-1", "run-2"))
    assert held.value.until == datetime(2026, 11, 5, tzinfo=UTC)
    assert env.store.get_item(status_pk("w"), STATUS_SK) is None  # not paused
    assert _seqs(env, run="run-2") == {"a": 1, "b": 2, "mail": 3}
    assert [h[2] for h in env.hist() if h[0] == "mail"] == ["done", "held"]


def test_the_budget_skip_follows_the_steps_before_it_in_seq(env: Env) -> None:
    env.contact(phone="+1555")
    env.plans["w"] = EntryPlan(version="v", history_days=7, budgets={"messages_per_contact_per_day": 1})
    t = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: a
    add_tag: [a]
  - id: mail
    send_email: {template: hi}
  - id: text
    send_sms: {template: t}
""")
    go(env, t["a"])
    assert [h[2] for h in env.hist() if h[0] != "(budget)"] == ["done", "done", "skipped"]
    seqs = _seqs(env)
    assert (seqs["a"], seqs["mail"], seqs["text"]) == (1, 2, 3)


def test_a_capped_send_waits_for_the_contacts_own_next_day_and_window(env: Env) -> None:
    # 10:00 UTC is 19:00 in Tokyo: the next day there starts at 15:00 UTC.
    env.contact(timezone="Asia/Tokyo")
    t = tasks(CAPPED % "")
    go(env, t["a"])
    with pytest.raises(SendDeferred) as held:
        go(env, t["a"], execution=EXEC.replace("run-1", "run-2"))
    assert held.value.until == datetime(2026, 11, 4, 15, 0, tzinfo=UTC)
    # With a window, 09:00 to 17:00 the contact's time: the next day's window opens at 09:00 in Tokyo.
    env.contact("c2", timezone="Asia/Tokyo")
    env.clock.at = NOON.replace(hour=2)  # 11:00 in Tokyo
    w = tasks(CAPPED % ', send_window: {between: "09:00-17:00", timezone: UTC}')
    go(env, w["a"], cid="c2")
    with pytest.raises(SendDeferred) as held:
        go(env, w["a"], cid="c2", execution=EXEC.replace("run-1", "run-2"))
    assert held.value.until == datetime(2026, 11, 5, 0, 0, tzinfo=UTC)


def test_an_event_wait_without_where_says_only_its_event(env: Env) -> None:
    env.contact()
    go(env, TIMEOUTS["w3"], token="tok")
    assert env.hist() == [("w3", "wait_until", "waiting", "for event email.opened, at most 3600s")]


def test_an_end_after_a_wait_ahead_counts_as_an_end_step(env: Env) -> None:
    t = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: a
    add_tag: [a]
  - id: p
    wait: 1h
  - id: bye
    end: {reason: done}
""")
    env.contact()
    go(env, t["a"])
    assert env.named(C.METRIC_ENDED) == [("w", "bye", {"reason": "end_step"})]


def test_actions_and_goals_compiled_before_go_tos_were_listed_ahead_count_their_jump(env: Env) -> None:
    env.contact()
    assert go(env, {**CAMPAIGN["one"], "ahead": [], "goto": True}) == {"loops": 1, "branch": ""}
    env.contact("c2", tags={"buyer"})
    assert go(env, {**GOALS["h"], "ahead": [], "goto": True}, cid="c2") == {"loops": 1, "branch": "met"}


def test_a_contact_gone_during_the_task_fails_the_step_as_a_failed_condition(env: Env) -> None:
    # The contact is deleted while the Task runs (after its send was counted against the budget): the next
    # step's profile write finds no contact, which is no budget, no cap: the commit's ConditionFailed goes up.
    env.contact()
    env.plans["w"] = EntryPlan(version="v", history_days=7, budgets={"messages_per_contact_per_day": 5})
    t = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: mail
    send_email: {template: hi}
  - id: tag
    add_tag: [x]
""")
    deps = env.deps()

    def erase(name: str, workflow: str, step: str, dims: dict[str, str]) -> None:
        if name == C.METRIC_STEP_COMPLETED:
            env.store.delete_item(contact_pk("c1"), "PROFILE")

    deps.metrics = erase
    with pytest.raises(ConditionFailed):
        logic.run(request(t["mail"]), deps)
    assert [h[0] for h in env.hist()] == ["mail"]


LATER_COUPON = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: code
    generate_coupon: {field: coupon, percent_off: 10, valid_for: 7d}
  - id: later
    wait: 1d
  - id: mail
    send_email: {template: welcome}
""")


def test_a_send_carries_a_coupon_only_when_one_was_generated_and_the_contact_has_it(env: Env) -> None:
    env.contact(fields={"coupon": "W-123"})
    go(env, SKIPS["mail"])  # no coupon generated before these sends
    plain = env.items("MSG#")
    assert len(plain) == 3 and not [m for m in plain if "coupon" in m]  # no phone: no SMS
    env.contact("c2")  # the coupon field of the send is known, but this contact's is empty (cleared since)
    go(env, LATER_COUPON["mail"], cid="c2")
    (empty,) = env.items("MSG#", "c2")
    assert "coupon" not in empty
    env.contact("c3", fields={"coupon": "W-456"})
    go(env, LATER_COUPON["mail"], cid="c3")
    (given,) = env.items("MSG#", "c3")
    assert given["coupon"] == "W-456"


def test_a_split_judged_by_a_named_goal_converts_when_that_goal_is_met_only(env: Env) -> None:
    t = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: s
    split:
      - {name: a, percent: 50, steps: [{id: sa, add_tag: [a]}]}
      - {name: b, percent: 50, steps: [{id: sb, add_tag: [b]}]}
    winner: {by: goal, goal: g}
  - id: other
    goal: {event: cart.viewed}
  - id: g
    goal: {event: order.placed}
""")
    env.contact()
    go(env, t["s"])
    env.store.record_activity("c1", "v1", "cart.viewed", {}, NOON)
    assert go(env, t["other"])["branch"] == "met"
    (split,) = env.items("SPLIT#")
    assert not split.get("converted")  # another goal than the split's
    env.store.record_activity("c1", "o1", "order.placed", {}, NOON)
    assert go(env, t["g"])["branch"] == "met"
    (split,) = env.items("SPLIT#")
    assert split["converted"] is True and split["goal"] == "g"


def test_a_bucket_past_percents_that_add_up_to_just_under_100_takes_the_last_path(env: Env) -> None:
    # validate accepts percents within 0.01 of 100 (lint split-percentages): 3 x 33.33 leaves bucket 99.99 over.
    t = tasks("""
name: w
triggers: [{event: app.signup}]
steps:
  - id: s
    split:
      - {name: a, percent: 33.33, steps: [{id: sa, add_tag: [a]}]}
      - {name: b, percent: 33.33, steps: [{id: sb, add_tag: [b]}]}
      - {name: c, percent: 33.33, steps: [{id: sc, add_tag: [c]}]}
""")
    cid = env.contact(_cid_in(99.99, 100, "s"))
    assert go(env, t["s"], cid=cid)["branch"] == "c"
    assert [h[3] for h in env.hist(cid)] == ["contact's bucket 99.99 of 100 falls in path c"]
