"""`stepwise sending status` / `stepwise sending resume`: the reputation guard of a deployed stack (or `stepwise
local`) seen and lifted. Status prints the bounce and complaint rates of the window the guard judges, against its
limits, whether marketing email is paused (why, since when), how many messages it holds, and the audit trail of
pauses and resumes. Resume is a person's decision: it clears the pause with an audit record (who, why, the pause
lifted, the rates then) and queues the held messages again (the table stream hands them to the sender)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from dataclasses import asdict
from datetime import datetime
from typing import Any, TextIO

from shared import clock
from shared import constants as C
from shared.messaging.reputation import BOUNCE_LIMIT, COMPLAINT_LIMIT, MIN_SENDS, WINDOW, ReputationGuard
from shared.store.messages import MessageStore
from stepwise.ops import add_stack_options, clients, need


def sending_status(messages: MessageStore, configuration_set: str, now: datetime | None = None) -> dict[str, Any]:
    """What the guard sees now, read only (no pause, no metric): rates, state, held count, audit trail."""
    now = now or clock.now()
    state = messages.reputation_state(configuration_set) or {}
    rates = ReputationGuard(messages, configuration_set).rates(now, state)
    return {
        "configuration_set": configuration_set,
        "checked_at": now.isoformat(),
        "paused": bool(state.get("paused")),
        "why": state.get("why", "") if state.get("paused") else "",
        "paused_at": state.get("paused_at", "") if state.get("paused") else "",
        "rates_at_pause": state.get("rates", {}) if state.get("paused") else {},
        "resumed_at": state.get("resumed_at", ""),
        "resumed_by": state.get("resumed_by", ""),
        "window": {**asdict(rates), "since": rates.since.isoformat()},
        "limits": {
            "complaint_rate": COMPLAINT_LIMIT,
            "bounce_rate": BOUNCE_LIMIT,
            "min_sends": MIN_SENDS,
            "days": WINDOW.days,
        },
        "held": messages.held_count(configuration_set),
        "audit": messages.audit_trail(configuration_set),
    }


def resume_sending(
    messages: MessageStore, configuration_set: str, by: str, reason: str, now: datetime | None = None
) -> dict[str, Any]:
    """Lift the pause (audited) and queue the held messages again. Nothing is written when sending is not paused
    and nothing is held."""
    now = now or clock.now()
    state = messages.reputation_state(configuration_set) or {}
    if not state.get("paused") and messages.held_count(configuration_set) == 0:
        return {"resumed": False, "requeued": 0, "note": "marketing email is not paused and nothing is held"}
    requeued = ReputationGuard(messages, configuration_set).resume(now, by, reason)
    return {
        "resumed": True,
        "requeued": requeued,
        "lifted": {k: state.get(k) for k in ("why", "paused_at") if state.get("paused")},
        "by": by,
        "reason": reason,
        "at": now.isoformat(),
    }


def _pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def print_status(s: dict[str, Any], out: TextIO) -> None:
    w, lim = s["window"], s["limits"]
    print(f"configuration set {s['configuration_set']} at {s['checked_at']}", file=out)
    if s["paused"]:
        print(f"marketing email: PAUSED since {s['paused_at']}: {s['why']}", file=out)
        print("  transactional messages still go; run `stepwise sending resume --reason ...` to lift it", file=out)
    else:
        print("marketing email: sending", file=out)
    if s["resumed_at"]:
        print(f"last resumed {s['resumed_at']} by {s['resumed_by']}", file=out)
    judged = "" if w["enough"] else f" (under {lim['min_sends']} sends: the guard does not judge yet)"
    print(
        f"window since {w['since']}: {w['sends']} sends, {w['bounces']} bounces, {w['complaints']} complaints{judged}",
        file=out,
    )
    print(
        f"  bounce rate {_pct(w['bounce_rate'])} (limit {_pct(lim['bounce_rate'])}), "
        f"complaint rate {_pct(w['complaint_rate'])} (limit {_pct(lim['complaint_rate'])})",
        file=out,
    )
    if w["over"]:
        print(f"  over: {'; '.join(w['over'])}", file=out)
    print(f"held messages: {s['held']}", file=out)
    if s["audit"]:
        print("audit (newest first):", file=out)
        for a in s["audit"]:
            detail = a.get("why") or a.get("reason") or ""
            extra = f", {a['held']} held requeued" if a.get("action") == "resumed" and "held" in a else ""
            print(f"  {a['at']}  {a['action']} by {a.get('by', '?')}{extra}: {detail}", file=out)


def _messages(args: argparse.Namespace) -> MessageStore:
    need(
        args,
        ("--table", args.table, C.ENV_TABLE_NAME),
        ("--configuration-set", args.configuration_set, C.ENV_SES_CONFIGURATION_SET),
    )
    (ddb,) = clients("dynamodb")
    return MessageStore(args.table, ddb)


def sending_command(args: argparse.Namespace) -> int:
    from stepwise.errors import aws

    with aws("sending", table=args.table):  # an AWS error: one line, exit 2
        return _sending(args)


def _sending(args: argparse.Namespace) -> int:
    out = sys.stdout
    messages = _messages(args)
    if args.action == "resume":
        if not args.reason:
            raise SystemExit("stepwise sending resume: --reason is required (it is kept in the audit record)")
        done = resume_sending(messages, args.configuration_set, args.by, args.reason)
        if args.json:
            print(json.dumps(done, default=str), file=out)
        elif done["resumed"]:
            lifted = done["lifted"]
            what = (
                f"the pause of {lifted['paused_at']} ({lifted['why']})" if lifted else "no pause (held messages only)"
            )
            print(f"resumed marketing email on {args.configuration_set}: lifted {what}", file=out)
            print(f"{done['requeued']} held message(s) queued again; audit record by {done['by']}", file=out)
        else:
            print(done["note"], file=out)
        return 0
    status = sending_status(messages, args.configuration_set)
    if args.json:
        print(json.dumps(status, default=str), file=out)
    else:
        print_status(status, out)
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sending",
        help="the reputation guard: bounce and complaint rates, a marketing pause (why, since when), and resume",
    )
    p.add_argument("action", choices=["status", "resume"], help="status: read only; resume: lift the pause")
    add_stack_options(p)
    p.add_argument(
        "--configuration-set",
        default=os.environ.get(C.ENV_SES_CONFIGURATION_SET),
        help="the SES configuration set the guard watches (stepwise-<stage>; stepwise-local locally)",
    )
    p.add_argument("--by", default=os.environ.get("USER") or _user(), help="who resumes (the audit record's by)")
    p.add_argument("--reason", default="", help="why sending may resume (required by resume; audited)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=sending_command)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
