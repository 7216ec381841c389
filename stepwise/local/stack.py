"""Embedded local AWS for Stepwise: moto's Step Functions interpreter on a virtual clock, Lambda in-process."""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
import time
import zipfile
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, cast

import boto3
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.stepfunctions.parser.backend.execution import Execution as ParserExecution
from moto.stepfunctions.parser.models import stepfunctions_parser_backends

from shared import constants as C
from stepwise.local.clock import VirtualClock
from stepwise.local.patches import install

_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
# A profile or endpoint from the developer's shell would send boto3 elsewhere than the in-process mock.
_CLEARED_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL")
_SETTLE_POLL_SECONDS = 0.0005
_LAMBDA_ROLE = "stepwise-local-lambda"
_STATES_ROLE = "stepwise-local-states"
_ASSUME_LAMBDA = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def _status(execution: Any) -> str:
    # An execution started from another thread (a Map's Lambda task) is listed before moto sets its status.
    return "RUNNING" if execution.exec_status is None else str(execution.status)


def _placeholder_zip() -> bytes:
    # moto needs a deployment package; the code that runs is imported from this repository instead.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("placeholder.py", "# handlers run in-process from the stepwise repository\n")
    return buffer.getvalue()


class LocalStack:
    """moto with Step Functions execution enabled, patched onto a VirtualClock; a single-use context
    manager, one active per process (the patches are process-wide)."""

    def __init__(self, start: datetime | None = None, region: str = "us-east-1") -> None:
        self.region = region
        self.account_id = DEFAULT_ACCOUNT_ID
        self.clock = VirtualClock(start or datetime.now(UTC).replace(microsecond=0))
        self._mock: Any = None
        self._uninstall: Any = None
        self._saved_env: dict[str, str | None] = {}
        self._clients: dict[str, Any] = {}
        self._lambda_role_arn: str | None = None
        # _running_executions: per state machine (kept so its id is not reused), how many executions were seen;
        # and the executions not yet seen ended, with their machine's id.
        self._seen_executions: dict[int, tuple[Any, int]] = {}
        self._maybe_running: list[tuple[int, Any]] = []
        self._executions_lock = threading.Lock()

    # --- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> LocalStack:
        overrides: dict[str, str | None] = {
            **_FAKE_ENV,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            **dict.fromkeys(_CLEARED_ENV),
            # Locally a workflow's webhook may call a receiver on this machine (http://127.0.0.1:PORT); in AWS only
            # public https addresses, unless the deployment allows more (shared/webhooks.py).
            C.ENV_WEBHOOK_ALLOW: os.environ.get(C.ENV_WEBHOOK_ALLOW) or "localhost 127.0.0.0/8 ::1",
        }
        self._saved_env = {name: os.environ.get(name) for name in overrides}
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        # After start: moto installs its own fake keys, which these replace for the stack's lifetime.
        for name, value in overrides.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        try:
            self._uninstall = install(self.clock)
        except BaseException:
            self._mock.stop()
            self._mock = None
            self._restore_env()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._stop_running_executions()
        finally:
            self.clock.close()
            if self._uninstall is not None:
                self._uninstall()
                self._uninstall = None
            if self._mock is not None:
                self._mock.stop()
                self._mock = None
            self._clients.clear()
            self._restore_env()

    def _restore_env(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def _stop_running_executions(self, grace_seconds: float = 2.0) -> None:
        # Left-over executions would otherwise keep interpreter threads alive past the mock.
        for execution in self._running_executions():
            # AttributeError: its worker has not built its environment yet; clock.close() releases it.
            with contextlib.suppress(AttributeError):
                execution.stop(stop_date=self.clock.now(), error=None, cause=None)
        give_up = time.monotonic() + grace_seconds
        while self._running_executions() and time.monotonic() < give_up:
            time.sleep(0.001)

    # --- clients -------------------------------------------------------------------------------
    def _client(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is None:
            client = self._clients[service] = boto3.client(service, region_name=self.region)  # type: ignore[call-overload]
        return client

    @property
    def sfn(self) -> Any:
        return self._client("stepfunctions")

    @property
    def lambda_(self) -> Any:
        return self._client("lambda")

    @property
    def dynamodb(self) -> Any:
        return self._client("dynamodb")

    @property
    def dynamodbstreams(self) -> Any:
        client = self._clients.get("dynamodbstreams")
        if client is None:
            # botocore sends stream calls to an account endpoint ({account}.streams-ddb...) moto does not serve.
            client = self._clients["dynamodbstreams"] = boto3.client(
                "dynamodbstreams",
                region_name=self.region,
                endpoint_url=f"https://streams.dynamodb.{self.region}.amazonaws.com",
            )
        return client

    @property
    def iam(self) -> Any:
        return self._client("iam")

    # --- resources -----------------------------------------------------------------------------
    def create_function(
        self,
        name: str,
        handler: str,
        environment: dict[str, str],
        *,
        timeout: int = 30,
        memory_mb: int = 256,
    ) -> str:
        """Create a Lambda function whose `handler` (module.path.function in this repo) runs in-process."""
        if self._lambda_role_arn is None:
            role = self.iam.create_role(RoleName=_LAMBDA_ROLE, AssumeRolePolicyDocument=json.dumps(_ASSUME_LAMBDA))
            self._lambda_role_arn = role["Role"]["Arn"]
        response = self.lambda_.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=self._lambda_role_arn,
            Handler=handler,
            Code={"ZipFile": _placeholder_zip()},
            Environment={"Variables": dict(environment)},
            Timeout=timeout,
            MemorySize=memory_mb,
        )
        return str(response["FunctionArn"])

    def create_state_machine(self, name: str, definition: dict[str, Any]) -> str:
        """Create a STANDARD state machine from an ASL definition; returns its ARN."""
        response = self.sfn.create_state_machine(
            name=name,
            definition=json.dumps(definition),
            roleArn=f"arn:aws:iam::{self.account_id}:role/{_STATES_ROLE}",
            type="STANDARD",
        )
        return str(response["stateMachineArn"])

    # --- driving time --------------------------------------------------------------------------
    def _running_executions(self) -> list[Any]:
        # settle() asks this every poll: looking through every execution ever started made a broadcast of n
        # contacts cost O(n^2) (10,000 ended child runs re-checked 2,000 times a second, holding the GIL from
        # the batches). An execution that has ended does not run again (moto 5.2.5's interpreter has no
        # RedriveExecution), so only the executions started since the last look and those still running are
        # looked at; an execution of a deleted machine is no longer listed, as before.
        backend = stepfunctions_parser_backends[self.account_id][self.region]
        with self._executions_lock:  # stepwise local settles from its HTTP and clock threads
            machines = list(backend.state_machines)
            present = {id(state_machine) for state_machine in machines}
            for state_machine in machines:
                executions = list(state_machine.executions)
                seen = self._seen_executions.get(id(state_machine), (state_machine, 0))[1]
                self._maybe_running.extend((id(state_machine), e) for e in executions[seen:])
                self._seen_executions[id(state_machine)] = (state_machine, len(executions))
            for gone in set(self._seen_executions) - present:
                del self._seen_executions[gone]
            self._maybe_running = [
                (owner, e) for owner, e in self._maybe_running if owner in present and _status(e) == "RUNNING"
            ]
            return [execution for _, execution in self._maybe_running]

    def ended_executions(self) -> list[tuple[str, str]]:
        """(execution ARN, status) of every execution that is no longer running."""
        backend = stepfunctions_parser_backends[self.account_id][self.region]
        return [
            (execution.exec_arn, _status(execution))
            for state_machine in list(backend.state_machines)
            # moto types the list with its own Execution; the interpreter's backend fills it with the parser's
            for execution in cast(list[ParserExecution], list(state_machine.executions))
            if _status(execution) != "RUNNING"
        ]

    def _active_execution_arns(self) -> list[str] | None:
        """RUNNING executions with a thread still running; None if a blocked thread woke while looking."""
        # Busy set first, then the listing: an execution that starts in between is started by a
        # thread that was busy (or by the caller, who is not settling). Something woken in between
        # (a callback sent from a thread that then ended) moves the release counter: look again.
        releases, busy = self.clock.busy_snapshot()
        running = [execution.exec_arn for execution in self._running_executions()]
        if self.clock.release_count() != releases:
            return None
        return [arn for arn in running if arn in busy]

    def settle(self, timeout: float = 30.0) -> None:
        """Wait (real time) until every thread of every RUNNING execution is blocked on the virtual clock."""
        give_up = time.monotonic() + timeout
        while True:
            active = self._active_execution_arns()
            if active == []:
                return
            if time.monotonic() >= give_up:
                raise TimeoutError(f"executions still active after {timeout}s: {', '.join(active or ['?'])}")
            time.sleep(_SETTLE_POLL_SECONDS)

    def run_until(self, t: datetime) -> None:
        """Advance virtual time deadline by deadline up to t, letting executions run at each step."""
        while True:
            self.settle()
            deadline = self.clock.next_deadline()
            if deadline is None or deadline > t:
                break
            self.clock.advance_to(deadline)
        self.clock.advance_to(t)
        self.settle()

    def run_all(self, limit: timedelta = timedelta(days=400)) -> None:
        """Advance deadline by deadline until nothing waits on a deadline, or `limit` of virtual time."""
        end = self.clock.now() + limit
        while True:
            self.settle()
            deadline = self.clock.next_deadline()
            if deadline is None:
                return
            if deadline > end:
                self.clock.advance_to(end)
                self.settle()
                return
            self.clock.advance_to(deadline)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        """Every event of an execution's history, all pages."""
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": execution_arn}
        while True:
            page = self.sfn.get_execution_history(**kwargs)
            events.extend(page["events"])
            token = page.get("nextToken")
            if not token:
                return events
            kwargs["nextToken"] = token
