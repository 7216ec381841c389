"""The contact store: one DynamoDB table for contacts, identities, memberships, history, waits and enrolments."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from shared import clock
from shared import constants as C
from shared.events_base import stable_hash
from shared.store.codec import deserialise, epoch, serialise  # the store's other modules import them here
from shared.store.run_index import (
    ENTERED_PREFIX,
    PROGRESS,
    funnel_keys,
    message_event_keys,
    order_key,
    progress_sk,
    progress_state,
    run_index_pk,
)

if TYPE_CHECKING:  # the store reads a ContactRef's fields, never builds one: its import stays free of pydantic
    from shared.events import ContactRef


class ConditionFailed(Exception):
    """A write of a step's transaction found the table not as the step expected (say, its contact deleted)."""


class ContactNotFound(Exception):
    """The contact a step names does not exist (deleted, or a bad id in the execution input)."""


class UnknownContact(ContactNotFound):
    """An event names a contact_id no contact has: refused, never a half profile created for it."""

    def __init__(self, contact_id: str) -> None:
        super().__init__(
            f"contact.contact_id: no contact {contact_id!r} exists; refused (name it by email, phone or "
            "external_id to create one)"
        )
        self.contact_id = contact_id


class IdentityRace(Exception):
    """An identity the event adds was claimed by another contact between the read and the write: retry the event."""


def contact_pk(contact_id: str) -> str:
    return f"CONTACT#{contact_id}"


# The tombstone `stepwise erase` leaves in an erased contact's partition: the time only (no identity, no profile),
# so that what still names the contact by id after the erasure (a step of a stopped run, an outbox item or a
# feedback event in flight, a replayed dead letter) is dropped rather than failing, retried and dead-lettered.
# It expires when nothing can still arrive: outbox items live 7 days, SQS keeps messages 14, the archive 30.
ERASED_SK = "ERASED"
ERASED_DAYS = 31


def tombstone_item(contact_id: str, at: datetime) -> dict[str, Any]:
    return {
        C.PK: contact_pk(contact_id),
        C.SK: ERASED_SK,
        "erased_at": at.isoformat(),
        C.TTL_ATTRIBUTE: epoch(at + timedelta(days=ERASED_DAYS)),
    }


def table_definition(table_name: str) -> dict[str, Any]:
    """create_table arguments; the CDK construct declares the same keys, index and TTL attribute."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": C.PK, "AttributeType": "S"},
            {"AttributeName": C.SK, "AttributeType": "S"},
            {"AttributeName": C.GSI1_PK, "AttributeType": "S"},
            {"AttributeName": C.GSI1_SK, "AttributeType": "S"},
        ],
        "KeySchema": [{"AttributeName": C.PK, "KeyType": "HASH"}, {"AttributeName": C.SK, "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": C.GSI1,
                "KeySchema": [
                    {"AttributeName": C.GSI1_PK, "KeyType": "HASH"},
                    {"AttributeName": C.GSI1_SK, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    }


def create_table(client: Any, table_name: str) -> None:
    client.create_table(**table_definition(table_name))
    client.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": C.TTL_ATTRIBUTE}
    )


@dataclass
class Contact:
    id: str
    email: str | None = None
    phone: str | None = None
    timezone: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)
    lists: set[str] = field(default_factory=set)
    campaigns: dict[str, str | None] = field(default_factory=dict)
    stages: dict[str, str] = field(default_factory=dict)
    score: float = 0
    consent: dict[str, bool] = field(default_factory=dict)
    external_ids: set[str] = field(default_factory=set)
    identity_conflicts: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Contact:
        return cls(
            id=item["contact_id"],
            email=item.get("email"),
            phone=item.get("phone"),
            timezone=item.get("timezone"),
            fields=item.get("fields", {}),
            tags=set(item.get("tags", [])) - {""},
            lists=set(item.get("lists", [])) - {""},
            campaigns=item.get("campaigns", {}),
            stages=item.get("stages", {}),
            score=item.get("score", 0),
            consent=item.get("consent", {}),
            external_ids=set(item.get("external_ids", [])) - {""},
            identity_conflicts=list(item.get("identity_conflicts", [])),
        )

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "phone": self.phone,
            "tags": sorted(self.tags),
            "lists": sorted(self.lists),
            "campaigns": self.campaigns,
            "stages": self.stages,
            "score": self.score,
            "fields": self.fields,
            "identities": {"email": self.email, "phone": self.phone, "external": sorted(self.external_ids)},
            "identity_conflicts": self.identity_conflicts,
        }


# The longest activity any read goes back when a condition names no `within`: the activity items' TTL.
ACTIVITY_DAYS = 90
SET_ATTRIBUTES = ("tags", "lists", "external_ids")


def identities_of(ref: ContactRef) -> list[tuple[str, str]]:
    """The identities a reference carries, in resolution order: email, phone, external id."""
    out = []
    if ref.email:
        out.append(("email", ref.email))
    if ref.phone:
        out.append(("phone", ref.phone))
    if ref.external_id:
        out.append(("ext", ref.external_id))
    return out


def new_contact_id(identity: tuple[str, str]) -> str:
    """The id a contact first seen with `identity` gets: two events racing to create it arrive at the same id."""
    return "c-" + stable_hash(*identity)


def holds(profile: dict[str, Any], kind: str, value: str) -> bool:
    if kind == "ext":
        return value in (profile.get("external_ids") or [])
    return bool(profile.get(kind) == value)


def _stored_identity(profile: dict[str, Any], kind: str, value: str) -> str | None:
    """The identity of this kind the profile already has, which `value` would replace (None: nothing to replace).
    A contact has one email and one phone, and one external id per provider (the scope before the colon)."""
    if kind != "ext":
        return profile.get(kind) or None
    scope = value.split(":", 1)[0] + ":"
    return next((x for x in sorted(profile.get("external_ids") or []) if x.startswith(scope)), None)


@dataclass(frozen=True)
class Op:
    """One change to a profile attribute: set, add to / delete from a set, append to a list. `path` is the
    attribute and, for maps, the key inside it."""

    kind: str  # set, add, delete, append
    path: tuple[str, ...]
    value: Any


def event_ops(profile: dict[str, Any], etype: str, data: dict[str, Any], at: datetime) -> list[Op]:
    """What an event says about its contact (a tag added in the shop, a list sign-up, consent, score, a field)."""
    if etype in ("tag.added", "tag.removed") and data.get("tag"):
        return [Op("add" if etype == "tag.added" else "delete", ("tags",), {data["tag"]})]
    if etype in ("list.subscribed", "list.unsubscribed") and data.get("list"):
        return [Op("add" if etype == "list.subscribed" else "delete", ("lists",), {data["list"]})]
    if etype == "field.changed" and data.get("field"):
        return [Op("set", ("fields", str(data["field"])), data.get("value"))]
    if (change := consent_change(etype, data)) is not None:
        channel, given = change
        return [Op("set", ("consent", channel), given), Op("set", ("consent_at", channel), at.isoformat())]
    if etype == "score.changed" and isinstance(data.get("score"), int | float):
        return [Op("set", ("score",), data["score"])]
    return []


def apply_ops(profile: dict[str, Any], ops: list[Op]) -> dict[str, Any]:
    """The profile after `ops`, as DynamoDB will hold it (read back through deserialise)."""
    out = json.loads(json.dumps(profile, default=str))
    for op in ops:
        top = op.path[0]
        if op.kind == "set" and len(op.path) == 1:
            out[top] = op.value
        elif op.kind == "set":
            out.setdefault(top, {})
            out[top][op.path[1]] = op.value
        elif op.kind == "append":
            out[top] = [*(out.get(top) or []), *op.value]
        else:
            current = set(out.get(top) or [])
            out[top] = sorted(current | set(op.value) if op.kind == "add" else current - set(op.value))
    return deserialise(serialise(out))


def _expressible(before: dict[str, Any], after: dict[str, Any], ops: list[Op]) -> list[Op]:
    """`ops` as one UpdateExpression can say them: a key set in a map the profile lacks becomes a set of the
    whole map (a nested SET needs its map), and no path twice (the last change of a path wins)."""
    out: dict[tuple[str, ...], Op] = {}
    for op in ops:
        top = op.path[0]
        if len(op.path) > 1 and not isinstance(before.get(top), dict):
            out = {k: v for k, v in out.items() if k[0] != top}
            out[(top,)] = Op("set", (top,), after.get(top, {}))
        elif (top,) in out and len(op.path) > 1:
            out[(top,)] = Op("set", (top,), after.get(top, {}))
        elif op.kind in ("add", "delete") and any(k[0] == top for k in out):
            out = {k: v for k, v in out.items() if k[0] != top}
            out[(top,)] = Op("set", (top,), set(after.get(top) or []) or None)
        else:
            out[op.path] = op
    return [o for o in out.values() if not (o.kind == "set" and o.value is None and len(o.path) == 1)]


def activity_item(
    contact_id: str, event_id: str, etype: str, data: dict[str, Any], at: datetime, archive_key: str = ""
) -> dict[str, Any]:
    return {
        C.PK: contact_pk(contact_id),
        C.SK: f"ACT#{at.isoformat()}#{event_id}",
        "type": etype,
        "data": data,
        "at": at.isoformat(),
        C.TTL_ATTRIBUTE: epoch(at + timedelta(days=ACTIVITY_DAYS)),
        # The archived delivery the event came in (shared/store/archive.py): the archive's index by contact, for
        # erasure, at the cost of one attribute on an item written anyway.
        **({"archive_key": archive_key} if archive_key else {}),
        # A workflow's message event is on the funnel index (shared/store/run_index.py): `stats` counts it there.
        **message_event_keys(etype, data, at.isoformat(), contact_id=contact_id),
    }


@dataclass
class Snapshot:
    """One contact's partition as routing one event needs it, read in one Query (`ContactStore.read_partition`)."""

    contact_id: str
    profile: dict[str, Any] | None = None
    waits: list[dict[str, Any]] = field(default_factory=list)
    enrolments: dict[str, dict[str, Any]] = field(default_factory=dict)  # workflow -> the ENROLL# item as stored
    activity: list[dict[str, Any]] = field(default_factory=list)
    message: dict[str, Any] | None = None
    owners: dict[tuple[str, str], str] = field(default_factory=dict)  # identity -> contact, when looked up

    def add(self, item: dict[str, Any]) -> None:
        sk = str(item[C.SK])
        if sk == "PROFILE":
            self.profile = item
        elif sk.startswith("WAIT#"):
            self.waits.append(item)
        elif sk.startswith("ENROLL#"):
            self.enrolments[sk.removeprefix("ENROLL#")] = item
        elif sk.startswith("ACT#"):
            self.activity.append(item)
        elif sk.startswith("MSG#"):
            self.message = item

    def contact(self) -> Contact:
        if self.profile is None:
            raise ContactNotFound(f"contact {self.contact_id} does not exist")
        return Contact.from_item({"contact_id": self.contact_id, **self.profile})


@dataclass
class ContactUpdate:
    """The writes an event makes to its contact (`ContactStore.contact_update`), and what they change."""

    writes: list[dict[str, Any]] = field(default_factory=list)
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # custom field -> (value, previous)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    ident_positions: list[int] = field(default_factory=list)
    profile_position: int | None = None


CONSENT_CHANNELS = ("email", "sms")


def consent_change(etype: str, data: dict[str, Any]) -> tuple[str, bool] | None:
    """(channel, given) when the event records a consent decision: consent.given / consent.withdrawn name the
    channel; a provider's email.unsubscribed or sms.opted_out (a STOP reply) withdraws its own."""
    if etype in ("consent.given", "consent.withdrawn") and data.get("channel") in CONSENT_CHANNELS:
        return str(data["channel"]), etype == "consent.given"
    if etype == "email.unsubscribed":
        return "email", False
    if etype == "sms.opted_out":
        return "sms", False
    return None


class ContactStore:
    """Data access for contacts. The only module that talks to DynamoDB."""

    def __init__(self, table_name: str, client: Any) -> None:
        self.table = table_name
        self.client = client

    # ---- identities and profiles -------------------------------------------------------------

    def resolve(self, ref: ContactRef) -> str | None:
        """The id of the contact the reference names (None: nobody yet); a contact_id is taken as given."""
        if ref.contact_id:
            return ref.contact_id
        owners = self.identity_owners(identities_of(ref))
        return next((owners[i] for i in identities_of(ref) if i in owners), None)

    @staticmethod
    def _identities(ref: ContactRef) -> list[tuple[str, str]]:
        return identities_of(ref)

    def identity_owners(self, identities: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Which contact each identity points at, for those that point anywhere: one BatchGetItem."""
        got = self.batch_get([(f"IDENT#{k}#{v}", "IDENT") for k, v in identities])
        return {
            (k, v): str(got[(f"IDENT#{k}#{v}", "IDENT")]["contact_id"])
            for k, v in identities
            if (f"IDENT#{k}#{v}", "IDENT") in got
        }

    def batch_get(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """Items by (pk, sk), strongly consistent, absent ones left out: one BatchGetItem per 100 keys (plus any
        retries of unprocessed keys)."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 100):
            request: dict[str, Any] = {
                self.table: {"Keys": [self._key(pk, sk) for pk, sk in unique[i : i + 100]], "ConsistentRead": True}
            }
            while request:
                got = self.client.batch_get_item(RequestItems=request)
                for raw in got.get("Responses", {}).get(self.table, []):
                    item = deserialise(raw)
                    out[(item[C.PK], item[C.SK])] = item
                request = got.get("UnprocessedKeys") or {}
        return out

    def read_partition(
        self, contact_id: str, *, activity_since: datetime | None = None, message_id: str | None = None
    ) -> Snapshot:
        """Everything routing one event needs of one contact, in one Query (paginated only for a contact with
        a great deal of history): the profile, its waits and enrolments, the message `message_id` names, and its
        activity since `activity_since` (None: none at all). History, messages and memberships are filtered out
        by DynamoDB; activity before the bound is outside the key range, so it is never read."""
        # Sort keys in order: ACT#, ENROLL#, HIST#, LIST#, MSG#, PROFILE, SPLIT#, WAIT#. Activity keys
        # start with the event's own ISO time, whatever its offset: a day's margin covers every offset, and the
        # exact `within` is applied when the condition is evaluated.
        low = "ACT$" if activity_since is None else f"ACT#{(activity_since - timedelta(days=1)).isoformat()}"
        values: dict[str, Any] = {
            ":pk": contact_pk(contact_id),
            ":lo": low,
            ":hi": "WAIT$",
            ":h": "HIST#",
            ":l": "LIST#",
            ":s": "SPLIT#",
            ":m": "MSG#",
            ":msg": f"MSG#{message_id or ''}",
            ":n": ENTERED_PREFIX,
        }
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#pk = :pk AND #sk BETWEEN :lo AND :hi",
            "FilterExpression": "NOT begins_with(#sk, :h) AND NOT begins_with(#sk, :l) AND NOT begins_with(#sk, :s)"
            " AND NOT begins_with(#sk, :n) AND (NOT begins_with(#sk, :m) OR #sk = :msg)",
            "ExpressionAttributeNames": {"#pk": C.PK, "#sk": C.SK},
            "ExpressionAttributeValues": serialise(values),
            "ConsistentRead": True,
        }
        snap = Snapshot(contact_id)
        now = epoch(clock.now())
        while True:
            page = self.client.query(**kwargs)
            for raw in page.get("Items", []):
                item = deserialise(raw)
                if item.get(C.TTL_ATTRIBUTE, now + 1) <= now:
                    continue  # TTL deletion lags by days
                snap.add(item)
            if "LastEvaluatedKey" not in page:
                return snap
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def load(
        self,
        ref: ContactRef,
        *,
        activity_since: datetime | None = None,
        message_id: str | None = None,
        look_up: bool = False,
    ) -> Snapshot:
        """The snapshot of the contact `ref` names, found with as few reads as it takes: a contact_id is read
        directly (UnknownContact if it has no profile); otherwise the contact most events name, the one created
        from the first identity (its id is derived from it), is read first, and only when that partition holds
        another contact are the identities looked up (then `owners` of the snapshot is filled; `look_up`
        always, as after an IdentityRace). A contact not yet known comes back without a profile, under the id it
        will be created with."""
        if ref.contact_id:
            snap = self.read_partition(ref.contact_id, activity_since=activity_since, message_id=message_id)
            if snap.profile is None:
                raise UnknownContact(ref.contact_id)
            return snap
        identities = identities_of(ref)
        guess = new_contact_id(identities[0])
        snap = self.read_partition(guess, activity_since=activity_since, message_id=message_id)
        if not look_up and (snap.profile is None or holds(snap.profile, *identities[0])):
            # Found; or nobody under the derived id, so most likely a new contact: created optimistically, its
            # identities put on condition, and should one of them belong to someone already the transaction
            # fails (IdentityRace) and the event is routed again with the identities looked up.
            return snap
        owners = self.identity_owners(identities)
        owner = next((owners[i] for i in identities if i in owners), guess)
        if owner != guess:
            snap = self.read_partition(owner, activity_since=activity_since, message_id=message_id)
        snap.owners = owners
        return snap

    def upsert(self, ref: ContactRef) -> str:
        """The contact's id, creating the contact on first sight. Redelivery finds the same contact."""
        return self.upsert_with_changes(ref)[0]

    def upsert_with_changes(self, ref: ContactRef) -> tuple[str, dict[str, tuple[Any, Any]]]:
        """`upsert`, and the custom fields the event changed: name -> (value, previous), previous None for a
        field set for the first time. A redelivery changes nothing, so it reports nothing."""
        for attempt in range(3):
            snap = self.load(ref, look_up=attempt > 0)
            update = self.contact_update(snap, ref, event_id="upsert", at=clock.now())
            try:
                self.apply(snap, update, [])
            except IdentityRace:
                if attempt == 2:
                    raise
                continue
            return snap.contact_id, update.changes
        raise AssertionError("unreachable")

    # ---- one event's writes, in one transaction ---------------------------------------------------

    def contact_update(
        self, snap: Snapshot, ref: ContactRef, *, event_id: str, at: datetime, etype: str = "", data: Any = None
    ) -> ContactUpdate:
        """What an event changes on its contact: identities it adds (never replaces: a conflict is recorded on
        the profile instead), its fields, and what the event itself says (`etype`/`data`: tags, lists, consent,
        score, a field). The snapshot's profile is changed in memory to match, for conditions evaluated next."""
        upd = ContactUpdate()
        profile = snap.profile
        new = profile is None
        base: dict[str, Any] = profile or {
            "contact_id": snap.contact_id,
            "fields": {},
            "campaigns": {},
            "stages": {},
            "score": 0,
        }
        ops: list[Op] = []
        stamp = at.isoformat()
        # Identities: added when the contact has none of that kind; never replaced.
        for kind, value in identities_of(ref):
            if holds(base, kind, value):
                continue
            other = snap.owners.get((kind, value))
            kept = _stored_identity(base, kind, value)
            if (other is not None and other != snap.contact_id) or kept is not None:
                conflict = {
                    "kind": kind,
                    "offered": value,
                    "kept": kept,
                    "other_contact": other,
                    "event": event_id,
                    "at": stamp,
                }
                if not any(
                    c.get("kind") == kind and c.get("offered") == value for c in base.get("identity_conflicts", [])
                ):
                    upd.conflicts.append({k: v for k, v in conflict.items() if v is not None})
                continue
            if kind == "ext":
                ops.append(Op("add", ("external_ids",), {value}))
            else:
                ops.append(Op("set", (kind,), value))
            # Conditioned: an identity someone else took since the read fails the transaction (IdentityRace).
            upd.writes.append(
                {
                    "Put": {
                        "Item": serialise(
                            {C.PK: f"IDENT#{kind}#{value}", C.SK: "IDENT", "contact_id": snap.contact_id}
                        ),
                        "ConditionExpression": "attribute_not_exists(#pk) OR contact_id = :me",
                        "ExpressionAttributeNames": {"#pk": C.PK},
                        "ExpressionAttributeValues": serialise({":me": snap.contact_id}),
                    }
                }
            )
            upd.ident_positions.append(len(upd.writes) - 1)
        if upd.conflicts:
            ops.append(Op("append", ("identity_conflicts",), upd.conflicts))
        if ref.timezone and base.get("timezone") != ref.timezone:
            ops.append(Op("set", ("timezone",), ref.timezone))
        extra = dict(ref.fields)
        if ref.first_name:
            extra["first_name"] = ref.first_name
        if ref.last_name:
            extra["last_name"] = ref.last_name
        before = base.get("fields") or {}
        for k, v in sorted(extra.items()):
            stored = deserialise(serialise({"v": v}))["v"]  # as DynamoDB gives it back (Decimals...)
            if before.get(k) != stored:
                upd.changes[k] = (v, before.get(k))
                ops.append(Op("set", ("fields", k), v))
        if etype:
            ops += event_ops(base, etype, data or {}, at)
            upd.writes += self._membership_writes(snap.contact_id, etype, data or {}, at)
        after = apply_ops(base, ops)
        if new:
            after.update({"created_at": stamp, "updated_at": stamp})
            item = {C.PK: contact_pk(snap.contact_id), C.SK: "PROFILE", **after}
            for attr in SET_ATTRIBUTES:  # string sets, as ADD and DELETE need them (an empty set is left out)
                item[attr] = set(item[attr]) if item.get(attr) else None
            upd.writes.insert(
                0,
                {
                    "Put": {
                        "Item": serialise(item),
                        "ConditionExpression": "attribute_not_exists(#pk)",  # two events creating one contact: one wins
                        "ExpressionAttributeNames": {"#pk": C.PK},
                    }
                },
            )
            upd.ident_positions = [i + 1 for i in upd.ident_positions]
            upd.profile_position = 0
        elif ops:
            ops = _expressible(base, after, [*ops, Op("set", ("updated_at",), stamp)])
            upd.writes.insert(0, self._profile_ops_update(snap.contact_id, ops))
            upd.ident_positions = [i + 1 for i in upd.ident_positions]
            upd.profile_position = 0
        snap.profile = after
        return upd

    def _profile_ops_update(self, contact_id: str, ops: list[Op]) -> dict[str, Any]:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        clauses: dict[str, list[str]] = {"SET": [], "ADD": [], "DELETE": []}
        for i, op in enumerate(ops):
            path = []
            for part in op.path:
                alias = next((a for a, n in names.items() if n == part), None) or f"#n{len(names)}"
                names[alias] = part
                path.append(alias)
            dotted = ".".join(path)
            values[f":v{i}"] = op.value
            if op.kind == "set":
                clauses["SET"].append(f"{dotted} = :v{i}")
            elif op.kind == "append":
                values[":empty_list"] = []
                clauses["SET"].append(f"{dotted} = list_append(if_not_exists({dotted}, :empty_list), :v{i})")
            else:
                clauses[op.kind.upper()].append(f"{dotted} :v{i}")
        expr = " ".join(f"{k} {', '.join(v)}" for k, v in clauses.items() if v)
        return self.profile_update(contact_id, expr, names, values)

    def _membership_writes(self, contact_id: str, etype: str, data: dict[str, Any], at: datetime) -> list[dict]:
        name = data.get("list")
        if etype == "list.subscribed" and name:
            return [
                self.put(
                    {
                        C.PK: contact_pk(contact_id),
                        C.SK: f"LIST#{name}",
                        C.GSI1_PK: f"LIST#{name}",
                        C.GSI1_SK: f"CONTACT#{contact_id}",
                        "at": at.isoformat(),
                    }
                )
            ]
        if etype == "list.unsubscribed" and name:
            return [self.delete(contact_pk(contact_id), f"LIST#{name}")]
        return []

    def activity_put(self, contact_id: str, event_id: str, etype: str, data: dict[str, Any], at: datetime) -> dict:
        """A transaction write of an activity item (what `record_activity` writes)."""
        return self.put(activity_item(contact_id, event_id, etype, data, at))

    def apply(self, snap: Snapshot, update: ContactUpdate, more: list[dict[str, Any]]) -> list[int] | None:
        """Write an event's contact update and `more` writes in one transaction. None when it went through; the
        positions (in `more`) of writes whose condition failed otherwise, the rest not applied. Raises
        IdentityRace when the contact or an identity changed hands since the read."""
        writes = [*update.writes, *more]
        if not writes:
            return None
        failed = self._transact(writes)
        if failed is None:
            return None
        mine = set(update.ident_positions)
        if update.profile_position is not None:
            mine.add(update.profile_position)
        if mine & set(failed):
            raise IdentityRace(f"contact {snap.contact_id}: an identity or the profile changed since it was read")
        offset = len(update.writes)
        return [i - offset for i in failed]

    def get(self, contact_id: str) -> Contact:
        got = self.client.get_item(TableName=self.table, Key=self._key(contact_pk(contact_id), "PROFILE"))
        if "Item" not in got:
            raise ContactNotFound(f"contact {contact_id} does not exist")
        return Contact.from_item(deserialise(got["Item"]))

    def list_members(self, list_name: str) -> list[str]:
        ids: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": C.GSI1,
            "KeyConditionExpression": f"{C.GSI1_PK} = :l",
            "ExpressionAttributeValues": serialise({":l": f"LIST#{list_name}"}),
        }
        while True:
            page = self.client.query(**kwargs)
            ids.extend(deserialise(i)[C.GSI1_SK].removeprefix("CONTACT#") for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return ids
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # ---- one step, exactly once ---------------------------------------------------------------

    def commit_step(self, contact_id: str, history: dict[str, Any], writes: list[dict[str, Any]]) -> bool:
        """Write a step's history record and its side effects in one transaction.

        Returns False when the history record already exists: the step ran before (a retry or a redrive),
        and none of `writes` is applied again.

        The run's enrolment record takes the step as its current one in the same transaction (`progress_write`:
        no request of its own); when that write's condition fails (no enrolment of this run, or a later step
        recorded first), the step is committed again without it.
        """
        hist = {C.PK: contact_pk(contact_id), **funnel_keys(history, contact_id), **history}
        guarded = {
            "Put": {
                "Item": serialise(hist),
                "ConditionExpression": "attribute_not_exists(#pk)",
                "ExpressionAttributeNames": {"#pk": C.PK},
            }
        }
        progress = self.progress_write(contact_id, history)
        failed = self._transact([guarded, *writes, *([progress] if progress else [])])
        if failed is not None and progress is not None and failed == [len(writes) + 1]:
            failed = self._transact([guarded, *writes])  # the run's record is not this run's, or is ahead of it
        if failed is None:
            return True
        if failed and failed[0] == 0:
            return False
        raise ConditionFailed(f"step record {history.get(C.SK)}: a condition of write(s) {failed} failed")

    def progress_write(self, contact_id: str, history: dict[str, Any]) -> dict[str, Any] | None:
        """The transaction write making a history record's step the current step of its run's enrolment record
        (ENROLL#<workflow>: its `progress` and the run index key, shared/store/run_index.py). Only on this run's
        record while it runs (or is being confirmed: its claim names the execution), and only forward: a record
        ordered before the current one (a resumed wait committed after the next step) leaves it."""
        workflow, execution, step = history.get("workflow"), history.get("execution"), history.get("step")
        if not workflow or not execution or not step:
            return None
        progress = {
            "step": str(step),
            "state": progress_state(history),
            "at": str(history.get("at", "")),
            "until": str(history.get("until") or ""),
            "version": str(history.get("version") or ""),
            "execution": str(execution),
            "order": order_key(history),
        }
        return {
            "Update": {
                "Key": self._key(contact_pk(contact_id), f"ENROLL#{workflow}"),
                "UpdateExpression": "SET #pr = :p, #g1 = :g1, #g2 = :g2",
                "ConditionExpression": "((#ex = :e AND #st = :running) OR #cl.#ex = :e)"
                " AND (attribute_not_exists(#pr) OR #pr.#pe <> :e OR #pr.#po < :o)",
                "ExpressionAttributeNames": {
                    "#pr": PROGRESS,
                    "#g1": C.GSI1_PK,
                    "#g2": C.GSI1_SK,
                    "#ex": "execution_arn",
                    "#st": "status",
                    "#cl": "claim",
                    "#pe": "execution",
                    "#po": "order",
                },
                "ExpressionAttributeValues": serialise(
                    {
                        ":p": progress,
                        ":g1": run_index_pk(str(workflow), contact_id),
                        ":g2": progress_sk("running", progress, contact_id),
                        ":e": str(execution),
                        ":running": "running",
                        ":o": progress["order"],
                    }
                ),
            }
        }

    def profile_update(self, contact_id: str, expression: str, names: dict[str, str], values: dict[str, Any]) -> dict:
        upd: dict[str, Any] = {
            "Key": self._key(contact_pk(contact_id), "PROFILE"),
            "UpdateExpression": expression,
            "ConditionExpression": "attribute_exists(#pk)",
            "ExpressionAttributeNames": {"#pk": C.PK, **names},
        }
        if values:
            upd["ExpressionAttributeValues"] = serialise(values)
        return {"Update": upd}

    def put(self, item: dict[str, Any]) -> dict[str, Any]:
        return {"Put": {"Item": serialise(item)}}

    def outbox(self, contact_id: str, key: str, etype: str, data: dict[str, Any], at: datetime) -> dict[str, Any]:
        """A transaction write of an outbox item: a contact event caused by a step (`key`: the idempotency key
        of its visit), which the table's stream hands to the router for other workflows' triggers and goals."""
        eid = stable_hash(key, etype, json.dumps(data, sort_keys=True, default=str))
        return self.put(
            {
                C.PK: f"EVENT#{eid}",
                C.SK: "EVENT",
                "id": eid,
                "type": etype,
                "contact_id": contact_id,
                "data": data,
                "at": at.isoformat(),
                "status": "pending",
                C.TTL_ATTRIBUTE: epoch(at + timedelta(days=7)),
            }
        )

    def set_campaign_stage(self, contact_id: str, campaign: str, stage: str) -> bool:
        """The step the contact is at in a campaign it is subscribed to; False when it is not (any more)."""
        return self._update_profile_if(
            "SET campaigns.#c = :s", "attribute_exists(campaigns.#c)", {"#c": campaign}, {":s": stage}, contact_id
        )

    def leave_campaign(self, contact_id: str, campaign: str) -> bool:
        """Take the contact out of a campaign (it completed it); False when it was not in it."""
        return self._update_profile_if(
            "REMOVE campaigns.#c", "attribute_exists(campaigns.#c)", {"#c": campaign}, {}, contact_id
        )

    def mark_message(self, contact_id: str, message_id: str, attribute: str, at: datetime) -> bool:
        """Note the first time something happened to a message (`opened_at`, `clicked_at`); False if it had."""
        return self._update_if(
            self._key(contact_pk(contact_id), f"MSG#{message_id}"),
            "SET #a = :at",
            "attribute_exists(#pk) AND attribute_not_exists(#a)",
            {"#a": attribute, "#pk": C.PK},
            {":at": at.isoformat()},
        )

    def _update_profile_if(
        self, expr: str, condition: str, names: dict[str, str], values: dict[str, Any], contact_id: str
    ) -> bool:
        return self._update_if(self._key(contact_pk(contact_id), "PROFILE"), expr, condition, names, values)

    def _update_if(
        self, key: dict[str, Any], expr: str, condition: str, names: dict[str, str], values: dict[str, Any]
    ) -> bool:
        """One UpdateItem under a condition; False when the condition did not hold (nothing changed)."""
        kwargs: dict[str, Any] = {"ExpressionAttributeValues": serialise(values)} if values else {}
        try:
            self.client.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression=expr,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                **kwargs,
            )
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def delete(self, pk: str, sk: str) -> dict[str, Any]:
        return {"Delete": {"Key": self._key(pk, sk)}}

    def add(self, pk: str, sk: str, counts: dict[str, int], first: dict[str, Any] | None = None) -> dict[str, Any]:
        """A transaction write adding to counters (created at 0 when absent); `first` attributes are set only
        when absent (when the first count happened, say)."""
        first = first or {}
        names = {**{f"#c{i}": k for i, k in enumerate(counts)}, **{f"#f{i}": k for i, k in enumerate(first)}}
        values = {**{f":c{i}": v for i, v in enumerate(counts.values())}}
        values |= {f":f{i}": v for i, v in enumerate(first.values())}
        expr = "ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(counts)))
        if first:
            expr = "SET " + ", ".join(f"#f{i} = if_not_exists(#f{i}, :f{i})" for i in range(len(first))) + " " + expr
        return {
            "Update": {
                "Key": self._key(pk, sk),
                "UpdateExpression": expr,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": serialise(values),
            }
        }

    def update_if(
        self, pk: str, sk: str, values: dict[str, Any], condition: str, cond_values: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A transaction write setting `values` on an existing item when `condition` holds."""
        names = {f"#v{i}": k for i, k in enumerate(values)}
        return {
            "Update": {
                "Key": self._key(pk, sk),
                "UpdateExpression": "SET " + ", ".join(f"#v{i} = :v{i}" for i in range(len(values))),
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {**({"#pk": C.PK} if "#pk" in condition else {}), **names},
                "ExpressionAttributeValues": serialise(
                    {**{f":v{i}": v for i, v in enumerate(values.values())}, **(cond_values or {})}
                ),
            }
        }

    def transact(self, writes: list[dict[str, Any]]) -> bool:
        """Apply writes all or none; False when a condition failed (the change was made before)."""
        return self._transact(writes) is None

    def _transact(self, writes: list[dict[str, Any]]) -> list[int] | None:
        """One TransactWriteItems; None when it went through, else the positions of the writes whose condition
        failed (other cancellations raise)."""
        items = [{**w, next(iter(w)): {"TableName": self.table, **w[next(iter(w))]}} for w in writes]
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as err:
            if err.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = err.response.get("CancellationReasons") or []
            failed = [i for i, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"]
            if not failed:
                raise
            return failed
        return None

    def transact_failures(self, writes: list[dict[str, Any]]) -> list[int] | None:
        """One TransactWriteItems: None when it went through, else the positions of the writes whose condition
        failed (nothing applied)."""
        return self._transact(writes)

    # ---- enrolment claims (shared/enrollment.py) ----------------------------------------------

    def claim_write(
        self, pk: str, sk: str, claim: dict[str, Any], *, workflow: str, rev: int, expected: int | None
    ) -> dict[str, Any]:
        """A transaction write claiming an enrolment on its ENROLL# item: the claim (key, execution it will
        start, when) and the item's next revision, only if the revision is still the one read (`expected`; None:
        the item has none yet). Of two enrolments racing on one item, one claim goes through."""
        condition = "attribute_not_exists(#rev)" if expected is None else "#rev = :expected"
        values: dict[str, Any] = {":c": claim, ":r": rev, ":w": workflow}
        if expected is not None:
            values[":expected"] = expected
        return {
            "Update": {
                "Key": self._key(pk, sk),
                "UpdateExpression": "SET #claim = :c, #rev = :r, #wf = :w",
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#claim": "claim", "#rev": "rev", "#wf": "workflow"},
                "ExpressionAttributeValues": serialise(values),
            }
        }

    def confirm_claim(self, record: dict[str, Any], *, entry: dict[str, Any] | None = None) -> bool:
        """Write a confirmed enrolment record over its claim, unless a newer claim has been made since (a later
        revision): False then, and nothing written. `entry` (the entry's ENTERED# marker on the funnel index) goes
        in the same request, a transaction. The run's first step may have been committed before this (the
        execution runs as soon as it is started): its `progress` is then kept, found by re-reading the item (an
        extra read only in that race)."""
        execution = str(record["execution_arn"])
        condition = "(attribute_not_exists(#rev) OR #rev <= :r) AND (attribute_not_exists(#pr) OR #pr.#pe <> :e)"
        values: dict[str, Any] = {":r": record["rev"], ":e": execution}
        for _ in range(4):
            if self._confirm_once(record, condition, values, entry):
                return True
            current = self.get_item(str(record[C.PK]), str(record[C.SK]))
            if current is None:
                continue
            if int(current.get("rev", 0)) > int(record["rev"]):
                return False
            progress = current.get(PROGRESS)
            if not progress or progress.get("execution") != execution:
                continue
            contact_id = str(record[C.PK]).removeprefix("CONTACT#")
            record = {**record, PROGRESS: progress, C.GSI1_SK: progress_sk(str(record["status"]), progress, contact_id)}
            condition = "#rev <= :r AND #pr.#po = :o"
            values = {":r": record["rev"], ":o": progress.get("order", "")}
        return False

    def _confirm_once(
        self, record: dict[str, Any], condition: str, values: dict[str, Any], entry: dict[str, Any] | None
    ) -> bool:
        names = {"#rev": "rev", "#pr": PROGRESS, **({"#pe": "execution"} if ":e" in values else {})}
        names |= {"#po": "order"} if ":o" in values else {}
        if entry is not None:
            put = {
                "Put": {
                    "Item": serialise(record),
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": serialise(values),
                }
            }
            return self._transact([put, self.put(entry)]) is None
        try:
            self.client.put_item(
                TableName=self.table,
                Item=serialise(record),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=serialise(values),
            )
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def clear_claim(self, pk: str, sk: str, rev: int) -> bool:
        """Drop a claim that started nothing new (a duplicate), if it is still the one made at `rev`."""
        return self._update_if(
            self._key(pk, sk), "REMOVE #claim", "#rev = :r", {"#claim": "claim", "#rev": "rev"}, {":r": rev}
        )

    # ---- plain items ------------------------------------------------------------------------

    def put_item(self, item: dict[str, Any], *, only_new: bool = False) -> bool:
        kwargs: dict[str, Any] = {"TableName": self.table, "Item": serialise(item)}
        if only_new:
            kwargs["ConditionExpression"] = "attribute_not_exists(#pk)"
            kwargs["ExpressionAttributeNames"] = {"#pk": C.PK}
        try:
            self.client.put_item(**kwargs)
        except ClientError as err:
            if only_new and err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get_item(self, pk: str, sk: str) -> dict[str, Any] | None:
        got = self.client.get_item(TableName=self.table, Key=self._key(pk, sk), ConsistentRead=True)
        return deserialise(got["Item"]) if "Item" in got else None

    def erased(self, contact_id: str) -> bool:
        """Whether `stepwise erase` erased this contact (its tombstone): read only on the path of an unknown id."""
        return self.get_item(contact_pk(contact_id), ERASED_SK) is not None

    def delete_item(self, pk: str, sk: str) -> None:
        self.client.delete_item(TableName=self.table, Key=self._key(pk, sk))

    def query_prefix(self, pk: str, prefix: str, *, live_only: bool = True) -> list[dict[str, Any]]:
        """Items under `pk` whose sort key starts with `prefix`; TTL-expired ones are filtered out."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :p)",
            "ExpressionAttributeNames": {"#pk": C.PK, "#sk": C.SK},
            "ExpressionAttributeValues": serialise({":pk": pk, ":p": prefix}),
            "ConsistentRead": True,
        }
        out: list[dict[str, Any]] = []
        while True:
            page = self.client.query(**kwargs)
            out.extend(deserialise(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        if live_only:
            # TTL deletion lags by days: an expired item must not count as present.
            now = epoch(clock.now())
            out = [i for i in out if i.get(C.TTL_ATTRIBUTE, now + 1) > now]
        return out

    def history(self, contact_id: str) -> list[dict[str, Any]]:
        items = self.query_prefix(contact_pk(contact_id), "HIST#")
        return sorted(items, key=lambda i: (i["at"], i.get("entered", ""), i.get("seq", 0)))

    def messages(self, contact_id: str) -> list[dict[str, Any]]:
        """In the order they were sent: time, then the order of writing within one instant."""
        items = self.query_prefix(contact_pk(contact_id), "MSG#")
        return sorted(items, key=lambda i: (i["at"], i.get("entered", "")))

    def activity(self, contact_id: str, since: datetime | None = None) -> list[dict[str, Any]]:
        """The contact's activity, since `since` when given (a day's margin for events dated in other offsets:
        the exact bound is the condition's)."""
        if since is None:
            return self.query_prefix(contact_pk(contact_id), "ACT#")
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#pk = :pk AND #sk BETWEEN :lo AND :hi",
            "ExpressionAttributeNames": {"#pk": C.PK, "#sk": C.SK},
            "ExpressionAttributeValues": serialise(
                {":pk": contact_pk(contact_id), ":lo": f"ACT#{(since - timedelta(days=1)).isoformat()}", ":hi": "ACT$"}
            ),
            "ConsistentRead": True,
        }
        out: list[dict[str, Any]] = []
        now = epoch(clock.now())
        while True:
            page = self.client.query(**kwargs)
            out.extend(i for i in map(deserialise, page.get("Items", [])) if i.get(C.TTL_ATTRIBUTE, now + 1) > now)
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def record_activity(self, contact_id: str, event_id: str, etype: str, data: dict[str, Any], at: datetime) -> None:
        self.put_item(activity_item(contact_id, event_id, etype, data, at))

    def apply_event(self, contact_id: str, etype: str, data: dict[str, Any], at: datetime) -> None:
        """Apply what an outside event says about the contact (a tag added in the shop, a list sign-up)."""
        key = self._key(contact_pk(contact_id), "PROFILE")
        upd: dict[str, Any] | None = None
        if etype in ("tag.added", "tag.removed") and data.get("tag"):
            op = "ADD" if etype == "tag.added" else "DELETE"
            upd = {"UpdateExpression": f"{op} tags :t", "ExpressionAttributeValues": serialise({":t": {data["tag"]}})}
        elif etype in ("list.subscribed", "list.unsubscribed") and data.get("list"):
            name = data["list"]
            if etype == "list.subscribed":
                upd = {"UpdateExpression": "ADD lists :l", "ExpressionAttributeValues": serialise({":l": {name}})}
                self.put_item(
                    {
                        C.PK: contact_pk(contact_id),
                        C.SK: f"LIST#{name}",
                        C.GSI1_PK: f"LIST#{name}",
                        C.GSI1_SK: f"CONTACT#{contact_id}",
                        "at": at.isoformat(),
                    }
                )
            else:
                upd = {"UpdateExpression": "DELETE lists :l", "ExpressionAttributeValues": serialise({":l": {name}})}
                self.delete_item(contact_pk(contact_id), f"LIST#{name}")
        elif etype == "field.changed" and data.get("field"):
            upd = {
                "UpdateExpression": "SET #f.#n = :v",
                "ExpressionAttributeNames": {"#f": "fields", "#n": data["field"]},
                "ExpressionAttributeValues": serialise({":v": data.get("value")}),
            }
        elif (change := consent_change(etype, data)) is not None:
            channel, given = change
            # The maps first (a nested SET needs its map), then the channel's decision and when it was made.
            self.client.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET consent = if_not_exists(consent, :e), consent_at = if_not_exists(consent_at, :e)",
                ExpressionAttributeValues=serialise({":e": {}}),
            )
            upd = {
                "UpdateExpression": "SET consent.#c = :g, consent_at.#c = :at",
                "ExpressionAttributeNames": {"#c": channel},
                "ExpressionAttributeValues": serialise({":g": given, ":at": at.isoformat()}),
            }
        elif etype == "score.changed" and isinstance(data.get("score"), int | float):
            upd = {"UpdateExpression": "SET score = :s", "ExpressionAttributeValues": serialise({":s": data["score"]})}
        if upd is not None:
            self.client.update_item(TableName=self.table, Key=key, **upd)

    def scan_prefix(self, pk_prefix: str) -> list[dict[str, Any]]:
        """Every item whose partition key starts with `pk_prefix` (local runtime and reports only)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "begins_with(#pk, :p)",
            "ExpressionAttributeNames": {"#pk": C.PK},
            "ExpressionAttributeValues": serialise({":p": pk_prefix}),
            "ConsistentRead": True,
        }
        out: list[dict[str, Any]] = []
        while True:
            page = self.client.scan(**kwargs)
            out.extend(deserialise(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    @staticmethod
    def _key(pk: str, sk: str) -> dict[str, Any]:
        return {C.PK: {"S": pk}, C.SK: {"S": sk}}
