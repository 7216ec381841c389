"""The contact store: one DynamoDB table for contacts, identities, memberships, history, waits and enrolments."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from shared import clock
from shared import constants as C
from shared.events import ContactRef, stable_hash

_ser = TypeSerializer()
_de = TypeDeserializer()


class ConditionFailed(Exception):
    """A write of a step's transaction found the table not as the step expected (say, its contact deleted)."""


class ContactNotFound(Exception):
    """The contact a step names does not exist (deleted, or a bad id in the execution input)."""


def contact_pk(contact_id: str) -> str:
    return f"CONTACT#{contact_id}"


def epoch(dt: datetime) -> int:
    return int(dt.timestamp())


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


def _to_ddb(value: Any) -> Any:
    # DynamoDB wants Decimal, never float; string sets stay sets (tags, lists), everything else plain JSON.
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, set | frozenset):
        return {str(v) for v in value}
    if isinstance(value, dict):
        return {str(k): _to_ddb(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_ddb(v) for v in value]
    if isinstance(value, str | int | bool | Decimal) or value is None:
        return value
    return json.loads(json.dumps(value, default=str))


def serialise(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(_to_ddb(v)) for k, v in item.items() if v is not None}


def deserialise(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(_de.deserialize(v)) for k, v in item.items()}


def _plain(v: Any) -> Any:
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, set):
        return sorted(_plain(x) for x in v)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


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
        }


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
        if ref.contact_id:
            return ref.contact_id
        for kind, value in self._identities(ref):
            got = self.client.get_item(TableName=self.table, Key=self._key(f"IDENT#{kind}#{value}", "IDENT"))
            if "Item" in got:
                return str(deserialise(got["Item"])["contact_id"])
        return None

    @staticmethod
    def _identities(ref: ContactRef) -> list[tuple[str, str]]:
        out = []
        if ref.email:
            out.append(("email", ref.email))
        if ref.phone:
            out.append(("phone", ref.phone))
        if ref.external_id:
            out.append(("ext", ref.external_id))
        return out

    def upsert(self, ref: ContactRef) -> str:
        """The contact's id, creating the contact on first sight. Redelivery finds the same contact."""
        return self.upsert_with_changes(ref)[0]

    def upsert_with_changes(self, ref: ContactRef) -> tuple[str, dict[str, tuple[Any, Any]]]:
        """`upsert`, and the custom fields the event changed: name -> (value, previous), previous None for a
        field set for the first time. A redelivery changes nothing, so it reports nothing."""
        contact_id = self.resolve(ref)
        identities = self._identities(ref)
        if contact_id is None:
            first_kind, first_value = identities[0]
            contact_id = "c-" + stable_hash(first_kind, first_value)
        now = clock.now().isoformat()
        names = {"#f": "fields"}
        sets = [
            "contact_id = :id",
            "updated_at = :now",
            "created_at = if_not_exists(created_at, :now)",
            "#f = if_not_exists(#f, :empty)",
            "campaigns = if_not_exists(campaigns, :empty)",
            "stages = if_not_exists(stages, :empty)",
            "score = if_not_exists(score, :zero)",
        ]
        values: dict[str, Any] = {":id": contact_id, ":now": now, ":empty": {}, ":zero": 0}
        for attr in ("email", "phone", "timezone"):
            v = getattr(ref, attr)
            if v:
                sets.append(f"{attr} = :{attr}")
                values[f":{attr}"] = v
        extra = dict(ref.fields)
        if ref.first_name:
            extra["first_name"] = ref.first_name
        if ref.last_name:
            extra["last_name"] = ref.last_name
        for i, (k, v) in enumerate(sorted(extra.items())):
            names[f"#x{i}"] = k
            values[f":x{i}"] = v
        self.client.update_item(
            TableName=self.table,
            Key=self._key(contact_pk(contact_id), "PROFILE"),
            UpdateExpression="SET " + ", ".join(sets),
            ExpressionAttributeNames={"#f": "fields"},
            ExpressionAttributeValues=serialise({k: v for k, v in values.items() if not k.startswith(":x")}),
        )
        changes: dict[str, tuple[Any, Any]] = {}
        if extra:
            # Custom fields need the map to exist first; a second update keeps the first one simple.
            old = self.client.update_item(
                TableName=self.table,
                Key=self._key(contact_pk(contact_id), "PROFILE"),
                UpdateExpression="SET " + ", ".join(f"#f.#x{i} = :x{i}" for i in range(len(extra))),
                ExpressionAttributeNames={k: v for k, v in names.items()},
                ExpressionAttributeValues=serialise({k: v for k, v in values.items() if k.startswith(":x")}),
                ReturnValues="ALL_OLD",  # the whole profile as it was: small, and read the same everywhere
            )
            before = deserialise(old.get("Attributes", {})).get("fields", {})
            for k, v in sorted(extra.items()):
                stored = deserialise(serialise({"v": v}))["v"]  # as DynamoDB gives it back (Decimals...)
                if before.get(k) != stored:
                    changes[k] = (v, before.get(k))
        for kind, value in identities:
            self.client.put_item(
                TableName=self.table,
                Item=serialise({C.PK: f"IDENT#{kind}#{value}", C.SK: "IDENT", "contact_id": contact_id}),
            )
        return contact_id, changes

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
        """
        hist = {C.PK: contact_pk(contact_id), **history}
        guarded = {
            "Put": {
                "Item": serialise(hist),
                "ConditionExpression": "attribute_not_exists(#pk)",
                "ExpressionAttributeNames": {"#pk": C.PK},
            }
        }
        failed = self._transact([guarded, *writes])
        if failed is None:
            return True
        if failed and failed[0] == 0:
            return False
        raise ConditionFailed(f"step record {history.get(C.SK)}: a condition of write(s) {failed} failed")

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

    def activity(self, contact_id: str) -> list[dict[str, Any]]:
        return self.query_prefix(contact_pk(contact_id), "ACT#")

    def record_activity(self, contact_id: str, event_id: str, etype: str, data: dict[str, Any], at: datetime) -> None:
        self.put_item(
            {
                C.PK: contact_pk(contact_id),
                C.SK: f"ACT#{at.isoformat()}#{event_id}",
                "type": etype,
                "data": data,
                "at": at.isoformat(),
                C.TTL_ATTRIBUTE: epoch(at + timedelta(days=90)),
            }
        )

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
