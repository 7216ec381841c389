"""The CLI's one error handler: every failure is one line saying what and where, with a documented exit code.

Exit codes (README, `stepwise --help`):
  0  done: the files are valid, the command did what was asked
  1  problems found in your files (validate, compile, cost, simulate print each), or a run failed
  2  the command could not be run as given: a usage error, an option value, a file that is missing or unreadable
  3  an internal error: a bug in stepwise (run again with --debug for the traceback, and report it)
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from collections.abc import Callable
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
