"""`stepwise history CONTACT`: what one contact went through, and why: workflows entered with their version, every
step with its time, every decision with each condition's observed value, every message with its delivery status,
every skip with why. Read in one paginated Query of the contact's partition; expired records are never shown."""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from typing import Any, TextIO

from shared import constants as C
from shared.store.contacts import ContactStore
from shared.store.operations import BadContactReference, OperationsStore, Partition, live, now_epoch

# Delivery events (ACT# items) that say what became of a message, by its message_id.
DELIVERY_EVENTS = {
    "email.delivered": "delivered",
    "email.bounced": "bounced",
    "email.complained": "complained",
    "email.rejected": "rejected",
    "email.delivery_delayed": "delayed",
    "email.opened": "opened",
    "email.clicked": "clicked",
    "sms.delivered": "delivered",
    "sms.not_delivered": "not delivered",
}


class ContactNotFoundError(LookupError):
    pass


def contact_history(ops: OperationsStore, contact: str) -> dict[str, Any]:
    """The history report of the contact `contact` names (email, phone, provider:id or contact id)."""
    contact_id = ops.find_contact(contact)
    if contact_id is None:
        raise ContactNotFoundError("CONTACT: no contact has that identity")
    return build_report(ops.partition(contact_id), now_epoch())


def _entered(item: dict[str, Any]) -> tuple[str, str, int]:
    return (str(item.get("at", "")), str(item.get("entered", "")), int(item.get("seq", 0)))


def build_report(part: Partition, now: int) -> dict[str, Any]:
    """The report from the partition's items: anything past its expires_at is left out (the workflow's
    history_days for history records and messages), whether or not DynamoDB's TTL has deleted it yet."""
    items = [i for i in part.items if live(i, now)]
    hist = sorted((i for i in items if str(i[C.SK]).startswith("HIST#")), key=_entered)
    msgs = sorted((i for i in items if str(i[C.SK]).startswith("MSG#")), key=_entered)
    acts = [i for i in items if str(i[C.SK]).startswith("ACT#")]
    profile = part.profile or {}
    versions: dict[str, str] = {}
    for h in hist:
        if h.get("version"):
            versions.setdefault(str(h["execution"]), str(h["version"]))
    workflows = []
    for e in sorted((i for i in items if str(i[C.SK]).startswith("ENROLL#")), key=lambda i: str(i.get("entered_at"))):
        if "execution_arn" not in e:
            continue  # a claim never confirmed: no run
        workflows.append(
            {
                "workflow": e["workflow"],
                "version": versions.get(str(e["execution_arn"])),
                "entered_at": e.get("entered_at"),
                "status": e.get("status"),
                "stopped_because": e.get("stopped_because"),
                "entries": e.get("count", 1),
                "goals": e.get("goals", []),
                "execution": e["execution_arn"],
            }
        )
    deliveries: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in sorted(acts, key=lambda a: str(a.get("at"))):
        what = DELIVERY_EVENTS.get(str(a.get("type")))
        mid = (a.get("data") or {}).get("message_id")
        if what and mid:
            deliveries[str(mid)].append({"at": a.get("at"), "event": what})
    steps = []
    for h in hist:
        row = {
            "at": h["at"],
            "workflow": h.get("workflow"),
            "version": h.get("version") or versions.get(str(h.get("execution"))),
            "step": h["step"],
            "kind": h.get("kind"),
            "outcome": h.get("outcome"),
            "why": h.get("why", ""),
        }
        if h.get("until"):
            row["until"] = h["until"]  # a held send: when it goes
        if "branch" in h:
            row["branch"] = h["branch"]
        if h.get("conditions") is not None:
            row["conditions"] = h["conditions"]
        steps.append(row)
    messages = []
    for m in msgs:
        messages.append(
            {
                "at": m["at"],
                "workflow": m.get("workflow"),
                "step": m.get("step"),
                "channel": m.get("channel"),
                "template": m.get("template") or m.get("subject"),
                "status": m.get("status"),
                "why": m.get("reason"),
                "opened_at": m.get("opened_at"),
                "clicked_at": m.get("clicked_at"),
                "delivery": deliveries.get(str(m.get("message_id")), []),
                "message_id": m.get("message_id"),
                "provider_id": m.get("provider_id"),  # attached by the provider's own send event / receipt
            }
        )
    # Every send not made when its step came, with why: skipped (no address, consent, suppression, a budget) and
    # held (outside the send window, over the frequency cap: until when).
    skips = [
        {
            "at": s["at"],
            "workflow": s["workflow"],
            "step": s["step"],
            "outcome": s["outcome"],
            "why": s["why"],
            **({"until": s["until"]} if s.get("until") else {}),
        }
        for s in steps
        if s["outcome"] in ("skipped", "held")
    ] + [
        {"at": m["at"], "workflow": m["workflow"], "step": m["step"], "outcome": "skipped", "why": m["why"]}
        for m in messages
        if m["status"] == "skipped"
    ]
    return {
        "contact": part.contact_id,
        "identities": {
            "email": profile.get("email"),
            "phone": profile.get("phone"),
            "external": sorted(profile.get("external_ids") or []),
        },
        "workflows": workflows,
        "steps": steps,
        "messages": messages,
        "skips": sorted(skips, key=lambda s: str(s["at"])),
        "hidden_expired": len(part.items) - len(items),
        "reads": {"queries": 1, "pages": part.pages},
    }


def _value(v: Any) -> str:
    return json.dumps(v, default=str) if not isinstance(v, str) else repr(v)


def print_report(report: dict[str, Any], out: TextIO) -> None:
    ids = report["identities"]
    known = [f"email {ids['email']}" if ids["email"] else "", f"phone {ids['phone']}" if ids["phone"] else ""]
    known += [f"external {x}" for x in ids["external"]]
    print(f"contact {report['contact']}: {', '.join(k for k in known if k) or 'no identities'}", file=out)
    print(f"workflows entered ({len(report['workflows'])}):", file=out)
    for w in report["workflows"]:
        version = (w["version"] or "?")[:12]
        stopped = f" ({w['stopped_because']})" if w.get("stopped_because") else ""
        print(
            f"  {w['workflow']} version {version}: entered {w['entered_at']}, {w['status']}{stopped}, "
            f"{w['entries']} entr{'y' if w['entries'] == 1 else 'ies'}",
            file=out,
        )
    print("steps:", file=out)
    for s in report["steps"]:
        print(f"  {s['at']}  {s['workflow']}/{s['step']} ({s['kind']}): {s['outcome']} - {s['why']}", file=out)
        for c in s.get("conditions") or []:
            print(f"      {c.get('condition')}: observed {_value(c.get('value'))} -> {c.get('result')}", file=out)
    print("messages:", file=out)
    for m in report["messages"]:
        why = f" ({m['why']})" if m.get("why") else ""
        extra = [f"provider id {m['provider_id']}"] if m.get("provider_id") else []
        extra += [f"{d['event']} {d['at']}" for d in m["delivery"]]
        extra += [f"opened {m['opened_at']}"] if m.get("opened_at") else []
        extra += [f"clicked {m['clicked_at']}"] if m.get("clicked_at") else []
        tail = f"; {', '.join(extra)}" if extra else ""
        print(
            f"  {m['at']}  {m['channel']} {m['template']} from {m['workflow']}/{m['step']}: {m['status']}{why}{tail}",
            file=out,
        )
    if report["skips"]:
        print("not sent (skipped or held):", file=out)
        for s in report["skips"]:
            held = f"held until {s['until']}" if s.get("outcome") == "held" else s.get("outcome", "skipped")
            print(f"  {s['at']}  {s['workflow']}/{s['step']}: {held}: {s['why']}", file=out)
    if report["hidden_expired"]:
        print(f"({report['hidden_expired']} expired record(s) not shown: past the workflow's history_days)", file=out)


def history_command(args: argparse.Namespace) -> int:
    from stepwise.errors import aws

    with aws("history", table=args.table):  # an AWS error: one line, exit 2
        return _history(args)


def _history(args: argparse.Namespace) -> int:
    from stepwise.ops import clients, need

    need(args, ("--table", args.table, C.ENV_TABLE_NAME))
    (ddb,) = clients("dynamodb")
    ops = OperationsStore(ContactStore(args.table, ddb))
    try:
        report = contact_history(ops, args.contact)
    except (BadContactReference, ContactNotFoundError) as err:
        print(f"stepwise history: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report, sys.stdout)
    return 0


def add_parser(sub: Any) -> None:
    from stepwise.ops import add_stack_options

    p = sub.add_parser("history", help="a contact's last month: workflows, steps, decisions with values, messages")
    p.add_argument("contact", metavar="CONTACT", help="email, phone (+E.164), provider:id (shopify:123) or contact id")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_stack_options(p)
    p.set_defaults(func=history_command)
