"""`stepwise erase CONTACT [--yes]`: GDPR erasure of one contact: its running executions stopped, a tombstone left
(the time only), then its whole partition (profile, memberships and their GSI entries, history, messages, waits,
enrolments, activity, split assignments, the events its runs were started with), its identities, coupons and
suppression entries, and the archived deliveries and dead letters that name it, found through the archive's index
by contact (shared/store/archive.py), never by reading the bucket; after the longest a step or a routing can still
be running, the partition is read again and swept. A receipt says what was deleted, counts per kind and no
personal data, and what erasure cannot reach."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared import clock
from shared import constants as C
from shared.store.archive import DEAD_LETTERS_PREFIX, Archive, ArchiveIndex
from shared.store.contacts import ERASED_DAYS, ERASED_SK, ContactStore, tombstone_item
from shared.store.messages import suppression_pk
from shared.store.operations import BadContactReference, OperationsStore, contact_reference

# What erasure cannot reach, and why (printed with every receipt).
NOT_REACHED = [
    "Step Functions execution histories: they cannot be deleted; they hold ids only (the contact id, the "
    "workflow, the execution's name, the trigger's id and type: the event itself is kept in the contact's "
    "partition, erased here) and expire with the machine's retention, 90 days after the run ends",
    "the table's DynamoDB stream: images of the deleted items stay readable for 24 hours (no delete)",
    "the intake's dead-letter queue and the failed-events queue (SQS, 14 days): a delivery or event whose routing "
    "failed is also kept there; SQS deletes only by receipt (the dead-letter store copy, in S3, is erased)",
    "messages already sent: the provider delivered them (SES keeps no copy to delete)",
    "broadcast list snapshots (broadcasts/ in the archive bucket: the contact ids of a list's members at a "
    "fixed-date send, 7 days): shared by every member, not rewritten per erasure",
    "DynamoDB point-in-time backups, where enabled: 35 days",
    "delivery dedupe claims (DELIVERY#, 30 days) are kept: they hold no identity, and refuse a provider's "
    "retry of an erased delivery",
]
SUPPRESSION_CHANNELS = {"email": "email", "phone": "sms"}
_OUTSIDE_KINDS = {"IDENT": "identities", "COUPON": "coupons", "SUPPRESS": "suppression entries"}
# The longest a step runner or router invocation can run: one that read the contact before the erasure may write
# until then. Its runs are stopped first (no new step starts) and the tombstone drops what routes later.
SETTLE_SECONDS = max(C.STEP_RUNNER_TIMEOUT_SECONDS, 60)


@dataclass
class Receipt:
    contact_id: str
    dry_run: bool
    items: Counter[str] = field(default_factory=Counter)  # kind -> items deleted
    executions_stopped: int = 0
    archive_objects: int = 0
    tombstone: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "contact": self.contact_id,
            "dry_run": self.dry_run,
            "items": dict(sorted(self.items.items())),
            "items_total": sum(self.items.values()),
            "executions_stopped": self.executions_stopped,
            "archive_objects": self.archive_objects,
            "tombstone": self.tombstone,
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
        "~TRIGGER": "trigger events",
    }.get(head, head.lower())


class NobodyToErase(LookupError):
    pass


@dataclass
class _Found:
    """Everything of one contact outside its partition, and the archive objects naming it."""

    outside: list[tuple[str, str]]  # identity, coupon and suppression items
    index_items: list[tuple[str, str]]  # ARCHIVED# entries naming it
    objects: list[str]  # archive keys
    outbox: list[tuple[str, str]]  # outbox items a dead letter shows were never routed


def _archive_of(ops: OperationsStore) -> Archive | None:
    if ops.s3 is None or not ops.bucket:
        return None
    return Archive(ops.bucket, ops.s3, ArchiveIndex(ops.table, ops.client))


def _find(
    ops: OperationsStore, contact_id: str, part_items: list[dict[str, Any]], identities: set[tuple[str, str]]
) -> _Found:
    # Coupons generated for the contact: their codes are values of its profile fields (coupon_code by default).
    profile = next((i for i in part_items if i[C.SK] == "PROFILE"), None) or {}
    ident_keys = [(f"IDENT#{k}#{v}", "IDENT") for k, v in sorted(identities) if k != "id"]
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

    # The archive, through its index: the deliveries routed to the contact (their key on its activity items), and
    # the objects no contact was resolved for, indexed by the identities they name (and its id).
    objects = {str(i["archive_key"]) for i in part_items if str(i[C.SK]).startswith("ACT#") and i.get("archive_key")}
    archive = _archive_of(ops)
    index_items: list[tuple[str, str]] = []
    outbox: list[tuple[str, str]] = []
    if archive is not None and archive.index is not None:
        index_items = archive.index.entries(identities | {("id", contact_id)})
        objects |= {key for _, key in index_items}
        for key in sorted(k for k in objects if k.startswith(DEAD_LETTERS_PREFIX)):
            doc = archive.get_json(key) or {}
            image = ((doc.get("record") or {}).get("dynamodb") or {}).get("Keys") or {}
            if doc.get("source") == "stream" and "S" in image.get(C.PK, {}) and "S" in image.get(C.SK, {}):
                outbox.append((image[C.PK]["S"], image[C.SK]["S"]))  # its outbox item, never routed
    return _Found(outside, index_items, sorted(objects), outbox)


def erase(
    ops: OperationsStore,
    contact: str,
    *,
    dry_run: bool = False,
    settle_seconds: float = SETTLE_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> Receipt:
    """Erase the contact CONTACT names. Runs are stopped first and the tombstone written before anything is
    deleted, so whatever arrives afterwards (a step, an outbox item, feedback) is dropped, not written again."""
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
    named = {(k, str(v)) for k, v in identities if v}
    found = _find(ops, contact_id, part.items, named)

    executions = sorted(
        {str(i["execution_arn"]) for i in part.of("ENROLL#") if i.get("execution_arn")}
        | {str(i["execution"]) for i in part.of("WAIT#") if i.get("execution")}
    )
    mine = [i for i in part.items if i[C.SK] != ERASED_SK]
    for item in mine:
        receipt.items[_kind(str(item[C.SK]))] += 1
    for pk, _ in found.outside:
        receipt.items[_OUTSIDE_KINDS[pk.split("#")[0]]] += 1
    if found.index_items:
        receipt.items["archive index entries"] += len(found.index_items)
    if found.outbox:
        receipt.items["outbox items never routed"] += len(found.outbox)
    receipt.archive_objects = len(found.objects)
    if dry_run:
        receipt.executions_stopped = len(executions)  # at most: those still running are stopped
        return receipt

    receipt.executions_stopped = sum(ops.stop_execution(arn, "contact erased") for arn in executions)
    ops.store.put_item(tombstone_item(contact_id, clock.now()))  # before any delete: see shared/store/contacts.py
    receipt.tombstone = True
    ops.delete_keys([(str(i[C.PK]), str(i[C.SK])) for i in mine] + found.outside + found.index_items + found.outbox)
    ops.delete_objects(found.objects)
    # A step or a routing that read the contact before the tombstone may still write: wait out the longest one,
    # then read the partition and the index again and sweep what came.
    if settle_seconds > 0:
        sleep(settle_seconds)
    late = [i for i in ops.partition(contact_id).items if i[C.SK] != ERASED_SK]
    again = _find(ops, contact_id, late, named)
    for item in late:
        receipt.items[_kind(str(item[C.SK]))] += 1
    new_index = [k for k in again.index_items if k not in set(found.index_items)]
    receipt.items["archive index entries"] += len(new_index)
    new_objects = [k for k in again.objects if k not in set(found.objects)]
    receipt.archive_objects += len(new_objects)
    ops.delete_keys([(str(i[C.PK]), str(i[C.SK])) for i in late] + new_index + again.outbox)
    ops.delete_objects(new_objects)
    receipt.items = +receipt.items  # no zero counts
    return receipt


def print_receipt(r: Receipt, out: Any) -> None:
    verb = "would delete" if r.dry_run else "deleted"
    print(f"contact {r.contact_id}: {verb} {sum(r.items.values())} item(s)", file=out)
    for kind, n in sorted(r.items.items()):
        print(f"  {kind}: {n}", file=out)
    print(f"  running executions {'to stop (at most)' if r.dry_run else 'stopped'}: {r.executions_stopped}", file=out)
    print(f"  archived deliveries / dead letters: {r.archive_objects}", file=out)
    if r.tombstone:
        print(
            f"  left: a tombstone (the time of the erasure only) under the contact id, for {ERASED_DAYS} days", file=out
        )
    print("not reachable by erasure:", file=out)
    for line in NOT_REACHED:
        print(f"  - {line}", file=out)
    if r.dry_run:
        print("nothing deleted: run again with --yes to erase", file=out)


def erase_command(args: argparse.Namespace) -> int:
    from stepwise.errors import aws

    with aws("erase", table=args.table, bucket=args.bucket):  # an AWS error: one line, exit 2
        return _erase(args)


def _erase(args: argparse.Namespace) -> int:
    from stepwise.ops import clients, need

    need(args, ("--table", args.table, C.ENV_TABLE_NAME), ("--bucket", args.bucket, C.ENV_ARCHIVE_BUCKET))
    ddb, sfn, s3 = clients("dynamodb", "stepfunctions", "s3")
    ops = OperationsStore(ContactStore(args.table, ddb), sfn=sfn, s3=s3, bucket=args.bucket)
    try:
        receipt = erase(ops, args.contact, dry_run=not args.yes, settle_seconds=args.settle)
    except (BadContactReference, NobodyToErase) as err:
        print(f"stepwise erase: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(receipt.as_dict(), indent=2))
    else:
        print_receipt(receipt, sys.stdout)
    return 0  # the preview (without --yes) is a normal outcome too


def add_parser(sub: Any) -> None:
    from stepwise.ops import add_stack_options

    p = sub.add_parser("erase", help="erase a contact everywhere (GDPR) and print a receipt of what was deleted")
    p.add_argument("contact", metavar="CONTACT", help="email, phone (+E.164), provider:id or contact id")
    p.add_argument("--yes", action="store_true", help="really delete (without it: what would be deleted)")
    p.add_argument("--json", action="store_true", help="print the receipt as JSON")
    p.add_argument(
        "--settle",
        type=float,
        default=SETTLE_SECONDS,
        metavar="SECONDS",
        help=f"wait this long before the last sweep (default {SETTLE_SECONDS}: the longest a step can run)",
    )
    add_stack_options(p, bucket=True)
    p.set_defaults(func=erase_command)
