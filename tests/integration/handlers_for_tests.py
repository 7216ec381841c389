"""Tiny Lambda handlers that the local-stack integration tests run in-process."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from typing import Any

import shared.clock

# Module-level so tests can read what handlers saw; guarded since executions run on many threads.
_lock = threading.Lock()
TOKENS: list[str] = []
RECORDS: list[tuple[str, str]] = []
CONTEXTS: list[dict[str, Any]] = []


class ContactNotFound(Exception):
    """A typed domain error that an ASL Catch matches by class name."""


def reset() -> None:
    with _lock:
        TOKENS.clear()
        RECORDS.clear()
        CONTEXTS.clear()


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with _lock:
        CONTEXTS.append(
            {
                "function_name": context.function_name,
                "invoked_function_arn": context.invoked_function_arn,
                "memory_limit_in_mb": context.memory_limit_in_mb,
                "remaining_ms": context.get_remaining_time_in_millis(),
                "greeting": os.environ.get("GREETING"),
            }
        )
    return {"echo": event, "greeting": os.environ.get("GREETING"), "now": shared.clock.now().isoformat()}


def find_contact(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise ContactNotFound(f"no contact {event.get('contact_id')}")


def store_token(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with _lock:
        TOKENS.append(event["token"])
    return {"stored": True}


def record(event: dict[str, Any], context: Any) -> dict[str, Any]:
    now = shared.clock.now().isoformat()
    with _lock:
        RECORDS.append((event["label"], now))
    return {"label": event["label"], "at": now}


def _powertools_handler() -> Any:
    # Built lazily so importing this module does not configure Powertools for every test.
    from aws_lambda_powertools import Logger, Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    # The log lines go to a buffer the handler hands back, so the test reads exactly what Powertools wrote.
    stream = io.StringIO()
    logger = Logger(service="stepwise-tests", logger_handler=logging.StreamHandler(stream))
    metrics = Metrics(namespace="StepwiseTests", service="stepwise-tests")

    @logger.inject_lambda_context
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        stream.seek(0)
        stream.truncate()
        logger.info("handled", extra={"contact_id": event.get("contact_id")})
        metrics.add_metric(name="Handled", unit=MetricUnit.Count, value=1)
        return {"request_id": context.aws_request_id, "log": json.loads(stream.getvalue().splitlines()[-1])}

    return handler


_powertools: Any = None


def powertools(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _powertools
    if _powertools is None:
        _powertools = _powertools_handler()
    result: dict[str, Any] = _powertools(event, context)
    return result
