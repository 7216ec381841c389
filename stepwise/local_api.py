"""`stepwise local`: the deployed HTTP API on 127.0.0.1, served by the very intake Lambda over the local stack.

Each request becomes an API Gateway HTTP API (payload 2.0) event for functions.trigger_router.intake.handler; what
it enqueues on the intake queue (SQS in moto) is drained through functions.trigger_router.router.queue_handler, as
the event source mapping does in AWS, and the engine then settles. A background thread keeps the virtual clock on
wall-clock time; POST /_local/advance {"by": "1d"} moves it further, firing waits and schedules on the way."""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from shared import constants as C
from shared.history import dump_entry_plans
from shared.lifecycle import ensure_activated
from shared.runtime.workflows_file import dump_workflows
from shared.workflow.compiler import entry_plans
from shared.workflow.durations import parse_duration
from shared.workflow.model import Workflow, workflow_files

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

HOST = "127.0.0.1"  # loopback only: the local API has no authentication of its own
DEFAULT_PORT = 8787
ARCHIVE_BUCKET = "stepwise-local-archive"
QUEUE = "stepwise-local-intake"
DEAD_LETTER_QUEUE = "stepwise-local-intake-dlq"
MAX_RECEIVE_COUNT = 3  # as the deployed queue's redrive policy: the router dead-letters a record on its last try
SECRETS_PREFIX = "/stepwise/local"
API_KEY_PARAMETER = f"{SECRETS_PREFIX}/api-key"
# Locally the workflows count as active since long ago, so that the providers' published sample deliveries (dated
# years back) enter when curled in; --activated-at sets a real activation time to try that rule.
LOCAL_ACTIVATED_AT = datetime(2000, 1, 1, tzinfo=UTC)
TICK_SECONDS = 0.5  # how often the clock thread catches virtual time up with the wall clock
MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit: larger requests are refused unread
_DRAIN_ROUNDS = 50  # receive rounds per request: each settles what the previous one enqueued
_SQS_BATCH = 10  # what one ReceiveMessage returns at most (the event source mapping's default batch)
_REPLY_TIMEOUT = 60.0  # seconds the CLI waits for the local API


class LocalApiError(Exception):
    """A request to the local API's own endpoints that cannot be done; the message names the field."""


@dataclass(frozen=True)
class _Context:
    """The Lambda context object Powertools reads (function name, request id...)."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:stepwise-local"
    function_version: str = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _context(function_name: str) -> LambdaContext:
    # Duck-typed: Powertools reads only the attributes above of the context Lambda passes.
    return cast("LambdaContext", _Context(function_name, uuid.uuid4().hex))


def http_api_event(method: str, target: str, headers: dict[str, str], body: bytes, now: datetime) -> dict[str, Any]:
    """The API Gateway HTTP API payload 2.0 event for one request, as the deployed API hands it to the Lambda: the
    path and query apart, header names lower-cased (repeats joined by commas), the body as text when it is UTF-8
    and base64 otherwise."""
    url = urllib.parse.urlsplit(target)
    query: dict[str, str] = {}
    for name, value in urllib.parse.parse_qsl(url.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    path = urllib.parse.unquote(url.path) or "/"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": url.path or "/",
        "rawQueryString": url.query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": HOST,
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": HOST,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": encoded,
    }
    if query:
        event["queryStringParameters"] = query
    if body:
        event["body"] = text
    return event


class LocalApi:
    """The local stack behind the API: a Simulation of the workflows plus the intake's bucket, queue and
    parameters in moto. One lock serialises requests and the clock thread (moto and the engine are driven from
    one thread at a time, as Powertools' resolver wants)."""

    def __init__(
        self, workflows: list[Workflow], *, start: datetime | None = None, activated_at: datetime | None = None
    ) -> None:
        self.workflows = workflows
        self.start = (start or datetime.now(UTC)).replace(microsecond=0)
        self.activated_at = activated_at or LOCAL_ACTIVATED_AT
        self.lock = threading.RLock()
        self._offset = timedelta(0)  # how far `advance` has put virtual time ahead of the wall clock
        self._wall_start = time.monotonic()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._saved_env: dict[str, str | None] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._unpatch: Callable[[], None] | None = None

    # ---- lifecycle ------------------------------------------------------------------------------------------
    def __enter__(self) -> LocalApi:
        from stepwise.simulate import TABLE, Simulation

        self._reset_handlers()  # before the Simulation binds what it runs (the router's reset unbinds schedules)
        self.sim = Simulation(self.workflows, self.start, activated_at=self.activated_at).__enter__()
        try:
            self._provision(TABLE)
            self._unpatch = _accept_unsigned_without_secret()
        except BaseException:
            self.sim.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        if self._unpatch is not None:
            self._unpatch()
        try:
            with self.lock:
                self.sim.__exit__(None, None, None)
        finally:
            for name, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            self._reset_handlers()
            if self._tmp is not None:
                self._tmp.cleanup()

    def _provision(self, table: str) -> None:
        """What the CDK app deploys for intake, in moto: the archive bucket, the queue and its dead-letter queue,
        the webhook secrets and API key (from STEPWISE_WEBHOOK_SECRET_<PROVIDER> and STEPWISE_API_KEY), and the
        environment the intake and router functions read at their cold start."""
        import boto3

        region = self.sim.stack.region
        s3 = boto3.client("s3", region_name=region)
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if ARCHIVE_BUCKET not in existing:  # the Simulation may keep its broadcast snapshots in the same bucket
            s3.create_bucket(Bucket=ARCHIVE_BUCKET)
        self.sqs = boto3.client("sqs", region_name=region)
        dlq = self.sqs.create_queue(QueueName=DEAD_LETTER_QUEUE)["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT})
        self.queue_url = self.sqs.create_queue(
            QueueName=QUEUE, Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": "30"}
        )["QueueUrl"]
        self.queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        ssm = boto3.client("ssm", region_name=region)
        for name, value in os.environ.items():
            if name.startswith(C.ENV_LOCAL_SECRET_PREFIX) and value:
                provider = name[len(C.ENV_LOCAL_SECRET_PREFIX) :].lower()
                ssm.put_parameter(Name=f"{SECRETS_PREFIX}/webhooks/{provider}", Value=value, Type="SecureString")
        if os.environ.get(C.ENV_LOCAL_API_KEY):
            ssm.put_parameter(Name=API_KEY_PARAMETER, Value=os.environ[C.ENV_LOCAL_API_KEY], Type="SecureString")
        self._tmp = tempfile.TemporaryDirectory(prefix="stepwise-local-")
        workflows_file = Path(self._tmp.name) / C.WORKFLOWS_FILE
        workflows_file.write_bytes(dump_workflows(self.workflows))
        plans_file = Path(self._tmp.name) / C.ENTRY_PLANS_FILE
        plans_file.write_bytes(dump_entry_plans(entry_plans(self.workflows)))
        env = {
            C.ENV_TABLE_NAME: table,
            C.ENV_ARCHIVE_BUCKET: ARCHIVE_BUCKET,
            C.ENV_INTAKE_QUEUE_URL: self.queue_url,
            C.ENV_SECRETS_PREFIX: SECRETS_PREFIX,
            C.ENV_API_KEY_PARAMETER: API_KEY_PARAMETER,
            C.ENV_STATE_MACHINE_ARN_TEMPLATE: self.sim.arn_template,
            C.ENV_WORKFLOWS_FILE: str(workflows_file),
            C.ENV_ENTRY_PLANS: str(plans_file),
            C.ENV_MAX_RECEIVE_COUNT: str(MAX_RECEIVE_COUNT),
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
        self._saved_env = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        # Deployed = activated: recorded now, as the first deployment does, so the router function's enroller
        # (which would otherwise record its first event's time) judges events against the same activation.
        for wf in self.workflows:
            ensure_activated(self.sim.store, wf.name, self.activated_at)

    @staticmethod
    def _reset_handlers() -> None:
        # Their cold-start state (settings, clients) belongs to the environment they were first called in.
        for module in ("functions.trigger_router.intake", "functions.trigger_router.router"):
            loaded = sys.modules.get(module)
            if loaded is not None and hasattr(loaded, "reset"):
                loaded.reset()

    # ---- time -----------------------------------------------------------------------------------------------
    def wall_target(self) -> datetime:
        """Where virtual time should be now: the start plus real time elapsed plus every advance."""
        return self.start + timedelta(seconds=time.monotonic() - self._wall_start) + self._offset

    def tick(self) -> None:
        """Catch virtual time up with the wall clock (waits and schedules due on the way fire)."""
        with self.lock:
            target = self.wall_target()
            if target > self.sim.now:
                self.sim.advance(target)
                self.drain()

    def advance(self, by: str) -> dict[str, Any]:
        """Move the local clock `by` (a duration: 10m, 1d, 1d12h) ahead of the wall clock."""
        try:
            seconds = parse_duration(by)
        except (ValueError, TypeError) as err:
            raise LocalApiError(f"field by: {err}") from None
        if seconds <= 0:
            raise LocalApiError("field by: give a positive duration such as 10m or 1d")
        with self.lock:
            before = self.sim.now
            self._offset += timedelta(seconds=seconds)
            self.sim.advance(self.wall_target())
            self.drain()
            return {"from": before.isoformat(), "now": self.sim.now.isoformat()}

    def start_clock(self) -> None:
        def run() -> None:
            while not self._stop.wait(TICK_SECONDS):
                try:
                    self.tick()
                except Exception as err:  # keep the clock going: one bad tick must not stop time
                    print(f"stepwise local: clock tick failed: {type(err).__name__}: {err}", file=sys.stderr)

        self._ticker = threading.Thread(target=run, name="stepwise-local-clock", daemon=True)
        self._ticker.start()

    # ---- requests -------------------------------------------------------------------------------------------
    def invoke_intake(self, method: str, target: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """One request through the intake Lambda, then what it enqueued through the router; the Lambda's answer."""
        from functions.trigger_router import intake

        with self.lock:
            event = http_api_event(method, target, headers, body, self.sim.now)
            response: dict[str, Any] = intake.handler(event, _context("stepwise-intake"))
            self.drain()
            return response

    def drain(self) -> int:
        """Feed what waits on the intake queue to the router's queue handler in SQS batches, as the event source
        mapping does (records it reports as failed are received again, up to the redrive policy), settling the
        engine after each batch. Bounded: at most _DRAIN_ROUNDS receives. Returns the records handled."""
        from functions.trigger_router import router

        handled = 0
        with self.lock:
            for _ in range(_DRAIN_ROUNDS):
                got = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=_SQS_BATCH,
                    AttributeNames=["All"],
                    VisibilityTimeout=0,  # a failed record is visible again at once (the test of a redrive)
                ).get("Messages", [])
                if not got:
                    break
                result = router.queue_handler(self._sqs_event(got), _context("stepwise-router"))
                failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
                for message in got:
                    if message["MessageId"] not in failed:
                        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                handled += len(got)
                self.sim.settle()
        return handled

    def _sqs_event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": m.get("MD5OfBody", ""),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": self.sim.stack.region,
                }
                for m in messages
            ]
        }

    def contacts(self) -> dict[str, Any]:
        with self.lock:
            return {"now": self.sim.now.isoformat(), **self.sim.summary()}

    def timeline(self) -> dict[str, Any]:
        with self.lock:
            return {"now": self.sim.now.isoformat(), "rows": self.sim.timeline()}

    def replay(self, *, list_only: bool) -> dict[str, Any]:
        from stepwise.replay import run_replay

        with self.lock:
            out = run_replay(self.sim_archive(), self.sim_router(), list_only=list_only)
            self.drain()
            self.sim.settle()
            return out

    def sim_archive(self) -> Any:
        import boto3

        from shared.store.archive import Archive

        return Archive(ARCHIVE_BUCKET, boto3.client("s3", region_name=self.sim.stack.region))

    def sim_router(self) -> Any:
        return self.sim.router


def _accept_unsigned_without_secret() -> Callable[[], None]:
    """Locally, as in `stepwise simulate`, a provider with no STEPWISE_WEBHOOK_SECRET_<PROVIDER> set is accepted
    unverified (the queued delivery says verified: false), so a curl of a sample body works; a provider with a
    secret is always checked. The intake Lambda calls pipeline.accept at each delivery: its allow_unverified is
    switched on here for the server's life, and only here (never in AWS). Returns the undo."""
    from shared.intake import pipeline

    original = pipeline.accept

    def accept(provider: str, delivery: Any, secret_for: Any, *, allow_unverified: bool = False) -> Any:
        return original(provider, delivery, secret_for, allow_unverified=True)

    pipeline.accept = accept  # type: ignore[assignment]

    def undo() -> None:
        pipeline.accept = original

    return undo


# ---- HTTP -----------------------------------------------------------------------------------------------------


def make_server(api: LocalApi, port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1:`port` (0: any free port) serving `api`. Call serve_forever, then shutdown."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "stepwise-local"
        protocol_version = "HTTP/1.1"
        timeout = 15  # seconds a connection may sit idle or a body take to arrive (a short body never hangs it)

        def log_message(self, format: str, *args: Any) -> None:
            # Method and path only: never the query string (it may carry a secret token) nor any body.
            path = urllib.parse.urlsplit(self.path).path
            path = "/".join(path.split("/")[:3]) + ("/…" if path.count("/") > 2 else "")
            print(f"{self.command} {path} -> {args[1] if len(args) > 1 else ''}", file=sys.stderr)

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def do_PUT(self) -> None:
            self._handle()

        def do_DELETE(self) -> None:
            self._handle()

        def _handle(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self._reply(411, {"error": "send a Content-Length (chunked bodies are not read)", "field": "body"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self._reply(400, {"error": "Content-Length is not a number", "field": "Content-Length"})
                return
            if length > MAX_REQUEST_BYTES or length < 0:
                self.close_connection = True
                self._reply(413, {"error": f"body over {MAX_REQUEST_BYTES} bytes", "field": "body"})
                return
            body = self.rfile.read(length) if length else b""
            aws = _aws_call(self.command, self.path, self.headers.items(), body)
            if aws is not None:  # a signed AWS request (AWS_ENDPOINT_URL pointed here): the local stack's AWS answers
                with api.lock:
                    got = aws()
                self._raw(*got)
                return
            try:
                if path.startswith("/_local/"):
                    self._local(path, body)
                    return
                headers: dict[str, str] = {}
                for name, value in self.headers.items():
                    key = name.lower()
                    headers[key] = f"{headers[key]},{value}" if key in headers else value
                response = api.invoke_intake(self.command, self.path, headers, body)
                self._lambda_reply(response)
            except LocalApiError as err:
                self._reply(400, {"error": str(err)})
            except Exception as err:  # our fault: a 500 naming it, as a Lambda error would be
                self._reply(500, {"error": f"{type(err).__name__}: {err}"})

        def _raw(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _local(self, path: str, body: bytes) -> None:
            if self.command == "GET" and path == "/_local/contacts":
                self._reply(200, api.contacts())
            elif self.command == "GET" and path == "/_local/timeline":
                self._reply(200, api.timeline())
            elif self.command == "POST" and path == "/_local/advance":
                self._reply(200, api.advance(_field(body, "by")))
            elif self.command == "POST" and path == "/_local/replay":
                list_only = bool(_json_body(body).get("list", False))
                self._reply(200, api.replay(list_only=list_only))
            else:
                self._reply(
                    404,
                    {
                        "error": "no such local route: GET /_local/contacts, GET /_local/timeline, "
                        'POST /_local/advance {"by": "1d"}, POST /_local/replay',
                        "field": "path",
                    },
                )

        def _lambda_reply(self, response: dict[str, Any]) -> None:
            raw = response.get("body") or ""
            data = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode()
            self.send_response(int(response.get("statusCode", 200)))
            for name, value in (response.get("headers") or {}).items():
                if name.lower() not in ("content-length", "connection"):
                    self.send_header(name, str(value))
            for name, values in (response.get("multiValueHeaders") or {}).items():
                for value in values:
                    self.send_header(name, str(value))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer((HOST, port), Handler)
    server.daemon_threads = True
    return server


_SIGNED = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
_HOSTS = {"ses": "email"}  # signing names whose endpoint host differs; the rest are `{name}.{region}.amazonaws.com`


def _aws_call(
    method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes
) -> Callable[[], tuple[int, dict[str, str], bytes]] | None:
    """A request signed with AWS's Signature V4 (a boto3 client or the AWS CLI with `AWS_ENDPOINT_URL` set to this
    server) is an AWS API call, answered by the same in-memory AWS the local stack runs on, so the operating
    commands (history, stuck, stats, erase...) read what `stepwise local` did, with the code they run in AWS. The
    service and region come from the signature's scope; the request is handed to moto as if sent to AWS's own host.
    None when the request is not signed so (a webhook, /events, /_local/*)."""
    got = dict(headers)
    auth = next((v for k, v in got.items() if k.lower() == "authorization"), "")
    match = _SIGNED.search(auth) if auth.startswith("AWS4-HMAC-SHA256") else None
    if match is None:
        return None
    region, service = match.groups()
    host = f"{_HOSTS.get(service, service)}.{region}.amazonaws.com"

    def call() -> tuple[int, dict[str, str], bytes]:
        from botocore.awsrequest import AWSPreparedRequest
        from botocore.compat import HTTPHeaders
        from moto.core.models import botocore_stubber

        sent = HTTPHeaders()
        for name, value in got.items():
            sent[name] = host if name.lower() == "host" else value
        request = AWSPreparedRequest(method, f"https://{host}{target}", sent, body, stream_output=False)
        answer = botocore_stubber.process_request(request)
        if answer is None:
            message = f"stepwise local does not emulate the {service} API"
            return 501, {"Content-Type": "application/json"}, json.dumps({"message": message}).encode()
        status, out_headers, out_body = answer
        data = out_body.encode() if isinstance(out_body, str) else bytes(out_body or b"")
        return int(status), {str(k): str(v) for k, v in (out_headers or {}).items()}, data

    return call


def _json_body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except json.JSONDecodeError as err:
        raise LocalApiError(f"body is not JSON: {err.msg}") from None
    if not isinstance(data, dict):
        raise LocalApiError("body must be a JSON object")
    return data


def _field(body: bytes, name: str) -> str:
    value = _json_body(body).get(name)
    if not isinstance(value, str) or not value:
        raise LocalApiError(f'field {name}: give a duration string, e.g. {{"{name}": "1d"}}')
    return value


@contextmanager
def serving(api: LocalApi, port: int = DEFAULT_PORT) -> Iterator[ThreadingHTTPServer]:
    """`api` served on 127.0.0.1:`port` from a background thread, with its clock running; stopped on exit."""
    server = make_server(api, port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    api.start_clock()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ---- commands -------------------------------------------------------------------------------------------------


def local_command(args: argparse.Namespace) -> int:
    if getattr(args, "local_action", None) == "advance":
        return advance_command(args)
    from stepwise.simulate import TABLE, _load

    folder = Path(args.workflows)
    files = workflow_files(folder) if folder.is_dir() else []
    if not files:
        print(f"{folder}: no *.yaml or *.yml workflow files in this folder", file=sys.stderr)
        return 1
    workflows = _load(files, sys.stderr)
    if workflows is None:
        return 1
    with LocalApi(workflows) as api, serving(api, args.port) as server:
        port = server.server_address[1]
        print(
            f"stepwise local: {len(workflows)} workflows from {folder}/ on http://{HOST}:{port}\n"
            f"  POST /webhooks/{{provider}}, POST /events, GET /health; GET /_local/contacts, GET /_local/timeline,\n"
            f"  stepwise local advance 1d --port {port} (or POST /_local/advance),\n"
            f"  stepwise replay --local --port {port} (or POST /_local/replay)\n"
            f"  AWS API (history, stuck, stats, erase...): AWS_ENDPOINT_URL=http://{HOST}:{port} AWS_DEFAULT_REGION="
            f"{api.sim.stack.region} AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local,\n"
            f"    --table {TABLE} --machine-arn-template {api.sim.arn_template} --bucket {ARCHIVE_BUCKET}\n"
            f"  clock: {api.sim.now:%Y-%m-%d %H:%M:%S} UTC, in real time. Ctrl-C stops (everything is in memory).",
            flush=True,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("\nstepwise local: stopped", file=sys.stderr)
    return 0


def call_local(port: int, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """One request to a running `stepwise local` on 127.0.0.1:`port`; its JSON answer. Raises LocalApiError."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(f"http://{HOST}:{port}{path}", data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=_REPLY_TIMEOUT) as reply:
            answer: dict[str, Any] = json.loads(reply.read() or b"{}")
            return answer
    except urllib.error.HTTPError as err:
        detail = err.read().decode("utf-8", "replace")
        with suppress(ValueError, AttributeError):
            detail = json.loads(detail).get("error", detail)
        raise LocalApiError(f"{method} {path}: {err.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise LocalApiError(
            f"no stepwise local on http://{HOST}:{port} ({reason}): start it with `stepwise local --port {port}`"
        ) from None


def advance_command(args: argparse.Namespace) -> int:
    try:
        answer = call_local(args.port, "POST", "/_local/advance", {"by": args.by})
    except LocalApiError as err:
        print(f"stepwise local advance: {err}", file=sys.stderr)
        return 1
    print(f"local clock: {answer['from']} -> {answer['now']}")
    return 0


def add_parsers(sub: Any, func: Callable[[argparse.Namespace], int]) -> None:
    """`stepwise local [--port] [--workflows]` and `stepwise local advance DURATION [--port]`."""
    p = sub.add_parser("local", help="serve the webhook and events API on 127.0.0.1 over the local stack")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    p.add_argument("--workflows", default="workflows", metavar="DIR", help="folder of workflow files")
    p.set_defaults(func=func, local_action=None)
    actions = p.add_subparsers(dest="local_action", metavar="ACTION")
    a = actions.add_parser("advance", help="move a running stepwise local's clock forward (waits, schedules fire)")
    a.add_argument("by", metavar="DURATION", help="how far: 10m, 2h, 1d, 1d12h")
    a.add_argument("--port", type=int, default=argparse.SUPPRESS, help="the port stepwise local serves on")
    a.set_defaults(func=func)
