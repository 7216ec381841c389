"""Router Lambdas: the ways in after intake. Each record becomes Router.handle / execution_ended calls.

queue_handler     SQS, the intake's accepted deliveries (each delivery's events in order)
stream_handler    the table's stream: INSERTs of the step runner's outbox items (EVENT#, status pending)
status_handler    EventBridge "Step Functions Execution Status Change" (campaign completion)
schedule_handler  EventBridge Scheduler payloads {"kind": ...} (shared/runtime/schedules.py)
feedback_handler  EventBridge SES events and SMS receipts (shared/messaging/feedback.py handle: suppression, the
                  reputation guard's counts, a Send event's confirmation; then each event routed)

Batches (SQS, streams) report partial failures; a record failing on its last SQS receive, or any failing stream
or direct EventBridge record, is also written to the dead-letter store (S3) for `stepwise replay`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import boto3

from functions.trigger_router.settings import RouterSettings
from shared import clock
from shared import constants as C
from shared.enrollment import Enroller
from shared.events import stable_hash
from shared.lambda_logger import FirstUseLogger
from shared.messaging import feedback
from shared.messaging.reputation import ReputationGuard, emf_metric
from shared.metrics import emit_count, emit_metric
from shared.routing import Router
from shared.runtime import broadcast, engagement, inbound, schedules
from shared.runtime.workflows_file import load_workflows
from shared.store.archive import Archive, ArchiveIndex
from shared.store.broadcasts import BroadcastStore
from shared.store.contacts import ContactStore, epoch
from shared.store.messages import MessageStore
from shared.store.schedules import ScheduleStore
from shared.workflow.runtime import load_entry_plans

if TYPE_CHECKING:
    # Powertools (its Logger; the batch utility: asyncio, multiprocessing, every event data class, ~110 ms) loads
    # with the first invocation, the batch utility with the first batch (_partial_response): these are its types.
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

# Powertools' Logger, made at the first invocation (any of Powertools loads its Logger, Metrics and Tracer).
logger = FirstUseLogger(C.SERVICE_NAME)


@dataclass
class RouterDeps:
    settings: RouterSettings
    router: Router
    archive: Archive
    messages: MessageStore
    # The reputation guard, where the function is given the SES configuration set (the feedback handler).
    guard: ReputationGuard | None = None


_deps: RouterDeps | None = None
_clients: dict[str, Any] = {}
# The local runtime's collector of metrics; in AWS metrics are EMF in the logs.
local_metrics: Any = None


def client(service: str) -> Any:
    """boto3 clients, created on first use and kept for the container's life."""
    if service not in _clients:
        _clients[service] = boto3.client(service)  # type: ignore[call-overload]
    return _clients[service]


def deps() -> RouterDeps:
    """Cold start: settings, the deployed workflows and entry plans from the asset, the router over lazy clients."""
    global _deps
    if _deps is None:
        settings = RouterSettings.from_env()
        workflows = load_workflows(settings.path(settings.workflows))
        plans = load_entry_plans(settings.path(settings.entry_plans)) if settings.entry_plans else {}
        ddb, sfn = client("dynamodb"), client("stepfunctions")
        store = ContactStore(settings.table_name, ddb)
        metrics = local_metrics or (emit_metric(settings.namespace) if settings.metrics_enabled else None)
        enroller = Enroller(store, sfn, settings.state_machine_arn_template, metrics, plans)
        router = Router(workflows, store, enroller, sfn)
        archive = Archive(settings.archive_bucket, client("s3"), ArchiveIndex(settings.table_name, ddb))  # dead letters
        messages = MessageStore(settings.table_name, ddb)
        _bind_schedules()
        _bind_broadcaster(router, settings.archive_bucket, sfn)
        guard = _guard(messages, settings)
        _deps = RouterDeps(settings=settings, router=router, archive=archive, messages=messages, guard=guard)
    return _deps


def _guard(messages: MessageStore, settings: RouterSettings) -> ReputationGuard | None:
    """The sender reputation guard over the stage's SES configuration set, where the function is given one; the
    team's alert on the alarm topic where it is given that too."""
    configuration_set = os.environ.get(C.ENV_SES_CONFIGURATION_SET)
    if not configuration_set:
        return None
    topic = os.environ.get(C.ENV_ALERT_TOPIC_ARN)
    from shared.messaging.channels import SnsAlert  # the senders' channels (email's MIME modules): here only

    return ReputationGuard(
        messages,
        configuration_set,
        alert=SnsAlert(client("sns"), topic) if topic else None,
        metric=emf_metric(settings.namespace) if settings.metrics_enabled else None,
    )


_SCHEDULER_KEYS = (C.ENV_SCHEDULE_GROUP, C.ENV_SCHEDULE_TARGET_ARN, C.ENV_SCHEDULER_ROLE_ARN)


def _bind_schedules() -> None:
    """The engine's one-time schedules (abandonment, broadcasts), where the function is given a schedule group;
    a part of that configuration without the rest fails the cold start."""
    present = [k for k in _SCHEDULER_KEYS if os.environ.get(k)]
    if not present:
        return
    if len(present) != len(_SCHEDULER_KEYS):
        missing = ", ".join(k for k in _SCHEDULER_KEYS if k not in present)
        raise RuntimeError(f"router misconfigured: {', '.join(present)} set but {missing} not set")
    store = ScheduleStore(client("scheduler"), *(os.environ[k] for k in _SCHEDULER_KEYS))
    schedules.bind(schedules.Schedules(store))


def _bind_broadcaster(router: Router, bucket: str, sfn: Any) -> None:
    """Fixed-date lists: snapshots into the archive bucket, fanned out by the broadcast machine, where the function
    is given one (the schedule handler; the other handlers never fire a broadcast)."""
    machine = os.environ.get(C.ENV_BROADCAST_MACHINE_ARN)
    if machine:
        broadcast.bind(broadcast.Broadcaster(router, BroadcastStore(client("s3"), sfn, bucket, machine)))


def schedule_context() -> schedules.ScheduleContext:
    return schedules.ScheduleContext(router=deps().router, schedules=schedules.required())


def reset() -> None:
    """Forget the cold-start state and clients (tests and the local runtime swap the environment)."""
    global _deps
    _deps = None
    _clients.clear()
    schedules.bind(None)
    broadcast.bind(None)


# ---- dead letters ---------------------------------------------------------------------------------------------


def _dead_letter(source: str, letter_id: str, record: dict[str, Any], err: Exception, attempts: int = 1) -> None:
    d = deps()
    error = f"{type(err).__name__}: {err}"
    letter = d.archive.put_dead_letter(letter_id, source, record, error, clock.now(), attempts)
    # The error's type only: messages may quote an address from the record.
    logger.warning("dead letter", extra={"source": source, "key": letter.key, "error_type": type(err).__name__})
    if d.settings.metrics_enabled:
        emit_count(d.settings.namespace, C.METRIC_DEAD_LETTER, {"source": source})


def _on_last_receive(source: str, record: SQSRecord, kept: dict[str, Any], err: Exception) -> None:
    """SQS retries a failed record until maxReceiveCount, then moves it to the DLQ: on that last receive it
    goes to the dead-letter store too, with its error, so `stepwise replay` can list and re-run it."""
    limit = deps().settings.max_receive_count
    if limit is None:
        raise RuntimeError(f"router misconfigured: {C.ENV_MAX_RECEIVE_COUNT} not set for an SQS-fed handler")
    count = int(record.attributes.approximate_receive_count or "1")
    if count >= limit:
        _dead_letter(source, record.message_id, kept, err, count)


def _partial_response(
    event: dict[str, Any], record_handler: Callable[[Any], None], kind: str, context: LambdaContext
) -> PartialItemFailureResponse:
    """Powertools' batch processing of `event`'s records (`kind`: SQS or DynamoDBStreams), partial failures reported."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    # A wholly failed batch is reported record by record like any other (not raised): the same retry path.
    processor = BatchProcessor(event_type=EventType[kind], raise_on_entire_batch_failure=False)
    return process_partial_response(event, record_handler, processor, context)


# ---- the intake queue -----------------------------------------------------------------------------------------


def _queue_record(record: SQSRecord) -> None:
    d = deps()
    try:
        inbound.route_delivery(d.router, d.archive, record.body)
    except Exception as err:
        _on_last_receive("queue", record, {"body": record.body, "message_id": record.message_id}, err)
        raise


@logger.inject_lambda_context(clear_state=True)
def queue_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    deps()  # a misconfiguration fails the invocation, not each record
    return _partial_response(event, _queue_record, "SQS", context)


# ---- the table's stream ---------------------------------------------------------------------------------------


def _stream_record(record: DynamoDBRecord) -> None:
    raw = record.raw_event
    if raw.get("eventName") != "INSERT":
        return
    item = inbound.outbox_item(raw.get("dynamodb", {}).get("NewImage") or {})
    if item is None:
        return
    try:
        inbound.route_outbox(deps().router, item)
    except Exception as err:
        # A stream record carries no receive count: kept on each failure (same id, same object); a replay of one
        # that a retry routed meanwhile finds its outbox item deleted and does nothing.
        _dead_letter("stream", str(raw.get("eventID") or stable_hash(item[C.PK])), raw, err)
        raise


@logger.inject_lambda_context(clear_state=True)
def stream_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    deps()
    return _partial_response(event, _stream_record, "DynamoDBStreams", context)


# ---- EventBridge: execution status, schedules, feedback -------------------------------------------------------


def _eventbridge(
    source: str,
    event: dict[str, Any],
    context: LambdaContext,
    run: Callable[[dict[str, Any]], Any],
    keep: Callable[[dict[str, Any]], dict[str, Any]],
    letter_id: Callable[[dict[str, Any]], str],
) -> PartialItemFailureResponse | dict[str, Any]:
    """Run one EventBridge / Scheduler payload, delivered either directly (async invoke: Lambda's own retries,
    then its on-failure destination) or through an SQS queue (a batch, partial failures)."""
    deps()
    if isinstance(event.get("Records"), list):

        def record_handler(record: SQSRecord) -> None:
            payload = json.loads(record.body)
            try:
                run(payload)
            except Exception as err:
                _on_last_receive(source, record, _kept(payload, err, keep), err)
                raise

        return _partial_response(event, record_handler, "SQS", context)
    try:
        run(event)
    except engagement.ChecksNotRouted as err:
        # The checks were taken: the letter is the events themselves (a replay routes them), one per failed set.
        kept = _kept(event, err, keep)
        _dead_letter(source, stable_hash(json.dumps(kept, sort_keys=True, default=str)), kept, err)
        raise
    except Exception as err:
        _dead_letter(source, letter_id(event), keep(event), err)
        raise
    return {}


def _kept(payload: dict[str, Any], err: Exception, keep: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """What a dead letter keeps: the payload, or for engagement checks taken but not routed, their events."""
    if isinstance(err, engagement.ChecksNotRouted):
        return {"payload": err.payload}
    return keep(payload)


def _event_id(event: dict[str, Any]) -> str:
    return str(event.get("id") or stable_hash(json.dumps(event, sort_keys=True, default=str)))


@logger.inject_lambda_context(clear_state=True)
def status_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse | dict[str, Any]:
    return _eventbridge(
        "status",
        event,
        context,
        lambda e: inbound.route_status(deps().router, e),
        lambda e: {"event": e},
        _event_id,
    )


@logger.inject_lambda_context(clear_state=True)
def schedule_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse | dict[str, Any]:
    return _eventbridge(
        "schedule",
        event,
        context,
        lambda payload: schedules.dispatch(payload, schedule_context()),
        lambda payload: {"payload": payload},
        lambda payload: stable_hash(json.dumps(payload, sort_keys=True, default=str)),
    )


FEEDBACK_KEEP_DAYS = 2  # the guard's once-per-event markers outlive EventBridge's retries (24 h)


class _CountOnce:
    """The reputation guard as `absorb` sees it, counting each bounce or complaint of one feedback event once:
    a marker item per count is claimed before counting, so EventBridge's retries of an event whose routing
    failed do not count it again (a crash between the claim and the count loses that one count instead)."""

    def __init__(self, guard: ReputationGuard, store: ContactStore, event_id: str) -> None:
        self.guard = guard
        self.store = store
        self.event_id = event_id
        self.calls = 0

    def record(self, what: str, at: Any) -> Any:
        self.calls += 1
        marker = {
            C.PK: f"FEEDBACK#{stable_hash(self.event_id)}",
            C.SK: f"COUNTED#{self.calls}",
            "what": what,
            C.TTL_ATTRIBUTE: epoch(clock.now() + timedelta(days=FEEDBACK_KEEP_DAYS)),
        }
        if self.store.put_item(marker, only_new=True):
            return self.guard.record(what, at)
        return None


def _feedback(event: dict[str, Any]) -> None:
    """One SES event or SMS receipt: suppression, the guard's counts and a Send event's confirmation first
    (feedback.handle), then every resulting contact event routed (waits resumed, triggers, goals)."""
    d = deps()
    guard = _CountOnce(d.guard, d.router.store, _event_id(event)) if d.guard is not None else None
    try:
        inbound.route_feedback(d.router, event, d.messages, guard)
    except feedback.FeedbackError as err:
        _dead_letter("feedback", _event_id(event), {"event": event}, err)  # kept; retrying cannot help


@logger.inject_lambda_context(clear_state=True)
def feedback_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse | dict[str, Any]:
    return _eventbridge("feedback", event, context, _feedback, lambda e: {"event": e}, _event_id)
