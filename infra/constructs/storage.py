"""The contact store: the single DynamoDB table of shared/store/contacts.py, declared from its own definition."""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from shared import constants as C
from shared.store.contacts import table_definition

_TYPES = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER, "B": dynamodb.AttributeType.BINARY}
_PROJECTIONS = {
    "KEYS_ONLY": dynamodb.ProjectionType.KEYS_ONLY,
    "ALL": dynamodb.ProjectionType.ALL,
    "INCLUDE": dynamodb.ProjectionType.INCLUDE,
}


def _keys(schema: list[dict[str, str]], types: dict[str, str]) -> tuple[dynamodb.Attribute, dynamodb.Attribute | None]:
    """(partition key, sort key) of a KeySchema."""
    attrs = {
        k["KeyType"]: dynamodb.Attribute(name=k["AttributeName"], type=_TYPES[types[k["AttributeName"]]])
        for k in schema
    }
    return attrs["HASH"], attrs.get("RANGE")


class Storage(Construct):
    """On-demand, point-in-time recovery, AWS-managed encryption, TTL on `expires_at` (the history's month) and a
    stream of old and new images for the contact-change triggers. Retained on stack deletion: it holds contacts."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        spec: dict[str, Any] = table_definition("unused")  # the local stack creates its table from the same spec
        types = {a["AttributeName"]: a["AttributeType"] for a in spec["AttributeDefinitions"]}
        stream = spec["StreamSpecification"]
        partition, sort = _keys(spec["KeySchema"], types)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=partition,
            sort_key=sort,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=C.TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            stream=dynamodb.StreamViewType[stream["StreamViewType"]] if stream["StreamEnabled"] else None,
            removal_policy=RemovalPolicy.RETAIN,
            deletion_protection=True,
        )
        for index in spec.get("GlobalSecondaryIndexes", []):
            partition, sort = _keys(index["KeySchema"], types)
            self.table.add_global_secondary_index(
                index_name=index["IndexName"],
                partition_key=partition,
                sort_key=sort,
                projection_type=_PROJECTIONS[index["Projection"]["ProjectionType"]],
            )
