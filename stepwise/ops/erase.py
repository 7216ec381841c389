"""`stepwise erase CONTACT [--yes]`: GDPR erasure of one contact: its running executions stopped, then its whole
partition (profile, memberships and their GSI entries, history, messages, waits, enrolments, activity, split
assignments), its identities, coupons and suppression entries, and the archived deliveries that name it; with a
receipt of what was deleted, counts per kind and no personal data."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shared import constants as C
from shared.store.contacts import ContactStore
from shared.store.messages import suppression_pk
from shared.store.operations import BadContactReference, OperationsStore, contact_reference

# What erasure cannot reach, and why (printed with every receipt).
NOT_REACHED = [
    "Step Functions execution histories (inputs hold the contact id and the triggering event): AWS keeps them 90 "
    "days after a run ends and offers no delete",
    "outbox EVENT# items not yet routed (7-day TTL): no index by contact",
    "archived deliveries that name the contact only by a provider-formatted value our normalised events do not "
    "carry: the archive has no per-contact index, so every object is read and matched on the normalised identities",
]
SUPPRESSION_CHANNELS = {"email": "email", "phone": "sms"}
_OUTSIDE_KINDS = {"IDENT": "identities", "COUPON": "coupons", "SUPPRESS": "suppression entries"}


@dataclass
class Receipt:
    contact_id: str
    dry_run: bool
    items: Counter[str] = field(default_factory=Counter)  # kind -> items deleted
    executions_stopped: int = 0
    archive_objects: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "contact": self.contact_id,
            "dry_run": self.dry_run,
            "items": dict(sorted(self.items.items())),
            "items_total": sum(self.items.values()),
            "executions_stopped": self.executions_stopped,
            "archive_objects": self.archive_objects,
            "not_reached": NOT_REACHED,
        }


def _kind(sk: str) -> str:
    head = sk.split("#", 1)[0]
    return {
        "PROFILE": "profile",
        "LIST": "memberships",
        "HIST": "history",
        "MSG": "messages",
        "WAIT": "waits",
        "ENROLL": "enrolments",
        "ACT": "activity",
        "SPLIT": "split assignments",
    }.get(head, head.lower())


class NobodyToErase(LookupError):
    pass


def erase(ops: OperationsStore, contact: str, *, dry_run: bool = False) -> Receipt:
    """Erase the contact CONTACT names. Runs are stopped first, so no step writes to the partition afterwards."""
    contact_id = ops.find_contact(contact)
    if contact_id is None:
        raise NobodyToErase("CONTACT: no contact has that identity")
    receipt = Receipt(contact_id, dry_run)
    part = ops.partition(contact_id)
    profile = part.profile or {}

    # Identities: the profile's, and the one the user typed; each deleted only while it points at this contact.
    ref = contact_reference(contact)
    identities = {("email", profile.get("email")), ("phone", profile.get("phone"))}
    identities |= {("ext", x) for x in profile.get("external_ids") or []}
    identities |= {("email", ref.email), ("phone", ref.phone), ("ext", ref.external_id)}
    ident_keys = [(f"IDENT#{k}#{v}", "IDENT") for k, v in sorted(identities, key=str) if v]
    # Coupons generated for the contact: their codes are values of its profile fields (coupon_code by default).
    codes = {str(v) for v in (profile.get("fields") or {}).values() if isinstance(v, str) and v}
    coupon_keys = [(f"COUPON#{c}", "COUPON") for c in sorted(codes)]
    suppress_keys = [
        (suppression_pk(channel, str(profile[attr])), "SUPPRESS")
        for attr, channel in SUPPRESSION_CHANNELS.items()
        if profile.get(attr)
    ]
    found = ops.get_items(ident_keys + coupon_keys + suppress_keys)
    outside = [k for k in ident_keys + coupon_keys if k in found and found[k].get("contact_id") == contact_id]
    outside += [k for k in suppress_keys if k in found]

    executions = sorted(
        {str(i["execution_arn"]) for i in part.of("ENROLL#") if i.get("execution_arn")}
        | {str(i["execution"]) for i in part.of("WAIT#") if i.get("execution")}
    )
    needles = [v for _, v in identities if v] + [contact_id]
    archived = list(ops.archived_naming(needles))

    for item in part.items:
        receipt.items[_kind(str(item[C.SK]))] += 1
    for pk, _ in outside:
        receipt.items[_OUTSIDE_KINDS[pk.split("#")[0]]] += 1
    receipt.archive_objects = len(archived)
    if dry_run:
        receipt.executions_stopped = len(executions)  # at most: those still running are stopped
        return receipt

    receipt.executions_stopped = sum(ops.stop_execution(arn, "contact erased") for arn in executions)
    ops.delete_keys([(str(i[C.PK]), str(i[C.SK])) for i in part.items] + outside)
    ops.delete_objects(archived)
    # A step that was mid-flight when its run was stopped may have written once more: read again and sweep.
    late = ops.partition(contact_id)
    if late.items:
        for item in late.items:
            receipt.items[_kind(str(item[C.SK]))] += 1
        ops.delete_keys([(str(i[C.PK]), str(i[C.SK])) for i in late.items])
    return receipt


def print_receipt(r: Receipt, out: Any) -> None:
    verb = "would delete" if r.dry_run else "deleted"
    print(f"contact {r.contact_id}: {verb} {sum(r.items.values())} item(s)", file=out)
    for kind, n in sorted(r.items.items()):
        print(f"  {kind}: {n}", file=out)
    print(f"  running executions {'to stop (at most)' if r.dry_run else 'stopped'}: {r.executions_stopped}", file=out)
    print(f"  archived deliveries / dead letters: {r.archive_objects}", file=out)
    print("not reachable by erasure:", file=out)
    for line in NOT_REACHED:
        print(f"  - {line}", file=out)
    if r.dry_run:
        print("nothing deleted: run again with --yes to erase", file=out)


def erase_command(args: argparse.Namespace) -> int:
    from stepwise.ops import clients, need

    need(args, ("--table", args.table, C.ENV_TABLE_NAME), ("--bucket", args.bucket, C.ENV_ARCHIVE_BUCKET))
    ddb, sfn, s3 = clients("dynamodb", "stepfunctions", "s3")
    ops = OperationsStore(ContactStore(args.table, ddb), sfn=sfn, s3=s3, bucket=args.bucket)
    try:
        receipt = erase(ops, args.contact, dry_run=not args.yes)
    except (BadContactReference, NobodyToErase) as err:
        print(f"stepwise erase: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(receipt.as_dict(), indent=2))
    else:
        print_receipt(receipt, sys.stdout)
    return 0 if args.yes else 3


def add_parser(sub: Any) -> None:
    from stepwise.ops import add_stack_options

    p = sub.add_parser("erase", help="erase a contact everywhere (GDPR) and print a receipt of what was deleted")
    p.add_argument("contact", metavar="CONTACT", help="email, phone (+E.164), provider:id or contact id")
    p.add_argument("--yes", action="store_true", help="really delete (without it: what would be deleted)")
    p.add_argument("--json", action="store_true", help="print the receipt as JSON")
    add_stack_options(p, bucket=True)
    p.set_defaults(func=erase_command)
