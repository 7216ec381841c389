"""Broadcast storage: list snapshots in S3 and the executions of the broadcast state machine."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError


class BroadcastStore:
    """S3 (the snapshot a Distributed Map reads) and Step Functions (the broadcast machine's executions)."""

    def __init__(self, s3: Any, sfn: Any, bucket: str, machine_arn: str) -> None:
        self.s3 = s3
        self.sfn = sfn
        self.bucket = bucket
        self.machine_arn = machine_arn

    def snapshot_exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if err.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def write_snapshot(self, key: str, batches: list[dict[str, Any]]) -> None:
        body = json.dumps(batches, separators=(",", ":")).encode()
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")

    def read_snapshot(self, key: str) -> list[dict[str, Any]]:
        return list(json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()))

    def start(self, name: str, run_input: dict[str, Any]) -> tuple[str, bool]:
        """Start the broadcast execution `name`; (its ARN, False) when one of that name exists already."""
        try:
            got = self.sfn.start_execution(
                stateMachineArn=self.machine_arn, name=name, input=json.dumps(run_input, sort_keys=True)
            )
        except ClientError as err:
            if err.response["Error"]["Code"] != "ExecutionAlreadyExists":
                raise
            parts = self.machine_arn.split(":")
            return ":".join([*parts[:5], "execution", parts[6], name]), False
        return str(got["executionArn"]), True

    def status(self, execution_arn: str) -> str:
        return str(self.sfn.describe_execution(executionArn=execution_arn)["status"])
