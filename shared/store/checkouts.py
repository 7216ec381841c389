"""Checkout state (CHECKOUT#token items of the contact table): the last update of each checkout and its order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from shared import constants as C
from shared.store.contacts import ContactStore, deserialise, epoch, serialise

SK = "CHECKOUT"
# Kept a month past its last update: longer than any idle threshold a trigger may name.
KEEP = timedelta(days=30)


def checkout_pk(token: str) -> str:
    return f"CHECKOUT#{token}"


@dataclass(frozen=True)
class Checkout:
    token: str
    contact_id: str
    version: str  # the update it was last set by (the event's digest): schedules name it
    updated_at: datetime
    cart: dict[str, Any]  # cart_value, currency, products, url as the last update said
    converted_at: datetime | None = None

    @classmethod
    def of(cls, item: dict[str, Any]) -> Checkout:
        converted = item.get("converted_at")
        return cls(
            token=item["token"],
            contact_id=item.get("contact_id", ""),
            version=item.get("version", ""),
            updated_at=datetime.fromtimestamp(item.get("updated_ms", 0) / 1000, UTC),
            cart=item.get("cart") or {},
            converted_at=datetime.fromisoformat(converted) if converted else None,
        )


class CheckoutStore:
    """Conditional writes on checkout items, so a redelivered or out-of-order update changes nothing."""

    def __init__(self, store: ContactStore) -> None:
        self.client = store.client
        self.table = store.table

    def get(self, token: str) -> Checkout | None:
        got = self.client.get_item(TableName=self.table, Key=_key(token), ConsistentRead=True)
        return Checkout.of(deserialise(got["Item"])) if "Item" in got else None

    def observe(
        self, token: str, contact_id: str, version: str, at: datetime, cart: dict[str, Any]
    ) -> tuple[bool, Checkout | None]:
        """Record an update of the checkout at `at`. (False, None) when it changes nothing: the checkout has an
        order, or a later update is recorded. The same update again (a redelivery, or the retry of one that
        stopped before scheduling) applies again. Otherwise (True, what was recorded before, if anything)."""
        item = {
            C.PK: checkout_pk(token),
            C.SK: SK,
            "token": token,
            "contact_id": contact_id,
            "version": version,
            "updated_ms": int(at.timestamp() * 1000),
            "cart": cart,
            C.TTL_ATTRIBUTE: epoch(at + KEEP),
        }
        try:
            got = self.client.put_item(
                TableName=self.table,
                Item=serialise(item),
                ConditionExpression="attribute_not_exists(#pk) OR #v = :v OR "
                "(attribute_not_exists(converted_at) AND updated_ms < :ms)",
                ExpressionAttributeNames={"#pk": C.PK, "#v": "version"},
                ExpressionAttributeValues=serialise({":v": version, ":ms": item["updated_ms"]}),
                ReturnValues="ALL_OLD",
            )
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False, None
            raise
        old = got.get("Attributes")
        return True, Checkout.of(deserialise(old)) if old else None

    def convert(self, token: str, order_id: str, at: datetime) -> Checkout | None:
        """An order was placed for the checkout: noted once (a checkout never seen is created converted, so its
        late update schedules nothing). Returns the checkout as it was before, when it was not converted yet."""
        try:
            got = self.client.update_item(
                TableName=self.table,
                Key=_key(token),
                UpdateExpression="SET converted_at = :at, order_id = :o, #t = :token, #e = if_not_exists(#e, :exp)",
                ConditionExpression="attribute_not_exists(converted_at)",
                ExpressionAttributeNames={"#t": "token", "#e": C.TTL_ATTRIBUTE},
                ExpressionAttributeValues=serialise(
                    {":at": at.isoformat(), ":o": order_id, ":token": token, ":exp": epoch(at + KEEP)}
                ),
                ReturnValues="ALL_OLD",
            )
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        old = got.get("Attributes")
        return Checkout.of(deserialise(old)) if old and "version" in deserialise(old) else None


def _key(token: str) -> dict[str, Any]:
    return {C.PK: {"S": checkout_pk(token)}, C.SK: {"S": SK}}
