"""Patches moto's Step Functions interpreter and Lambda to run on a virtual clock with in-process handlers."""

from __future__ import annotations

import contextlib
import copy
import datetime as datetime_module
import importlib
import inspect
import json
import os
import sys
import threading
import time
import traceback
import types
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import moto
from moto.awslambda.models import LambdaBackend, LambdaFunction
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.models import botocore_stubber
from moto.core.responses import EmptyResult
from moto.core.serialize import AttributePicker, AttributePickerContext
from moto.core.utils import MISSING, get_value
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.stepfunctions.parser import models as sfn_parser_models
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEventException
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds
from moto.stepfunctions.parser.asl.component.program import program as program_module
from moto.stepfunctions.parser.asl.component.state import state as state_module
from moto.stepfunctions.parser.asl.component.state.exec import execute_state
from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
    inline_iteration_component as inline_iteration_module,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import job as job_module
from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import (
    branch_worker as branch_worker_module,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import (
    branches_decl as branches_decl_module,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_callback as callback_state_module,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.timestamp import Timestamp
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.asl.eval.callback.callback import (
    CallbackEndpoint,
    CallbackOutcome,
    CallbackOutcomeTimedOut,
    HeartbeatEndpoint,
    HeartbeatTimedOut,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager
from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.utils import boto_client as boto_client_module
from moto.stepfunctions.parser.backend import execution as execution_module
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
from moto.stepfunctions.parser.models import StepFunctionsParserBackend
from moto.stepfunctions.parser.utils import TMP_THREADS
from moto.stepfunctions.responses import StepFunctionResponse

import shared.clock
from stepwise.local.clock import VirtualClock, current_owner

_MISSING = object()
# The moto release these patches were written against (pyproject.toml pins it exactly). Each patch replaces a
# private attribute of moto's; docs/moto_patches.md says which behaviour each works around.
MOTO_VERSION = "5.2.5"
_install_lock = threading.Lock()
_installed = False

# os.environ is process-wide, so in-process handlers that each need their function's variables
# must not overlap; re-entrant because a handler may invoke another function synchronously.
_lambda_lock = threading.RLock()


class MotoPatchError(RuntimeError):
    """moto no longer has what a patch replaces: a renamed attribute would otherwise be added silently, and
    a virtual wait become a real sleep."""


def _where(target: Any) -> str:
    return getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or type(target).__name__


def _signature(fn: Any) -> list[str] | None:
    fn = fn.__func__ if isinstance(fn, staticmethod | classmethod) else fn
    if not inspect.isfunction(fn):
        return None
    params = list(inspect.signature(fn).parameters.values())
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        return None  # a pass-through wrapper: it takes whatever the original takes
    return [p.name for p in params]


class _Patcher:
    """Records every attribute it replaces so that uninstall restores exactly the originals. Refuses to replace
    an attribute moto does not have, or a function whose parameters moto has changed."""

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, Any]] = []

    def set(self, target: Any, name: str, value: Any) -> None:
        if not hasattr(target, name):
            raise MotoPatchError(
                f"moto {moto.__version__}: {_where(target)}.{name} does not exist; stepwise's local stack was "
                f"written for moto {MOTO_VERSION}: install moto=={MOTO_VERSION} (pyproject.toml) or update "
                "stepwise/local/patches.py (docs/moto_patches.md)"
            )
        current = inspect.getattr_static(target, name)
        before, after = _signature(current), _signature(value)
        if before is not None and after is not None and len(before) != len(after):
            raise MotoPatchError(
                f"moto {moto.__version__}: {_where(target)}.{name} now takes ({', '.join(before)}), the patch "
                f"({', '.join(after)}); written for moto {MOTO_VERSION}: install moto=={MOTO_VERSION} or update "
                "stepwise/local/patches.py"
            )
        # Read the raw __dict__ entry for classes so staticmethod wrappers survive the round trip.
        original = vars(target).get(name, _MISSING) if isinstance(target, type) else getattr(target, name)
        self._saved.append((target, name, original))
        setattr(target, name, value)

    def restore(self) -> None:
        for target, name, original in reversed(self._saved):
            if original is _MISSING:
                delattr(target, name)
            else:
                setattr(target, name, original)
        self._saved.clear()


def execution_arn_of(env: Environment) -> str:
    """The execution ARN an interpreter environment (or any of its frames) belongs to."""
    return str(env.states.context_object.context_object_data["Execution"]["Id"])


# moto bug: docs/moto_patches.md #2.


# Moto signals stops through env.program_state_event, but sets and immediately clears it, so a
# waiter that is not parked on that very Event misses it. Each environment gets a latched event.
_halts: weakref.WeakKeyDictionary[Environment, threading.Event] = weakref.WeakKeyDictionary()
_halts_lock = threading.Lock()


def _halt_event(env: Environment) -> threading.Event:
    with _halts_lock:
        halt = _halts.get(env)
        if halt is None:
            halt = _halts[env] = threading.Event()
        return halt


def _is_stopped(env: Environment) -> bool:
    return isinstance(env._program_state, ProgramStopped)


def _virtual_timeout(timeout_seconds: float | None) -> float | None:
    # moto's "no TimeoutSeconds" is 99999999 s; as a deadline it would make run_all jump years ahead.
    if timeout_seconds is None or timeout_seconds >= TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS:
        return None
    return float(timeout_seconds)


@dataclass
class LambdaContext:
    """The attributes of the AWS Lambda context object that handlers and Powertools read."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    timeout_seconds: float
    identity: Any = None
    client_context: Any = None
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self._started
        return max(0, int((self.timeout_seconds - elapsed) * 1000))


@contextlib.contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update({name: str(value) for name, value in variables.items()})
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _resolve_handler(handler: str) -> Callable[[Any, Any], Any]:
    module_name, _, attribute = handler.rpartition(".")
    if not module_name:
        raise ImportError(f"Bad handler '{handler}': expected module.path.function")
    return getattr(importlib.import_module(module_name), attribute)  # type: ignore[no-any-return]


def _error_payload(error_type: str, exc: BaseException) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": error_type,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def invoke_in_process(fn: LambdaFunction, event: Any) -> tuple[bytes, bool]:
    """Run a moto Lambda function's handler from this repository; returns (payload, errored)."""
    context = LambdaContext(
        function_name=fn.function_name,
        function_version=str(getattr(fn, "version", "$LATEST")),
        invoked_function_arn=fn.function_arn,
        memory_limit_in_mb=int(fn.memory_size),
        aws_request_id=str(uuid.uuid4()),
        log_group_name=f"/aws/lambda/{fn.function_name}",
        log_stream_name=f"{shared.clock.now():%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}",
        timeout_seconds=float(fn.timeout),
    )
    with _lambda_lock, _environment(dict(fn.environment_vars or {})):
        try:
            handler = _resolve_handler(str(fn.handler or ""))
        except (ImportError, AttributeError) as exc:
            return json.dumps(_error_payload("Runtime.ImportModuleError", exc)).encode(), True
        try:
            result = handler(event, context)
        except Exception as exc:
            return json.dumps(_error_payload(type(exc).__name__, exc)).encode(), True
    try:
        return json.dumps(result).encode(), False
    except (TypeError, ValueError) as exc:
        return json.dumps(_error_payload("Runtime.MarshalError", exc)).encode(), True


def _header(headers: Any, name: str, default: str) -> str:
    for key, value in dict(headers or {}).items():
        if key.lower() == name:
            return str(value)
    return default


def _sfn_parser_modules() -> list[types.ModuleType]:
    return [
        module
        for name, module in list(sys.modules.items())
        if name.startswith("moto.stepfunctions.parser.") and module is not None
    ]


def _halted(clock: VirtualClock, env: Environment) -> threading.Event:
    halt = _halt_event(env)
    # A stop may have landed before the halt event existed; latch it now.
    if not env.is_running():
        clock.set_event(halt)
    return halt


def _patch_waits(clock: VirtualClock, patcher: _Patcher) -> None:
    # moto's Wait states, timestamp waits and retry intervals really sleep (time.sleep, Event.wait): a workflow
    # with a 3-day wait would take 3 days. Each wait goes onto the virtual clock instead (not a moto bug).
    def wait_interval(self: WaitFunction, env: Environment, wait_seconds: float) -> None:
        if wait_seconds <= 0:
            return
        deadline = clock.now() + timedelta(seconds=wait_seconds)
        clock.sleep_until(deadline, owner=execution_arn_of(env), interrupt=_halted(clock, env))

    def timestamp_wait_seconds(self: Timestamp, env: Environment) -> float:
        self.string.eval(env=env)
        timestamp_str: str = env.stack.pop()
        timestamp = self._from_timestamp_string(timestamp=timestamp_str)
        if timestamp is None:
            raise FailureEventException(self._create_failure_event(env, timestamp_str))
        # moto bug: docs/moto_patches.md #1.
        # It parses "...Z" into a naive datetime and compares it with naive
        # local time, so with TZ set away from UTC a timestamp wait is off by the zone's offset.
        return (timestamp.replace(tzinfo=UTC) - clock.now()).total_seconds()

    patcher.set(WaitFunction, "_wait_interval", wait_interval)
    patcher.set(Timestamp, "_get_wait_seconds", timestamp_wait_seconds)

    # The retrier calls time.sleep(interval) without the environment; hand it over per thread.
    retry_env = threading.local()
    original_retrier_eval = retrier_decl.RetrierDecl._eval_body

    def retrier_eval_body(self: retrier_decl.RetrierDecl, env: Environment) -> None:
        retry_env.env = env
        try:
            original_retrier_eval(self, env)
        finally:
            retry_env.env = None

    def retry_sleep(seconds: float) -> None:
        env: Environment | None = getattr(retry_env, "env", None)
        if env is None or seconds <= 0:
            return
        deadline = clock.now() + timedelta(seconds=seconds)
        clock.sleep_until(deadline, owner=execution_arn_of(env), interrupt=_halted(clock, env))

    patcher.set(retrier_decl.RetrierDecl, "_eval_body", retrier_eval_body)
    patcher.set(retrier_decl, "time", types.SimpleNamespace(sleep=retry_sleep))


def _patch_stops(clock: VirtualClock, patcher: _Patcher) -> None:
    def wrap_state_setter(original: Callable[..., None], *, yields_to_stop: bool) -> Callable[..., None]:
        def setter(self: Environment, *args: Any, **kwargs: Any) -> None:
            # moto bug: docs/moto_patches.md #3.
            # Moto lets an error raised while a stopped execution unwinds overwrite the stop, turning
            # ABORTED into FAILED; on AWS a stop is final.
            if yields_to_stop and _is_stopped(self):
                return
            original(self, *args, **kwargs)
            if not self.is_running():
                clock.set_event(_halt_event(self))

        return setter

    for name in ("set_ended", "set_error", "set_timed_out", "set_stop"):
        yields = name in ("set_error", "set_timed_out")
        patcher.set(Environment, name, wrap_state_setter(getattr(Environment, name), yields_to_stop=yields))

    # A task whose wait was cut short by a stop unwinds with an exception; without this it would be
    # recorded as TaskTimedOut/TaskFailed and run Retry/Catch before the ExecutionAborted event.
    original_evaluate_with_timeout = ExecutionState._evaluate_with_timeout

    def evaluate_with_timeout(self: ExecutionState, env: Environment) -> None:
        try:
            original_evaluate_with_timeout(self, env)
        except Exception:
            if not _is_stopped(env):
                raise

    patcher.set(ExecutionState, "_evaluate_with_timeout", evaluate_with_timeout)


def _patch_task_tokens(clock: VirtualClock, patcher: _Patcher) -> None:
    # .waitForTaskToken waits (and their TimeoutSeconds and heartbeats) block on real-time Events; they move onto
    # the virtual clock so a 7-day wait_until timeout fires in virtual time (not a moto bug).
    def callback_notify(self: CallbackEndpoint, outcome: CallbackOutcome) -> None:
        self._outcome = outcome
        clock.set_event(self._notify_event)
        if self._heartbeat_endpoint:
            self._heartbeat_endpoint.notify()

    def heartbeat_notify(self: HeartbeatEndpoint) -> None:
        with self._mutex:
            clock.set_event(self._next_heartbeat_event)

    def wait_with_heartbeat(
        env: Environment,
        timeout: float | None,
        callback_endpoint: CallbackEndpoint,
        heartbeat_endpoint: HeartbeatEndpoint,
    ) -> CallbackOutcome | HeartbeatTimedOut | None:
        owner, halt = execution_arn_of(env), _halted(clock, env)
        deadline = None if timeout is None else clock.now() + timedelta(seconds=timeout)
        beat = heartbeat_endpoint._next_heartbeat_event
        while env.is_running():
            with heartbeat_endpoint._mutex:
                beat.clear()
            # Checked after clearing: notify stores the outcome before it signals the beat.
            outcome = callback_endpoint.get_outcome()
            if outcome is not None:
                return outcome
            window = float(heartbeat_endpoint._heartbeat_seconds)
            if deadline is not None:
                remaining = (deadline - clock.now()).total_seconds()
                if remaining <= 0:
                    return None
                window = min(window, remaining)
            if not clock.wait_event(beat, window, owner=owner, interrupt=halt):
                outcome = callback_endpoint.get_outcome()
                if outcome is not None or halt.is_set():
                    return outcome
                if deadline is not None and clock.now() >= deadline:
                    return None
                return HeartbeatTimedOut()
        return callback_endpoint.get_outcome()

    def eval_wait_for_task_token(
        self: StateTaskServiceCallback,
        env: Environment,
        timeout_seconds: int,
        callback_endpoint: CallbackEndpoint,
        heartbeat_endpoint: HeartbeatEndpoint | None,
    ) -> CallbackOutcome | HeartbeatTimedOut:
        timeout = _virtual_timeout(timeout_seconds)
        outcome: CallbackOutcome | HeartbeatTimedOut | None
        if heartbeat_endpoint is not None:
            outcome = wait_with_heartbeat(env, timeout, callback_endpoint, heartbeat_endpoint)
        else:
            clock.wait_event(
                callback_endpoint._notify_event,
                timeout,
                owner=execution_arn_of(env),
                interrupt=_halted(clock, env),
            )
            outcome = callback_endpoint.get_outcome()
        if outcome is None:
            # moto's own timeout outcome: raised as CallbackTimeoutError, caught as States.Timeout.
            return CallbackOutcomeTimedOut(callback_id=callback_endpoint.callback_id)
        return outcome

    patcher.set(CallbackEndpoint, "notify", callback_notify)
    patcher.set(HeartbeatEndpoint, "notify", heartbeat_notify)
    patcher.set(StateTaskServiceCallback, "_eval_wait_for_task_token", eval_wait_for_task_token)


def _patch_threads(clock: VirtualClock, patcher: _Patcher) -> None:
    # moto runs every program, state and Parallel/Map branch on its own thread and joins it with
    # real-time waits (a state's TimeoutSeconds, a machine's TimeoutSeconds). Counting those
    # threads per execution and moving their joins onto the clock lets settle() see when a whole
    # execution is idle, and makes those timeouts virtual.
    class OwnedThread(threading.Thread):
        """A thread counted as running for its execution until it ends; join() waits on the clock."""

        def __init__(self, *args: Any, owner: str | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.stepwise_owner = owner if owner is not None else current_owner()
            self.stepwise_done = threading.Event()

        def start(self) -> None:
            if self.stepwise_owner is not None:
                clock.thread_starting(self.stepwise_owner)
            super().start()

        def run(self) -> None:
            if self.stepwise_owner is None:
                super().run()
                return
            clock.thread_running(self.stepwise_owner)
            try:
                super().run()
            finally:
                clock.thread_finished(self.stepwise_done)

        def join(self, timeout: float | None = None) -> None:
            if self.stepwise_owner is None or current_owner() is None:
                super().join(timeout)
                return
            if clock.wait_event(self.stepwise_done, _virtual_timeout(timeout), owner=self.stepwise_owner):
                super().join()  # the thread has finished its work; this returns at once

    class ClockEvent(threading.Event):
        """An Event whose waits count as blocked on the clock and whose timeouts are virtual."""

        def set(self) -> None:
            clock.set_event(self)

        def wait(self, timeout: float | None = None) -> bool:
            owner = current_owner()
            if owner is None:
                return super().wait(timeout)
            return clock.wait_event(self, _virtual_timeout(timeout), owner=owner)

    interpreter_threading = types.SimpleNamespace(
        **{name: getattr(threading, name) for name in dir(threading) if not name.startswith("__")}
    )
    interpreter_threading.Thread = OwnedThread
    interpreter_threading.Event = ClockEvent
    for module in (
        program_module,
        execute_state,
        branch_worker_module,
        branches_decl_module,
        inline_iteration_module,
        job_module,
        callback_state_module,
    ):
        patcher.set(module, "threading", interpreter_threading)
    patcher.set(execute_state, "Thread", OwnedThread)

    def worker_start(self: ExecutionWorker) -> None:
        # Counted from the caller's thread, before the execution thread exists: no idle gap.
        arn = self._evaluation_details.execution_details.arn
        thread = OwnedThread(target=self._execution_logic, daemon=True, owner=arn)
        TMP_THREADS.append(thread)
        thread.start()

    patcher.set(ExecutionWorker, "start", worker_start)


def _patch_timestamps(clock: VirtualClock, patcher: _Patcher) -> None:
    # History events, $$.State.EnteredTime, execution start and stop dates read the wall clock; they read the
    # virtual clock instead, so records and timestamps agree with the compressed waits (not a moto bug).
    class VirtualDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
            current = clock.now()
            return current.astimezone(tz) if tz is not None else current.astimezone().replace(tzinfo=None)

    virtual_datetime_module = types.SimpleNamespace(
        **{name: getattr(datetime_module, name) for name in dir(datetime_module) if not name.startswith("__")}
    )
    virtual_datetime_module.datetime = VirtualDatetime
    for module in (state_module, sfn_parser_models, execution_module):
        patcher.set(module, "datetime", virtual_datetime_module)
    patcher.set(EventManager, "_get_current_timestamp", staticmethod(clock.now))


def _patch_api_quirks(patcher: _Patcher) -> None:
    # moto bug: docs/moto_patches.md #4.
    # The interpreter backend does not default a missing name as AWS does (a UUID): every unnamed
    # execution gets ARN "...:None", so the second unnamed start of a machine fails or is deduplicated.
    original_start_execution = StepFunctionsParserBackend.start_execution

    def start_execution(
        self: StepFunctionsParserBackend,
        state_machine_arn: str,
        name: Any = None,
        execution_input: Any = None,
        trace_header: Any = None,
    ) -> Any:
        return original_start_execution(
            self, state_machine_arn, name or str(uuid.uuid4()), execution_input, trace_header
        )

    patcher.set(StepFunctionsParserBackend, "start_execution", start_execution)

    # moto bug: docs/moto_patches.md #5.

    # Its response handler drops SendTaskFailure's `cause`, so a Catch would see Cause: null.
    def send_task_failure(self: StepFunctionResponse) -> Any:
        backend: Any = self.stepfunction_backend  # the interpreter backend, which accepts `cause`
        backend.send_task_failure(
            self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
        )
        return EmptyResult()

    patcher.set(StepFunctionResponse, "send_task_failure", send_task_failure)


def _patch_versions(patcher: _Patcher) -> None:
    # moto bug: docs/moto_patches.md #11.
    # moto publishes versions and creates aliases, but StartExecution through either fails (an alias ARN:
    # StateMachineDoesNotExist; a version ARN: AttributeError), and DescribeExecution never answers
    # stateMachineVersionArn / stateMachineAliasArn. AWS runs the version's definition (an alias: the version with
    # the most weight) and names both. This starts the execution on the machine with that version's definition and
    # answers DescribeExecution with the ARNs it went through, so a restart pinned to a version behaves as in AWS.
    original_start_execution = StepFunctionsParserBackend.start_execution  # _patch_api_quirks' (a name default)
    original_describe = StepFunctionResponse.describe_execution

    def start_execution(
        self: StepFunctionsParserBackend,
        state_machine_arn: str,
        name: Any = None,
        execution_input: Any = None,
        trace_header: Any = None,
    ) -> Any:
        parts = state_machine_arn.split(":")
        if len(parts) != 8:
            return original_start_execution(self, state_machine_arn, name, execution_input, trace_header)
        base_arn, alias_arn, version_arn = ":".join(parts[:7]), "", state_machine_arn
        if not parts[7].isdigit():
            alias: Any = self.describe_state_machine_alias(state_machine_arn)
            alias_arn = state_machine_arn
            version_arn = max(alias.routing_configuration, key=lambda r: r["weight"])["stateMachineVersionArn"]
        version: Any = self.describe_state_machine(version_arn)
        machine: Any = self.describe_state_machine(base_arn)
        saved = machine.definition
        machine.definition = version.definition
        try:
            execution = original_start_execution(self, base_arn, name, execution_input, trace_header)
        finally:
            machine.definition = saved
        _versions_started(self).setdefault(execution.exec_arn, (version_arn, alias_arn))
        return execution

    def describe_execution(self: StepFunctionResponse) -> Any:
        result: Any = original_describe(self)
        through = _versions_started(self.stepfunction_backend).get(self._get_param("executionArn"))
        if through is not None:
            result.result["stateMachineVersionArn"] = through[0]
            if through[1]:
                result.result["stateMachineAliasArn"] = through[1]
        return result

    patcher.set(StepFunctionsParserBackend, "start_execution", start_execution)
    patcher.set(StepFunctionResponse, "describe_execution", describe_execution)


def _versions_started(backend: Any) -> dict[str, tuple[str, str]]:
    """Execution ARN -> (version ARN, alias ARN or "") of the runs started through a version or an alias, kept on
    moto's backend (one per account and Region), so they go when the backend is reset."""
    found: dict[str, tuple[str, str]] | None = getattr(backend, "_stepwise_versions", None)
    if found is None:
        found = {}
        backend._stepwise_versions = found
    return found


def _patch_lambda(patcher: _Patcher) -> None:
    # moto runs a Lambda function in a Docker container; there is no Docker engine here. The function's handler
    # from this repository runs in-process with its environment instead (not a moto bug: a design choice).
    def lambda_invoke(self: LambdaFunction, body: Any, request_headers: Any, response_headers: Any) -> bytes:
        event = json.loads(body) if body else {}
        payload, errored = invoke_in_process(self, event)
        if errored:
            response_headers["x-amz-function-error"] = "Unhandled"
        if _header(request_headers, "x-amz-invocation-type", "RequestResponse") == "Event":
            return b""
        return payload

    patcher.set(LambdaFunction, "invoke", lambda_invoke)
    # Without Docker moto may route to the canned-answer backend; send it to the real one instead.
    patcher.set(LambdaSimpleBackend, "invoke", LambdaBackend.invoke)


def _patch_dynamodb(patcher: _Patcher) -> None:
    # moto bug: docs/moto_patches.md #6.
    # Moto's DynamoDB is not thread-safe, and the router writes while executions' step runners do:
    # TransactWriteItems deep-copies the table for its rollback (a concurrent write raised "dictionary
    # changed size during iteration") and a rollback puts that copy back, losing writes made meanwhile.
    # DynamoDB applies each request atomically; one request at a time gives the same guarantee here.
    dynamodb_lock = threading.RLock()
    original_call_action = DynamoHandler.call_action

    def call_action(self: DynamoHandler) -> Any:
        with dynamodb_lock:
            return original_call_action(self)

    patcher.set(DynamoHandler, "call_action", call_action)

    # moto performance: docs/moto_patches.md #7.

    # For its rollback, TransactWriteItems deep-copies every table it touches, stream records included: a
    # cost that grows with the table on every step, quadratic over a simulation of many contacts. Here it
    # keeps a copy of just the items the transaction names and puts those back when it is cancelled.
    original_transact = DynamoDBBackend.transact_write_items

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        saved: list[tuple[Table, DynamoType, DynamoType | None, Any]] = []
        streams: dict[int, tuple[Table, int]] = {}
        for entry in transact_items:
            op = next(iter(entry.values()), None)
            if not isinstance(op, dict):
                continue
            name = op.get("TableName")
            table = self.tables.get(name) if isinstance(name, str) else None
            if table is None:
                continue
            attrs = op.get("Key") or op.get("Item") or {}
            if table.hash_key_attr not in attrs or (table.range_key_attr and table.range_key_attr not in attrs):
                continue  # moto rejects it before writing anything
            hash_value = DynamoType(attrs[table.hash_key_attr])
            range_value = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr in attrs else None
            saved.append((table, hash_value, range_value, copy.deepcopy(table.get_item(hash_value, range_value))))
            if table.stream_shard is not None:
                streams[id(table)] = (table, len(table.stream_shard.items))
        try:
            original_transact(self, transact_items)
        except Exception:
            for table, hash_value, range_value, before in reversed(saved):
                if range_value is None:
                    if before is None:
                        table.items.pop(hash_value, None)
                    else:
                        table.items[hash_value] = before
                elif before is None:
                    table.items[hash_value].pop(range_value, None)
                else:
                    table.items[hash_value][range_value] = before
            for table, length in streams.values():
                del table.stream_shard.items[length:]  # type: ignore[union-attr]
            raise

    def no_table_copies(value: Any, memo: Any = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    patcher.set(DynamoDBBackend, "transact_write_items", transact_write_items)
    patcher.set(dynamodb_models, "copy", types.SimpleNamespace(deepcopy=no_table_copies))

    # moto performance: docs/moto_patches.md #8.

    # A query on the table's own key looks through every item of the table for the partition key's; the
    # partition's own items are the same result, found without growing with the table.
    original_query = Table.query
    original_all_items = Table.all_items
    partition = threading.local()

    def query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name or hash_key is None or not self.range_key_attr:
            return original_query(self, hash_key, *args, **kwargs)
        partition.key = hash_key
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            partition.key = None

    def all_items(self: Table) -> Any:
        key = getattr(partition, "key", None)
        if key is None:
            return original_all_items(self)
        return list(self.items[key].values()) if key in self.items else []

    patcher.set(Table, "query", query)
    patcher.set(Table, "all_items", all_items)


def _patch_parsing(patcher: _Patcher) -> None:
    # moto performance: docs/moto_patches.md #9.
    # Moto parses the definition again for every execution (a quarter of a second for a compiled workflow);
    # the parsed program is immutable (all run state lives in the Environment), so one per definition serves all.
    programs: dict[str, Any] = {}
    programs_lock = threading.Lock()

    def evaluation_entrypoint(self: ExecutionWorker) -> Any:
        definition = self._evaluation_details.state_machine_details.definition
        with programs_lock:
            program = programs.get(definition)
        if program is None:
            program = AmazonStateLanguageParser.parse(definition)[0]
            with programs_lock:
                programs[definition] = program
        return program

    patcher.set(ExecutionWorker, "_get_evaluation_entrypoint", evaluation_entrypoint)


def _patch_boto_clients(patcher: _Patcher) -> Callable[[], None]:
    # moto performance: docs/moto_patches.md #10.
    # Moto builds a boto3 client per integration task; reusing them roughly doubles throughput.
    original_client_for = boto_client_module.boto_client_for
    clients: dict[tuple[str, str, bool], Any] = {}
    clients_lock = threading.Lock()

    def cached_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        key = (region, service, bool(botocore_stubber.enabled))
        with clients_lock:
            client = clients.get(key)
            if client is None:
                client = clients[key] = original_client_for(region, service, state_credentials)
            return client

    patcher.set(boto_client_module, "boto_client_for", cached_client_for)
    for module in _sfn_parser_modules():
        if getattr(module, "boto_client_for", None) is original_client_for:
            patcher.set(module, "boto_client_for", cached_client_for)

    def forget() -> None:
        # Modules first imported while installed copied the cached function from boto_client.
        for module in _sfn_parser_modules():
            if getattr(module, "boto_client_for", None) is cached_client_for:
                module.boto_client_for = original_client_for  # type: ignore[attr-defined]
        clients.clear()

    return forget


def _patch_serializer(patcher: _Patcher) -> None:
    # moto performance: docs/moto_patches.md #12.
    # Moto's response serializer asks its attribute picker for every member of every structure it writes (each
    # DynamoDB AttributeValue: ten members, one present), and the picker builds six alias providers each time to
    # list the keys the member may be under (this patch takes 40% off the serializer's time; the doc has the
    # figures). For a plain dict those keys depend only on the member's shape, its
    # parent shape and its name (the two providers that look at the object read its Meta, which a dict lacks,
    # and its class name, always "dict"), so they are listed once per (picker kind, shape, parent, name).
    original_call = AttributePicker.__call__
    keys_by_member: dict[tuple[Any, ...], tuple[Any, Any, tuple[str, ...]]] = {}

    def call(self: AttributePicker, context: AttributePickerContext) -> Any:
        obj = context.obj
        if type(obj) is not dict:
            return original_call(self, context)
        shape = context.shape
        parent = getattr(shape, "parent", None)
        member = (type(self), tuple(self.alias_providers), id(shape), id(parent), context.key)
        known = keys_by_member.get(member)
        if known is None or known[0] is not shape or known[1] is not parent:
            # The shapes are held with their keys, so an id is never reused for another shape meanwhile.
            known = keys_by_member[member] = (shape, parent, tuple(self.get_possible_keys(context)))
        for possible_key in known[2]:
            value = get_value(obj, possible_key, MISSING)
            if value is not MISSING:
                break
        else:
            value = None
        key_path = f"{context.key_path}.{context.key}"
        for transform_path, transform in self.response_transformers.items():
            if key_path.endswith(transform_path):
                value = transform(value)
                break
        return value

    patcher.set(AttributePicker, "__call__", call)


def install(clock: VirtualClock) -> Callable[[], None]:
    """Patch moto to run Step Functions on `clock` and Lambda in-process; returns the uninstall function."""
    global _installed
    with _install_lock:
        if _installed:
            raise RuntimeError("stepwise.local patches are already installed")
        _installed = True

    patcher = _Patcher()
    cleanups: list[Callable[[], None]] = []

    def uninstall() -> None:
        global _installed
        shared.clock.use(None)
        patcher.restore()
        for cleanup in cleanups:
            cleanup()
        with _install_lock:
            _installed = False

    try:
        _patch_waits(clock, patcher)
        _patch_stops(clock, patcher)
        _patch_task_tokens(clock, patcher)
        _patch_threads(clock, patcher)
        _patch_timestamps(clock, patcher)
        _patch_api_quirks(patcher)
        _patch_versions(patcher)
        _patch_lambda(patcher)
        _patch_dynamodb(patcher)
        _patch_parsing(patcher)
        _patch_serializer(patcher)
        cleanups.append(_patch_boto_clients(patcher))
        shared.clock.use(clock.now)
    except BaseException:
        uninstall()
        raise
    return uninstall
