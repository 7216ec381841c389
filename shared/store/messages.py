"""Data access for delivery: message claims and outcomes, the suppression list, reputation counters, coupons."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from shared import constants as C
from shared.store.contacts import contact_pk, deserialise, epoch, serialise

# Message statuses. queued (the step runner's outbox) -> sent (claimed and marked in one write before the provider
# call; the provider's id is attached by its feedback); or skipped / failed / held (marketing paused by the
# reputation guard) / unconfirmed (marked sent, but no provider confirmation came within the confirmation window,
# or the provider call's answer was lost: see claim()). `sending` is the previous release's claim status, still
# accepted by confirm().
QUEUED, SENDING, SENT, SKIPPED, FAILED, HELD, UNCONFIRMED = (
    "queued",
    "sending",
    "sent",
    "skipped",
    "failed",
    "held",
    "unconfirmed",
)
FINAL = (SENT, SKIPPED, FAILED, UNCONFIRMED)


def suppression_pk(channel: str, address: str) -> str:
    return f"SUPPRESS#{channel}#{address.strip().lower()}"


def reputation_pk(configuration_set: str) -> str:
    return f"REPUTATION#{configuration_set}"


REPUTATION_STATE = "STATE"
# The check the sender's claim writes with it: when due, a message still without the provider's id is unconfirmed.
CONFIRM_CHECK = "provider.confirm"
CHECK_INDEX_PK = "CHECK"  # GSI1 partition of engagement checks (email.not_opened / not_clicked), sorted by due time


class Claim(StrEnum):
    CLAIMED = "claimed"  # this attempt owns the send (the message is marked sent)
    DONE = "done"  # the message is no longer queued (claimed by another attempt, or decided): nothing to do
    GONE = "gone"  # the message item does not exist (TTL, or a deleted contact)


@dataclass
class SendContext:
    """What a send decision reads, in one BatchGetItem: the profile, the address's suppression, the guard."""

    profile: dict[str, Any] | None
    suppression: dict[str, Any] | None
    reputation: dict[str, Any] | None


class MessageStore:
    """The only module that reads or writes delivery items in the table."""

    def __init__(self, table_name: str, client: Any) -> None:
        self.table = table_name
        self.client = client

    @staticmethod
    def _key(pk: str, sk: str) -> dict[str, Any]:
        return {C.PK: {"S": pk}, C.SK: {"S": sk}}

    def _msg_key(self, contact_id: str, message_id: str) -> dict[str, Any]:
        return self._key(contact_pk(contact_id), f"MSG#{message_id}")

    # ---- reads -------------------------------------------------------------------------------

    def context(self, contact_id: str | None, channel: str, address: str | None, configuration_set: str) -> SendContext:
        keys: dict[str, dict[str, Any]] = {"reputation": self._key(reputation_pk(configuration_set), REPUTATION_STATE)}
        if contact_id:
            keys["profile"] = self._key(contact_pk(contact_id), "PROFILE")
        if address:
            keys["suppression"] = self._key(suppression_pk(channel, address), "SUPPRESS")
        got = self.client.batch_get_item(
            RequestItems={self.table: {"Keys": list(keys.values()), "ConsistentRead": True}}
        )
        items = [deserialise(i) for i in got.get("Responses", {}).get(self.table, [])]
        # Unprocessed keys happen under throttling: read those one by one rather than decide on missing data.
        for key in got.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", []):
            one = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True)
            if "Item" in one:
                items.append(deserialise(one["Item"]))
        by_key = {(i[C.PK], i[C.SK]): i for i in items}

        def pick(name: str) -> dict[str, Any] | None:
            k = keys.get(name)
            return by_key.get((k[C.PK]["S"], k[C.SK]["S"])) if k else None

        return SendContext(pick("profile"), pick("suppression"), pick("reputation"))

    def get(self, contact_id: str, message_id: str) -> dict[str, Any] | None:
        got = self.client.get_item(TableName=self.table, Key=self._msg_key(contact_id, message_id), ConsistentRead=True)
        return deserialise(got["Item"]) if "Item" in got else None

    # ---- the claim ---------------------------------------------------------------------------

    def claim(
        self,
        contact_id: str,
        message_id: str,
        claim_id: str,
        now: datetime,
        extra_writes: list[dict[str, Any]] | None = None,
    ) -> tuple[Claim, dict[str, Any]]:
        """Claim the message and mark it sent, BEFORE the provider call, in one TransactWriteItems: queued -> sent
        with this attempt's claim id and time, together with `extra_writes` (the reputation counter, the engagement
        checks, the provider-confirmation check). A retried or concurrent attempt finds it sent and does not send
        again. The provider's message id is attached later by its own feedback (confirm). On a failed condition
        the item is read once (a path the happy one never takes) to say whether it exists."""
        mark = {
            "Update": {
                "TableName": self.table,
                "Key": self._msg_key(contact_id, message_id),
                "UpdateExpression": "SET #s = :sent, claim_id = :c, claimed_at = :at, sent_at = :at ADD attempts :one",
                "ConditionExpression": "attribute_exists(#pk) AND #s = :queued",
                "ExpressionAttributeNames": {"#s": "status", "#pk": C.PK},
                "ExpressionAttributeValues": serialise(
                    {":sent": SENT, ":queued": QUEUED, ":c": claim_id, ":at": now.isoformat(), ":one": 1}
                ),
            }
        }
        try:
            self.client.transact_write_items(TransactItems=[mark, *self._tabled(extra_writes or [])])
        except ClientError as err:
            if not _first_condition_failed(err):
                raise
            current = self.get(contact_id, message_id)
            return (Claim.GONE, {}) if current is None else (Claim.DONE, current)
        return Claim.CLAIMED, {}

    def release(
        self,
        contact_id: str,
        message_id: str,
        claim_id: str,
        error: str,
        undo: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Give the claim back after a provider error that certainly sent nothing (sent -> queued, with `undo`:
        the counters and checks the claim wrote), so the stream's retry sends once. One transaction."""
        back = {
            "Update": {
                "TableName": self.table,
                "Key": self._msg_key(contact_id, message_id),
                "UpdateExpression": "SET #s = :queued, last_error = :e REMOVE claim_id, claimed_at, sent_at",
                "ConditionExpression": "#s = :sent AND claim_id = :c",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": serialise({":queued": QUEUED, ":sent": SENT, ":c": claim_id, ":e": error}),
            }
        }
        try:
            self.client.transact_write_items(TransactItems=[back, *self._tabled(undo or [])])
        except ClientError as err:
            if _first_condition_failed(err):
                return False
            raise
        return True

    def _tabled(self, writes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Transaction items with this table's name."""
        return [{kind: {"TableName": self.table, **body}} for w in writes for kind, body in w.items()]

    # ---- outcomes ----------------------------------------------------------------------------

    def outbox_item(
        self, contact_id: str, event_type: str, data: dict[str, Any], at: datetime, event_id: str
    ) -> dict[str, Any]:
        """A transaction write of an outbox event (the router's stream consumer routes EVENT# items)."""
        return {
            "Put": {
                "Item": serialise(
                    {
                        C.PK: f"EVENT#{event_id}",
                        C.SK: "EVENT",
                        "id": event_id,
                        "type": event_type,
                        "contact_id": contact_id,
                        "data": data,
                        "at": at.isoformat(),
                        "status": "pending",
                        C.TTL_ATTRIBUTE: epoch(at + timedelta(days=7)),
                    }
                )
            }
        }

    def outcome(
        self,
        contact_id: str,
        message_id: str,
        status: str,
        reason: str,
        at: datetime,
        *,
        expect: str = QUEUED,
        claim_id: str | None = None,
        history: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        extra_writes: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Set a final (or held) status with why, when the message is still `expect` (and this attempt's claim),
        with a history record the contact's timeline shows and `extra_writes` (a failed send's undo of the
        claim's counters and checks). False when it was not (a redelivery)."""
        values: dict[str, Any] = {":s": status, ":r": reason, ":at": at.isoformat(), ":e": expect}
        cond = "#s = :e"
        if claim_id is not None:
            cond += " AND claim_id = :c"
            values[":c"] = claim_id
        sets = ["#s = :s", "reason = :r", "decided_at = :at"]
        for i, v in enumerate((extra or {}).values()):
            sets.append(f"#x{i} = :x{i}")
            values[f":x{i}"] = v
        update = {
            "Update": {
                "TableName": self.table,
                "Key": self._msg_key(contact_id, message_id),
                "UpdateExpression": "SET " + ", ".join(sets),
                "ConditionExpression": cond,
                "ExpressionAttributeNames": {"#s": "status", **{f"#x{i}": k for i, k in enumerate(extra or {})}},
                "ExpressionAttributeValues": serialise(values),
            }
        }
        items = [update]
        if history is not None:
            items.append(
                {"Put": {"TableName": self.table, "Item": serialise({C.PK: contact_pk(contact_id), **history})}}
            )
        items += self._tabled(extra_writes or [])
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as err:
            if err.response["Error"]["Code"] == "TransactionCanceledException":
                return False
            raise
        return True

    def confirm(self, contact_id: str, message_id: str, provider_id: str, at: datetime) -> dict[str, Any] | None:
        """The provider's own feedback (SES's Send event, an SMS receipt) names our message: its provider id is
        attached, once (a message marked unconfirmed becomes sent). The message as it is now, or None when the id
        was attached before (a later receipt, EventBridge's retry) or the message is unknown."""
        try:
            got = self.client.update_item(
                TableName=self.table,
                Key=self._msg_key(contact_id, message_id),
                UpdateExpression="SET #s = :sent, provider_id = :p, confirmed_at = :at, "
                "sent_at = if_not_exists(sent_at, :at) REMOVE reason",
                ConditionExpression="attribute_not_exists(provider_id) AND #s IN (:sent, :sending, :unconfirmed)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=serialise(
                    {
                        ":sent": SENT,
                        ":sending": SENDING,
                        ":unconfirmed": UNCONFIRMED,
                        ":p": provider_id,
                        ":at": at.isoformat(),
                    }
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return deserialise(got["Attributes"])

    def unconfirm(self, contact_id: str, message_id: str, why: str, at: datetime, history: dict[str, Any]) -> bool:
        """A message marked sent whose provider never confirmed it within the window: unconfirmed, with why and a
        history record. False when the provider id came meanwhile (or the message is gone)."""
        mark = {
            "Update": {
                "TableName": self.table,
                "Key": self._msg_key(contact_id, message_id),
                "UpdateExpression": "SET #s = :u, reason = :r, decided_at = :at",
                "ConditionExpression": "#s = :sent AND attribute_not_exists(provider_id)",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": serialise(
                    {":u": UNCONFIRMED, ":sent": SENT, ":r": why, ":at": at.isoformat()}
                ),
            }
        }
        put = {"Put": {"TableName": self.table, "Item": serialise({C.PK: contact_pk(contact_id), **history})}}
        try:
            self.client.transact_write_items(TransactItems=[mark, put])
        except ClientError as err:
            if _first_condition_failed(err):
                return False
            raise
        return True

    def _update_if(self, contact_id: str, message_id: str, expr: str, cond: str, values: dict[str, Any]) -> bool:
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._msg_key(contact_id, message_id),
                UpdateExpression=expr,
                ConditionExpression=cond,
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=serialise(values),
            )
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def held(self, configuration_set: str) -> list[dict[str, Any]]:
        """Marketing messages the reputation guard held, oldest first (GSI1 HELD#<configuration set>)."""
        keys = self._index(f"HELD#{configuration_set}")
        return [m for m in (self._get_raw(k) for k in keys) if m and m.get("status") == HELD]

    def requeue(self, contact_id: str, message_id: str) -> bool:
        """held -> queued: the stream's MODIFY hands it to the sender again."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._msg_key(contact_id, message_id),
                UpdateExpression="SET #s = :q REMOVE #g1, #g2",
                ConditionExpression="#s = :h",
                ExpressionAttributeNames={"#s": "status", "#g1": C.GSI1_PK, "#g2": C.GSI1_SK},
                ExpressionAttributeValues=serialise({":q": QUEUED, ":h": HELD}),
            )
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # ---- suppression -------------------------------------------------------------------------

    def suppress(self, channel: str, address: str, reason: str, at: datetime, message_id: str) -> bool:
        """Put the address on the suppression list (a hard bounce, a complaint); the first reason stays."""
        try:
            self.client.put_item(
                TableName=self.table,
                Item=serialise(
                    {
                        C.PK: suppression_pk(channel, address),
                        C.SK: "SUPPRESS",
                        "reason": reason,
                        "at": at.isoformat(),
                        "message_id": message_id,
                    }
                ),
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": C.PK},
            )
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # ---- engagement checks (email.not_opened / email.not_clicked) ----------------------------

    def check_item(self, contact_id: str, message_id: str, event_type: str, due: datetime, after: str) -> dict:
        """A transaction write of a check due at `due`: GSI1 CHECK / due time, so due checks are one Query."""
        return {
            "Put": {
                "Item": serialise(
                    {
                        C.PK: contact_pk(contact_id),
                        C.SK: f"CHECK#{message_id}#{event_type}",
                        C.GSI1_PK: CHECK_INDEX_PK,
                        C.GSI1_SK: f"{due.isoformat()}#{contact_id}#{message_id}#{event_type}",
                        "contact_id": contact_id,
                        "message_id": message_id,
                        "type": event_type,
                        "due": due.isoformat(),
                        "after": after,
                        C.TTL_ATTRIBUTE: epoch(due + timedelta(days=7)),
                    }
                )
            }
        }

    def check_delete(self, contact_id: str, message_id: str, event_type: str) -> dict[str, Any]:
        """A transaction write removing a check (a failed send's undo)."""
        return {"Delete": {"Key": self._key(contact_pk(contact_id), f"CHECK#{message_id}#{event_type}")}}

    def due_checks(self, now: datetime, limit: int = 100) -> list[dict[str, Any]]:
        keys = self._index(CHECK_INDEX_PK, below=f"{now.isoformat()}#~", limit=limit)
        return [c for c in (self._get_raw(k) for k in keys) if c]

    def take_check(self, check: dict[str, Any]) -> bool:
        """Delete a check once; False when another attempt took it."""
        try:
            self.client.delete_item(
                TableName=self.table,
                Key=self._key(check[C.PK], check[C.SK]),
                ConditionExpression="attribute_exists(#pk)",
                ExpressionAttributeNames={"#pk": C.PK},
            )
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _index(self, gsi_pk: str, below: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        cond = f"{C.GSI1_PK} = :p" + (f" AND {C.GSI1_SK} <= :b" if below else "")
        values: dict[str, Any] = {":p": gsi_pk, **({":b": below} if below else {})}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": C.GSI1,
            "KeyConditionExpression": cond,
            "ExpressionAttributeValues": serialise(values),
        }
        if limit:
            kwargs["Limit"] = limit
        page = self.client.query(**kwargs)
        return [{C.PK: i[C.PK], C.SK: i[C.SK]} for i in page.get("Items", [])]

    def _get_raw(self, key: dict[str, Any]) -> dict[str, Any] | None:
        got = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True)
        return deserialise(got["Item"]) if "Item" in got else None

    # ---- reputation --------------------------------------------------------------------------

    def count(self, configuration_set: str, at: datetime, counts: dict[str, int], keep: timedelta) -> dict[str, Any]:
        """A transaction write adding to the hour's counters of a configuration set (sends, bounces...)."""
        bucket = at.strftime("%Y-%m-%dT%H")
        names = {f"#c{i}": k for i, k in enumerate(counts)}
        values = {f":c{i}": v for i, v in enumerate(counts.values())}
        return {
            "Update": {
                "Key": self._key(reputation_pk(configuration_set), f"COUNT#{bucket}"),
                "UpdateExpression": "SET #ttl = if_not_exists(#ttl, :ttl) ADD "
                + ", ".join(f"#c{i} :c{i}" for i in range(len(counts))),
                "ExpressionAttributeNames": {**names, "#ttl": C.TTL_ATTRIBUTE},
                "ExpressionAttributeValues": serialise({**values, ":ttl": epoch(at + keep)}),
            }
        }

    def add_counts(self, configuration_set: str, at: datetime, counts: dict[str, int], keep: timedelta) -> None:
        w = self.count(configuration_set, at, counts, keep)["Update"]
        self.client.update_item(TableName=self.table, **w)

    def window(self, configuration_set: str, since: datetime) -> dict[str, int]:
        """Sums of the hourly counters from `since` (one Query of at most a window's buckets)."""
        page = self.client.query(
            TableName=self.table,
            KeyConditionExpression="#pk = :pk AND #sk BETWEEN :a AND :b",
            ExpressionAttributeNames={"#pk": C.PK, "#sk": C.SK},
            ExpressionAttributeValues=serialise(
                {":pk": reputation_pk(configuration_set), ":a": f"COUNT#{since:%Y-%m-%dT%H}", ":b": "COUNT#~"}
            ),
            ConsistentRead=True,
        )
        totals: dict[str, int] = {}
        for item in (deserialise(i) for i in page.get("Items", [])):
            for k, v in item.items():
                if isinstance(v, int) and k not in (C.TTL_ATTRIBUTE,):
                    totals[k] = totals.get(k, 0) + v
        return totals

    def pause(self, configuration_set: str, why: str, at: datetime, rates: dict[str, float]) -> bool:
        """Pause marketing sends, with an audit record; False when already paused (so the team is alerted once
        per pause)."""
        update = {
            "Update": {
                "TableName": self.table,
                "Key": self._key(reputation_pk(configuration_set), REPUTATION_STATE),
                "UpdateExpression": "SET paused = :t, why = :w, paused_at = :at, rates = :r",
                "ConditionExpression": "attribute_not_exists(paused) OR paused = :f",
                "ExpressionAttributeValues": serialise(
                    {":t": True, ":f": False, ":w": why, ":at": at.isoformat(), ":r": rates}
                ),
            }
        }
        audit = self._audit_put(configuration_set, at, "paused", {"why": why, "rates": rates, "by": "reputation guard"})
        try:
            self.client.transact_write_items(TransactItems=[update, audit])
        except ClientError as err:
            if _first_condition_failed(err):
                return False
            raise
        return True

    def resume(
        self,
        configuration_set: str,
        at: datetime,
        by: str,
        reason: str = "",
        audit: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A person lifts the pause: the state cleared (the pause's why and time kept as last_*), with an audit
        record of who, why and what was lifted, in one transaction. The state as it was before."""
        before = self.reputation_state(configuration_set) or {}
        update = {
            "Update": {
                "TableName": self.table,
                "Key": self._key(reputation_pk(configuration_set), REPUTATION_STATE),
                "UpdateExpression": "SET paused = :f, resumed_at = :at, resumed_by = :b, resume_reason = :r",
                "ExpressionAttributeValues": serialise({":f": False, ":at": at.isoformat(), ":b": by, ":r": reason}),
            }
        }
        lifted = {k: before[k] for k in ("why", "paused_at", "rates") if k in before and before.get("paused")}
        record = {"by": by, "reason": reason, "lifted": lifted, **(audit or {})}
        self.client.transact_write_items(
            TransactItems=[update, self._audit_put(configuration_set, at, "resumed", record)]
        )
        return before

    def reputation_state(self, configuration_set: str) -> dict[str, Any] | None:
        return self._get_raw(self._key(reputation_pk(configuration_set), REPUTATION_STATE))

    def audit_trail(self, configuration_set: str, limit: int = 20) -> list[dict[str, Any]]:
        """The guard's pauses and the resumes people made, newest first (one Query)."""
        page = self.client.query(
            TableName=self.table,
            KeyConditionExpression="#pk = :pk AND begins_with(#sk, :a)",
            ExpressionAttributeNames={"#pk": C.PK, "#sk": C.SK},
            ExpressionAttributeValues=serialise({":pk": reputation_pk(configuration_set), ":a": "AUDIT#"}),
            ScanIndexForward=False,
            Limit=limit,
        )
        return [deserialise(i) for i in page.get("Items", [])]

    def held_count(self, configuration_set: str) -> int:
        """How many marketing messages the guard holds (GSI1 HELD#<configuration set>, keys only)."""
        return len(self._index(f"HELD#{configuration_set}"))

    def _audit_put(self, configuration_set: str, at: datetime, action: str, fields: dict[str, Any]) -> dict[str, Any]:
        item = {
            C.PK: reputation_pk(configuration_set),
            C.SK: f"AUDIT#{at.isoformat()}#{action}",
            "action": action,
            "at": at.isoformat(),
            **fields,
        }
        return {"Put": {"TableName": self.table, "Item": serialise(item)}}

    # ---- coupons -----------------------------------------------------------------------------

    def use_coupon(self, code: str, contact_id: str | None, order_id: str | None, at: datetime) -> str:
        """Mark a generated coupon used, once: 'used' the first time (and for a redelivery of the same order),
        else 'unknown', 'expired' or 'already_used'."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._key(f"COUPON#{code}", "COUPON"),
                UpdateExpression="SET used_at = :at, used_order = :o, used_by = :c",
                ConditionExpression="attribute_exists(#pk) AND attribute_not_exists(used_at) AND valid_until >= :at",
                ExpressionAttributeNames={"#pk": C.PK},
                ExpressionAttributeValues=serialise(
                    {":at": at.isoformat(), ":o": order_id or "", ":c": contact_id or ""}
                ),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as err:
            if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old = deserialise(err.response.get("Item") or {})
            if not old:
                return "unknown"
            if old.get("used_at"):
                same = bool(order_id) and old.get("used_order") == order_id
                return "used" if same else "already_used"
            return "expired"
        return "used"


KINDS = {"email": "send_email", "sms": "send_sms", "alert": "notify"}


def history_record(msg: dict[str, Any], status: str, why: str, now: datetime) -> dict[str, Any]:
    """The history record of a message's outcome at send time, ordered after the step that queued it."""
    entered = str(msg.get("entered", "")).split("|")[0]
    return {
        C.SK: f"HIST#MSG#{msg['message_id']}#{status}",
        "contact_id": str(msg[C.PK]).removeprefix("CONTACT#"),
        "workflow": msg.get("workflow", ""),
        "step": msg.get("step", ""),
        "kind": KINDS.get(str(msg.get("channel")), "send"),
        "outcome": status,
        "why": why,
        "at": now.isoformat(),
        "seq": 0,
        "entered": f"{entered}|{time.time_ns():020d}",
        "message_id": msg["message_id"],
        C.TTL_ATTRIBUTE: msg.get(C.TTL_ATTRIBUTE) or epoch(now + timedelta(days=30)),
    }


def _first_condition_failed(err: ClientError) -> bool:
    """A transaction cancelled because its first item's condition failed (the message was not as expected)."""
    if err.response["Error"]["Code"] != "TransactionCanceledException":
        return False
    reasons = err.response.get("CancellationReasons") or []
    return bool(reasons) and reasons[0].get("Code") == "ConditionalCheckFailed"
