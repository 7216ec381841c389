"""The broadcast state machine: a Distributed Map over a list snapshot in S3, one Lambda Task per batch of contacts."""

from __future__ import annotations

from typing import Any

# StartExecution refills at 300/s (us-east-1, us-west-2, eu-west-1). The broadcast aims at 95% of it, leaving
# the rest (and the 1,300 burst bucket) to the router's own entries; throttles beyond that are retried.
START_EXECUTION_QUOTA = 300
QUOTA_SHARE = 0.95
BATCH_SIZE = 100  # contacts per Map item: 10,000 items per million contacts, a 3-5 kB child input each
# Batches at once; each paces itself to its share of the quota. A contact costs a batch about 5 requests in a row
# (claim, StartExecution, confirm, opening records: ~60 ms in AWS, bench/broadcast.py), so one batch manages ~16
# starts/s: 40 batches of 7.1/s each keep 285/s with room for requests up to ~140 ms. The fan-out is the Map's
# (its child limit is 10,000 at once), never threads inside a batch.
MAX_CONCURRENCY = 40
RATE_PER_BATCH = START_EXECUTION_QUOTA * QUOTA_SHARE / MAX_CONCURRENCY  # StartExecution calls/s per batch
MAP_STATE = "Contacts"
BATCH_STATE = "EnterBatch"
KIND_BATCH = "broadcast_batch"
THROTTLED = "Throttled"  # the typed error a batch raises when StartExecution throttles


def broadcast_definition(function_arn: str, *, max_concurrency: int = MAX_CONCURRENCY) -> dict[str, Any]:
    """ASL (JSONPath). Input: {broadcast_id, workflow, at, list, bucket, key, rate}. The snapshot at bucket/key is a
    JSON array of {batch, contacts}: batched when written, since moto's interpreter (5.2.5) has no ItemBatcher
    and no JSONL input type, and a pre-batched file reads the same in AWS."""
    return {
        "Comment": "Fixed-date broadcast: every contact of the list snapshot enters the workflow once",
        "StartAt": MAP_STATE,
        "States": {
            MAP_STATE: {
                "Type": "Map",
                "ItemReader": {
                    "Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "JSON"},
                    "Parameters": {"Bucket.$": "$.bucket", "Key.$": "$.key"},
                },
                "ItemSelector": {
                    "kind": KIND_BATCH,
                    "broadcast_id.$": "$.broadcast_id",
                    "workflow.$": "$.workflow",
                    "at.$": "$.at",
                    "list.$": "$.list",
                    "rate.$": "$.rate",
                    "batch.$": "$$.Map.Item.Value.batch",
                    "contacts.$": "$$.Map.Item.Value.contacts",
                },
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": BATCH_STATE,
                    "States": {
                        BATCH_STATE: {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::lambda:invoke",
                            "Parameters": {"FunctionName": function_arn, "Payload.$": "$"},
                            "ResultSelector": {"entered.$": "$.Payload.entered", "skipped.$": "$.Payload.skipped"},
                            "Retry": [
                                {
                                    # Throttled: StartExecution over its quota; the Lambda ones: the function's own.
                                    "ErrorEquals": [
                                        THROTTLED,
                                        "Lambda.TooManyRequestsException",
                                        "Lambda.ServiceException",
                                        "Lambda.SdkClientException",
                                    ],
                                    "IntervalSeconds": 2,
                                    "BackoffRate": 2.0,
                                    "MaxAttempts": 8,
                                    "MaxDelaySeconds": 60,
                                    "JitterStrategy": "FULL",
                                },
                                {"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 5, "MaxAttempts": 2},
                            ],
                            "End": True,
                        }
                    },
                },
                "MaxConcurrency": max_concurrency,
                # No ToleratedFailure*: its default of 0 means a batch that still fails fails the broadcast; it is
                # resumed (a new execution over the same snapshot), skipping what was entered already.
                "ResultPath": None,
                "End": True,
            }
        },
    }
