"""The CLI's one error handler: every failure is one line saying what and where, with a documented exit code.

Exit codes (README, `stepwise --help`):
  0  done: the files are valid, the command did what was asked
  1  problems found in your files (validate, compile, cost, simulate print each), or a run failed
  2  the command could not be run as given: a usage error, an option value, a file that is missing or unreadable,
     a required option missing, or an AWS resource, credential or endpoint the command could not use (a wrong
     --table or state machine ARN, no credentials, an unreachable AWS_ENDPOINT_URL)
  3  an internal error: a bug in stepwise (run again with --debug for the traceback, and report it)
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TextIO

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


class CliError(Exception):
    """A failure the user can fix: `message` names the file, line or option and what to do."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def run(func: Callable[[], int], *, debug: bool = False, err: TextIO | None = None) -> int:
    """`func()`'s exit code; any exception it raises becomes one line on stderr and its exit code."""
    err = err or sys.stderr
    try:
        return int(func())
    except CliError as e:
        _debug(debug, err)
        print(f"stepwise: {e.message}", file=err)
        return e.code
    except KeyboardInterrupt:
        print("stepwise: interrupted", file=err)
        return 130
    except BrokenPipeError:
        return EXIT_OK  # `stepwise compile x | head`: the reader stopped reading
    except Exception as e:  # SystemExit is not an Exception: argparse's usage errors exit 2 on their own
        _debug(debug, err)
        if is_aws_error(e):  # a command that did not say which resource it was using: still one line, exit 2
            print(f"stepwise: {aws_message('', e, {})}", file=err)
            return EXIT_USAGE
        print(f"stepwise: internal error: {describe(e)}", file=err)
        if not debug:
            print("stepwise: run again with --debug for the traceback, and report it", file=err)
        return EXIT_INTERNAL


def _debug(debug: bool, err: TextIO) -> None:
    if debug:
        traceback.print_exc(file=err)


def describe(e: BaseException) -> str:
    """One line for an unexpected exception: its type and the first line of its message (no internals' dumps)."""
    text = str(e).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > 200:
        first = first[:199] + "…"
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


# ---- AWS: a wrong --table, missing credentials or an unreachable endpoint is the user's to fix, not a bug ------

# What each kind of resource is called on the line, and the option that names it.
_RESOURCES = {"table": ("table", "--table"), "machine": ("state machine", "--machine-arn-template"),
              "bucket": ("bucket", "--bucket")}  # fmt: skip
_NOT_FOUND = {"ResourceNotFoundException", "StateMachineDoesNotExist", "ExecutionDoesNotExist", "NoSuchBucket",
              "ResourceNotFound", "StateMachineAliasDoesNotExist", "StateMachineVersionDoesNotExist"}  # fmt: skip
_CREDENTIALS = {"UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
                "InvalidSignatureException", "SignatureDoesNotMatch", "AccessDenied", "AccessDeniedException",
                "InvalidAccessKeyId", "MissingAuthenticationToken"}  # fmt: skip


def is_aws_error(e: BaseException) -> bool:
    """botocore's errors (ClientError, NoCredentialsError, EndpointConnectionError...), without importing it."""
    return any(cls.__module__.startswith("botocore") for cls in type(e).__mro__ if cls is not BaseException)


def _resource_of(operation: str) -> str:
    """Which of the command's resources an operation acts on, from its name (DynamoDB's are the rest)."""
    if "Execution" in operation or "StateMachine" in operation:
        return "machine"
    if "Object" in operation or "Bucket" in operation:
        return "bucket"
    if "Metric" in operation:
        return "metrics"
    return "table"


def aws_message(command: str, e: BaseException, resources: dict[str, str | None]) -> str:
    """One line: the command, the AWS operation, the resource it was used on, what AWS said and what to check."""
    where = f"{command}: " if command else ""
    name = type(e).__name__
    if name == "NoCredentialsError" or name == "PartialCredentialsError":
        return (
            f"{where}no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
            "(for stepwise local, any test keys and AWS_ENDPOINT_URL)"
        )
    if name == "NoRegionError":
        return f"{where}no AWS region set; set AWS_DEFAULT_REGION to the stack's region"
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"):
        url = getattr(e, "kwargs", {}).get("endpoint_url", "")
        return (
            f"{where}cannot reach AWS{f' at {url}' if url else ''}; check AWS_ENDPOINT_URL (for stepwise local: "
            "is it running?), AWS_DEFAULT_REGION and your network"
        )
    response = getattr(e, "response", None)
    if not isinstance(response, dict):  # another botocore error: its own words
        return f"{where}AWS: {describe(e)}; check the stack's outputs, your credentials and AWS_ENDPOINT_URL"
    error = response.get("Error") or {}
    code, said = str(error.get("Code", "")), str(error.get("Message", "")).strip()
    operation = str(getattr(e, "operation_name", "") or "")
    kind = _resource_of(operation)
    label, flag = _RESOURCES.get(kind, ("CloudWatch metrics", ""))
    value = resources.get(kind)
    on = f" on {label} {value}" if value else (f" on {label}" if kind == "metrics" else "")
    what = f"{operation}{on} failed: {code}" + (f" ({said})" if said else "")
    if code in _CREDENTIALS:
        todo = f"check your AWS credentials (AWS_PROFILE) and that they may call {operation}"
    elif code in _NOT_FOUND and flag:
        todo = f"check {flag} against the stack's outputs, and AWS_DEFAULT_REGION (AWS_ENDPOINT_URL for stepwise local)"
    else:
        todo = "check the stack's outputs, your credentials and AWS_ENDPOINT_URL (for stepwise local)"
    return f"{where}{what}; {todo}"


@contextmanager
def aws(command: str, **resources: str | None) -> Iterator[None]:
    """Inside it, an AWS error becomes a CliError (exit 2) naming `command`, the operation and the resource it was
    used on (table=, machine=, bucket=: the values of the options that name them)."""
    try:
        yield
    except Exception as e:
        if not is_aws_error(e):
            raise
        raise CliError(aws_message(command, e, resources), EXIT_USAGE) from e


# ---- argument types (argparse reports their ValueError as "argument --x: invalid ... value", exit 2) -----------


def iso_time(text: str) -> str:
    """An ISO 8601 time with its zone, or +duration (relative): kept as written, checked here."""
    if text.startswith("+"):
        return text
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(text) from None
    if at.tzinfo is None:
        raise ValueError(text)
    return text


iso_time.__name__ = "ISO 8601 time with a zone (e.g. 2026-12-01T09:00:00Z)"


def contact_count(text: str) -> int:
    """A whole number of contacts, 0 or more."""
    n = int(text)
    if n < 0:
        raise ValueError(text)
    return n


contact_count.__name__ = "number of contacts (a whole number, 0 or more)"


# ---- JSON that DynamoDB and Step Functions can carry ------------------------------------------------------------


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is too large to store (not a finite number); write a smaller one")
    return value


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a number JSON allows; write a number or a string")


def strict_json_loads(text: str) -> Any:
    """json.loads refusing what it accepts beyond JSON (NaN, Infinity) and numbers that overflow to infinity
    (1e400): DynamoDB cannot store them and the run would fail far from the line that caused it."""
    return json.loads(text, parse_float=_finite, parse_constant=_no_constant)
