"""Powertools' Logger made at a Lambda's first invocation, not at its import (issue 11 item 9).

Importing any of Powertools' Logger loads its Metrics and Tracer too (~25 ms of a cold start's import); a handler
module makes a `FirstUseLogger` at import instead, which costs nothing, and its first log line or first wrapped
invocation makes the real Logger. `inject_lambda_context` wraps each handler in Powertools' own on its first call,
so what is logged (the Lambda context's keys, the state cleared per invocation) is as before."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

_Handler = TypeVar("_Handler", bound=Callable[..., Any])


class FirstUseLogger:
    """The Logger of `service`, made when first used."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._logger: Logger | None = None

    def get(self) -> Logger:
        if self._logger is None:
            from aws_lambda_powertools import Logger

            self._logger = Logger(service=self.service)
        return self._logger

    def debug(self, msg: str, **kw: Any) -> None:
        self.get().debug(msg, **kw)

    def info(self, msg: str, **kw: Any) -> None:
        self.get().info(msg, **kw)

    def warning(self, msg: str, **kw: Any) -> None:
        self.get().warning(msg, **kw)

    def exception(self, msg: str, **kw: Any) -> None:
        self.get().exception(msg, **kw)

    def append_keys(self, **keys: Any) -> None:
        self.get().append_keys(**keys)

    def inject_lambda_context(self, *, clear_state: bool) -> Callable[[_Handler], _Handler]:
        def decorate(handler: _Handler) -> _Handler:
            wrapped: list[Callable[..., Any]] = []

            @functools.wraps(handler)
            def run(event: Any, context: Any) -> Any:
                if not wrapped:
                    wrapped.append(self.get().inject_lambda_context(handler, clear_state=clear_state))
                return wrapped[0](event, context)

            return run  # type: ignore[return-value]

        return decorate
