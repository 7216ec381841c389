"""DynamoDB item codec: plain Python values to attribute values and back, for every module of the store."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

_ser = TypeSerializer()
_de = TypeDeserializer()


def epoch(dt: datetime) -> int:
    return int(dt.timestamp())


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
