"""Data access for the operating commands (history, stats, diff, erase): whole contact partitions, the run index
on GSI1, batched deletes, execution stops, archive objects and CloudWatch metrics. No other ops module calls AWS."""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from shared import clock
from shared import constants as C
from shared.events import ContactRef
from shared.store.archive import DEAD_LETTERS_PREFIX, DELIVERIES_PREFIX
from shared.store.contacts import ContactStore, contact_pk, deserialise, epoch, serialise
from shared.store.run_index import (
    FUNNEL_PREFIX,
    RUN_INDEX_PREFIX,
    FunnelEntry,
    IndexedRun,
    index_pks,
    parse_funnel_sk,
    parse_run_sk,
    run_index_pk,
    run_index_sk,
)

# The run index and the funnel index (GSI1, KEYS_ONLY; key formats in shared/store/run_index.py): a workflow's
# enrolments by status and current step, and its entries, step records and message events by time, are bounded
# Query pages of the index, never a Scan of the table and never one Query per contact: each read is one key range on
# each of the workflow's shard keys and its unsharded key (`index_pks`), merged in sort-key order.
__all__ = [
    "RUN_INDEX_PREFIX",
    "FunnelEntry",
    "IndexedRun",
    "parse_run_sk",
    "run_index_pk",
    "run_index_sk",
]


class BadContactReference(ValueError):
    """The CONTACT argument is not an email, phone, external id or contact id that can be looked up."""


def contact_reference(text: str) -> ContactRef:
    """What a user typed as CONTACT, as the identity it names: an email (has @), a phone (starts with + or 00),
    an external id (provider:id), else a contact id."""
    value = text.strip()
    if not value:
        raise BadContactReference("CONTACT: empty; give an email, a phone (+E.164), provider:id or a contact id")
    try:
        if "@" in value:
            return ContactRef(email=value)
        if value.startswith("+") or value.startswith("00"):
            return ContactRef(phone=value)
        if ":" in value:
            return ContactRef(external_id=value)
    except ValueError as err:
        raise BadContactReference(f"CONTACT: {err}") from None
    return ContactRef(contact_id=value)


@dataclass
class Partition:
    """Every item of one contact's partition, by kind (the sort-key prefix), read in one paginated Query."""

    contact_id: str
    items: list[dict[str, Any]] = field(default_factory=list)
    pages: int = 0

    def of(self, prefix: str) -> list[dict[str, Any]]:
        return [i for i in self.items if str(i[C.SK]).startswith(prefix)]

    @property
    def profile(self) -> dict[str, Any] | None:
        return next((i for i in self.items if i[C.SK] == "PROFILE"), None)


def live(item: dict[str, Any], now: int) -> bool:
    """Not past its expires_at (DynamoDB's TTL deletes only within days of it)."""
    return int(item.get(C.TTL_ATTRIBUTE, now + 1)) > now


class OperationsStore:
    """The operating commands' reads and writes; `store` is the ContactStore over the same table and client."""

    def __init__(
        self, store: ContactStore, *, sfn: Any = None, s3: Any = None, bucket: str | None = None, workers: int = 8
    ) -> None:
        self.store = store
        self.workers = workers  # partition Queries in flight at once (boto3 clients are thread-safe)
        self.index_pages = 0  # GSI1 Query pages read (the commands report it)
        self.client = store.client
        self.table = store.table
        self.sfn = sfn
        self.s3 = s3
        self.bucket = bucket

    # ---- contacts -----------------------------------------------------------------------------

    def find_contact(self, text: str) -> str | None:
        """The contact id CONTACT names (through its IDENT# item), None when nobody has that identity. A bare
        contact id counts only if its profile exists."""
        ref = contact_reference(text)
        if ref.contact_id:
            return ref.contact_id if self.store.get_item(contact_pk(ref.contact_id), "PROFILE") else None
        return self.store.resolve(ref)

    def partition(self, contact_id: str, *, workflow: str | None = None) -> Partition:
        """Every item under CONTACT#<id> (expired ones included: the caller decides), one Query, paginated.
        With `workflow`, DynamoDB filters to that workflow's items (their `workflow`, or an event's data.workflow)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": C.PK},
            "ExpressionAttributeValues": serialise({":pk": contact_pk(contact_id)}),
            "ConsistentRead": True,
        }
        if workflow is not None:
            kwargs["FilterExpression"] = "#wf = :wf OR #d.#wf = :wf"
            kwargs["ExpressionAttributeNames"] |= {"#wf": "workflow", "#d": "data"}
            kwargs["ExpressionAttributeValues"] |= serialise({":wf": workflow})
        out = Partition(contact_id)
        while True:
            page = self.client.query(**kwargs)
            out.pages += 1
            out.items.extend(deserialise(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def partitions(self, contact_ids: Iterable[str], *, workflow: str | None = None) -> Iterator[Partition]:
        """`partition` of each contact, in order, `workers` Queries at a time (each is one round trip: run one
        after another, 10,000 contacts would take 10,000 latencies)."""
        if self.workers <= 1:
            yield from (self.partition(c, workflow=workflow) for c in contact_ids)
            return
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            yield from pool.map(lambda c: self.partition(c, workflow=workflow), contact_ids)

    # ---- the run index ------------------------------------------------------------------------

    def runs(self, workflow: str, *, status: str | None = None, state: str | None = None) -> Iterator[IndexedRun]:
        """The workflow's enrolments from GSI1 (keys only), of one status when given (and, with it, one state of
        the current step: waiting, held, ...), each with its current step as the step runner last recorded it."""
        prefix = f"{status}#{state + '#' if state else ''}" if status is not None else None
        for sk in self._sharded_keys(RUN_INDEX_PREFIX, workflow, prefix=prefix):
            yield parse_run_sk(sk)

    def funnel(self, workflow: str, since: datetime) -> Iterator[FunnelEntry]:
        """The workflow's entries, step records and message events since `since`, from the funnel index: one key
        range of GSI1 on each shard (their keys begin with their time), paginated, merged in time order."""
        for sk in self._sharded_keys(FUNNEL_PREFIX, workflow, low=since.isoformat()):
            yield parse_funnel_sk(sk)

    def _sharded_keys(
        self, family: str, workflow: str, *, prefix: str | None = None, low: str | None = None
    ) -> Iterator[str]:
        """The sort keys of one key range over all the workflow's index keys, in sort-key order as one partition's
        Query gave them (each shard's pages come sorted: a merge, read page by page)."""
        streams = [self._index_keys(pk, prefix=prefix, low=low) for pk in index_pks(family, workflow)]
        yield from heapq.merge(*streams)

    def _index_keys(self, pk: str, *, prefix: str | None = None, low: str | None = None) -> Iterator[str]:
        key = "#g = :g"
        values: dict[str, Any] = {":g": pk}
        if prefix is not None:
            key += " AND begins_with(#s, :p)"
            values[":p"] = prefix
        elif low is not None:
            key += " AND #s >= :lo"
            values[":lo"] = low
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": C.GSI1,
            "KeyConditionExpression": key,
            "ExpressionAttributeNames": {"#g": C.GSI1_PK, **({"#s": C.GSI1_SK} if len(values) > 1 else {})},
            "ExpressionAttributeValues": serialise(values),
        }
        while True:
            page = self.client.query(**kwargs)
            self.index_pages += 1
            for raw in page.get("Items", []):
                yield str(raw[C.GSI1_SK]["S"])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def enrolments(self, workflow: str, contact_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The ENROLL#<workflow> items of some contacts (BatchGetItem, 100 keys a request), by contact id."""
        got = self.store.batch_get([(contact_pk(c), f"ENROLL#{workflow}") for c in contact_ids])
        return {pk.removeprefix("CONTACT#"): item for (pk, _), item in got.items()}

    def split_stats(self, workflow: str, step: str) -> dict[str, Any] | None:
        return self.store.get_item(f"SPLIT#{workflow}#{step}", "STATS")

    # ---- erasure ------------------------------------------------------------------------------

    def delete_keys(self, keys: list[tuple[str, str]]) -> int:
        """Delete items by (pk, sk): BatchWriteItem, 25 at a time, unprocessed ones retried. Returns the count."""
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 25):
            request: dict[str, Any] = {
                self.table: [
                    {"DeleteRequest": {"Key": {C.PK: {"S": pk}, C.SK: {"S": sk}}}} for pk, sk in unique[i : i + 25]
                ]
            }
            while request:
                got = self.client.batch_write_item(RequestItems=request)
                request = got.get("UnprocessedItems") or {}
        return len(unique)

    def get_items(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        return self.store.batch_get(keys)

    def stop_execution(self, execution_arn: str, cause: str) -> bool:
        """Stop a run if it is still running; False when it had ended or never existed."""
        try:
            if self.sfn.describe_execution(executionArn=execution_arn)["status"] != "RUNNING":
                return False
            self.sfn.stop_execution(executionArn=execution_arn, error="Erased", cause=cause)
        except ClientError as err:
            if err.response["Error"]["Code"] in ("ExecutionDoesNotExist", "InvalidArn"):
                return False
            raise
        return True

    def archived_naming(self, needles: list[str]) -> Iterator[str]:
        """Keys of archive objects (raw deliveries, dead letters) whose body contains one of `needles`. There is no
        per-contact index of the archive: every object under the two prefixes is read (30-day lifecycle)."""
        if self.s3 is None or not self.bucket or not needles:
            return
        # As whole JSON strings ("ann@example.com" with its quotes), so joann@example.com is not a match; also as
        # they appear inside a raw body kept as a string (\"ann@example.com\").
        quoted = [json.dumps(n.lower(), ensure_ascii=False) for n in needles if n]
        lowered = quoted + [json.dumps(q, ensure_ascii=False)[1:-1] for q in quoted]
        for prefix in (DELIVERIES_PREFIX, DEAD_LETTERS_PREFIX):
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    body = self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
                    text = _searchable(body)
                    if any(n in text for n in lowered):
                        yield obj["Key"]

    def delete_objects(self, keys: list[str]) -> int:
        if not keys or self.s3 is None:
            return 0
        for i in range(0, len(keys), 1000):
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]})
        return len(keys)

    # ---- executions (stuck / resume) --------------------------------------------------------------

    def ended_executions(
        self, machine_arn: str, status: str, since: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        """The machine's executions that ended with `status` (FAILED, TIMED_OUT), newest first, started since
        `since`: ListExecutions with its status filter, paginated, stopped at the first one older than `since`."""
        machine = ":".join(machine_arn.split(":")[:7])  # every version's and alias's runs are the machine's
        for page in self.sfn.get_paginator("list_executions").paginate(stateMachineArn=machine, statusFilter=status):
            for e in page["executions"]:
                if since is not None and e["startDate"] < since:
                    return
                yield e

    def describe_execution(self, execution_arn: str) -> dict[str, Any] | None:
        try:
            return dict(self.sfn.describe_execution(executionArn=execution_arn))
        except ClientError as err:
            if err.response["Error"]["Code"] in ("ExecutionDoesNotExist", "InvalidArn"):
                return None
            raise

    def redrive(self, execution_arn: str) -> datetime:
        """RedriveExecution: the failed run goes on from the state that failed. Raises RedriveUnavailable when
        the endpoint does not implement it (moto) and NotRedrivable when Step Functions refuses this run."""
        try:
            got = self.sfn.redrive_execution(executionArn=execution_arn)
        except NotImplementedError as err:  # moto in process: "The redrive_execution action has not been implemented"
            raise RedriveUnavailable(str(err)) from None
        except ClientError as err:
            code = err.response["Error"]["Code"]
            if code in ("ExecutionNotRedrivable", "ExecutionLimitExceeded", "ExecutionDoesNotExist"):
                raise NotRedrivable(f"{code}: {err.response['Error'].get('Message', '')}") from None
            if code in _NOT_IMPLEMENTED or err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 501:
                raise RedriveUnavailable(f"{code}: {err.response['Error'].get('Message', '')}") from None
            raise
        redriven: datetime = got["redriveDate"]
        return redriven

    # ---- workflows deployed -------------------------------------------------------------------

    def deployed_definition(self, machine_arn: str) -> dict[str, Any]:
        """The ASL of what an ARN (a machine, its alias or a version) runs: an alias is followed to the version
        with the most weight in its routing configuration."""
        target = machine_arn
        qualifier = target.split(":")[7] if target.count(":") == 7 else None
        if qualifier is not None and not qualifier.isdigit():  # an alias (a version's qualifier is its number)
            alias = self.sfn.describe_state_machine_alias(stateMachineAliasArn=target)
            routes = sorted(alias["routingConfiguration"], key=lambda r: -int(r["weight"]))
            target = routes[0]["stateMachineVersionArn"]
        got = self.sfn.describe_state_machine(stateMachineArn=target)
        return dict(json.loads(got["definition"]))

    def definition_of_version(self, machine_arn: str, version: str) -> dict[str, Any] | None:
        """The ASL whose Task payloads carry `version` (the step runner's records name it): what `machine_arn`
        runs now, else one of the machine's published versions (ListStateMachineVersions, newest first, read
        until found). None when no definition carries it."""
        current = self.deployed_definition(machine_arn)
        if version in payload_versions(current):
            return current
        machine = ":".join(machine_arn.split(":")[:7])
        # boto3 has no paginator for ListStateMachineVersions (get_paginator raises OperationNotPageableError,
        # which failed `stuck` for any run in an older version than the alias's): its nextToken is followed here.
        kwargs: dict[str, Any] = {"stateMachineArn": machine}
        try:
            while True:
                page = self.sfn.list_state_machine_versions(**kwargs)
                for v in page.get("stateMachineVersions", []):
                    got = json.loads(
                        self.sfn.describe_state_machine(stateMachineArn=v["stateMachineVersionArn"])["definition"]
                    )
                    if version in payload_versions(got):
                        return dict(got)
                if not page.get("nextToken"):
                    return None
                kwargs["nextToken"] = page["nextToken"]
        except (ClientError, NotImplementedError):
            return None


def payload_versions(asl: dict[str, Any]) -> set[str]:
    """The `version` the Task states of a definition send to the step runner."""
    out: set[str] = set()
    for st in asl.get("States", {}).values():
        v = (st.get("Parameters") or {}).get("Payload", {}).get("version")
        if v:
            out.add(str(v))
    return out


# What an endpoint without RedriveExecution answers (a moto server: its unimplemented-action error).
_NOT_IMPLEMENTED = ("NotImplemented", "NotImplementedError", "InvalidAction", "UnknownOperationException")


class RedriveUnavailable(Exception):
    """The endpoint has no RedriveExecution (moto does not implement it): only a restart can continue the run."""


class NotRedrivable(Exception):
    """Step Functions refuses to redrive this run (not failed, timed out or aborted; ended over 14 days ago; ...)."""


def _searchable(body: bytes) -> str:
    """An archive body as text to search for an identity: JSON is re-dumped so escaped characters compare."""
    try:
        return json.dumps(json.loads(body), ensure_ascii=False).lower()
    except ValueError:
        return body.decode("utf-8", "replace").lower()


class MetricsReader:
    """Sums of the step runner's metrics (namespace Stepwise) per dimension set, through ListMetrics and
    GetMetricData; the CloudWatch client is injected."""

    def __init__(self, cloudwatch: Any, namespace: str = C.METRICS_NAMESPACE) -> None:
        self.cw = cloudwatch
        self.namespace = namespace

    def sums(
        self, workflow: str, since: datetime, until: datetime | None = None
    ) -> list[tuple[str, dict[str, str], float]]:
        """(metric name, dimensions, sum since `since`) of every metric of `workflow` CloudWatch has."""
        # CloudWatch keeps wall-clock timestamps, whatever clock runs the domain; a minute's margin takes in the
        # datapoints of this very second (EndTime is exclusive and whole seconds).
        until = until or datetime.now(UTC) + timedelta(minutes=1)
        metrics: list[dict[str, Any]] = []
        for page in self.cw.get_paginator("list_metrics").paginate(
            Namespace=self.namespace, Dimensions=[{"Name": "workflow", "Value": workflow}]
        ):
            metrics.extend(page.get("Metrics", []))
        # Each (name, dimension set) once: a listing may repeat a metric (moto lists one per datapoint).
        unique = {
            (m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m.get("Dimensions", [])))): m
            for m in metrics
        }
        metrics = list(unique.values())
        out: list[tuple[str, dict[str, str], float]] = []
        period = max(60, (int((until - since).total_seconds()) // 60 + 1) * 60)
        for i in range(0, len(metrics), 500):  # GetMetricData takes at most 500 queries
            chunk = metrics[i : i + 500]
            queries = [
                {
                    "Id": f"m{n}",
                    "MetricStat": {"Metric": m, "Period": period, "Stat": "Sum"},
                    "ReturnData": True,
                }
                for n, m in enumerate(chunk)
            ]
            sums = [0.0] * len(chunk)
            kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": since, "EndTime": until}
            while True:
                got = self.cw.get_metric_data(**kwargs)
                for r in got.get("MetricDataResults", []):
                    sums[int(r["Id"][1:])] += float(sum(r.get("Values", [])))
                if not got.get("NextToken"):
                    break
                kwargs["NextToken"] = got["NextToken"]
            for m, total in zip(chunk, sums, strict=True):
                dims = {d["Name"]: d["Value"] for d in m.get("Dimensions", [])}
                out.append((m["MetricName"], dims, total))
        return out


def now_epoch() -> int:
    return epoch(clock.now())
