"""One-time schedules of the engine (abandonment, broadcasts): deterministic names, a registry of their kinds."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.events import stable_hash
from shared.store.schedules import ScheduleStore, StoredSchedule

if TYPE_CHECKING:
    from shared.routing import Router

# Scheduler names: at most 64 characters of [0-9a-zA-Z-_.]. A readable kind prefix, then a hash of kind + key.
_NAME_LIMIT = 64
_HASH_LENGTH = 40
# Modules whose import registers the kinds the router's schedule handler serves.
_KIND_MODULES = ("shared.runtime.abandonment", "shared.runtime.broadcast", "shared.runtime.engagement")


class UnknownScheduleKind(Exception):
    """A schedule's payload names a kind no handler is registered for (or names none)."""


class SchedulesNotConfigured(Exception):
    """Something must be scheduled but no scheduler is bound (the handler's start-up or the local stack binds one)."""


def schedule_name(kind: str, key: str) -> str:
    """The deterministic name of the schedule of `kind` for `key`: the same key always names the same schedule,
    so scheduling twice creates one and a cancel finds it by name."""
    prefix = "".join(c if c.isalnum() or c in "-_." else "-" for c in kind)[: _NAME_LIMIT - _HASH_LENGTH - 1]
    return f"{prefix}-{stable_hash(kind, key, length=_HASH_LENGTH)}"


class Schedules:
    """Schedules of the engine: `at` creates (once per kind + key), `cancel` deletes; payloads carry the kind."""

    def __init__(self, store: ScheduleStore) -> None:
        self.store = store

    def at(self, kind: str, key: str, when: datetime, payload: dict[str, Any]) -> bool:
        """Schedule `payload` (kind added) at `when`; False when this kind + key is scheduled already."""
        return self.store.create(schedule_name(kind, key), when, {**payload, "kind": kind})

    def cancel(self, kind: str, key: str) -> bool:
        """Delete the schedule of kind + key; False when it is gone (fired, or cancelled before)."""
        return self.store.delete(schedule_name(kind, key))

    def pending(self) -> list[StoredSchedule]:
        """Every schedule of the group with its time and payload (the local clock's view; costly in AWS)."""
        out = [s for s in (self.store.get(n) for n in self.store.names()) if s is not None]
        return sorted(out, key=lambda s: (s.at, s.name))


# The schedules the domain uses, bound once by the handler's start-up (AWS) or the local stack.
_bound: Schedules | None = None


def bind(schedules: Schedules | None) -> None:
    global _bound
    _bound = schedules


def bound() -> Schedules | None:
    return _bound


def required() -> Schedules:
    if _bound is None:
        raise SchedulesNotConfigured(
            "no EventBridge Scheduler bound: the router's start-up binds one from STEPWISE_SCHEDULE_GROUP, "
            "STEPWISE_SCHEDULE_TARGET_ARN and STEPWISE_SCHEDULER_ROLE_ARN"
        )
    return _bound


@dataclass
class ScheduleContext:
    """What a schedule's handler works with: the router (store, enroller, workflows) and the schedules."""

    router: Router
    schedules: Schedules
    # Anything else a kind needs (the broadcast starter, say), by name.
    extra: dict[str, Any] = field(default_factory=dict)


ScheduleHandler = Callable[[dict[str, Any], ScheduleContext], Any]
_HANDLERS: dict[str, ScheduleHandler] = {}


def register(kind: str) -> Callable[[ScheduleHandler], ScheduleHandler]:
    """Decorator: `fn(payload, ctx)` handles the schedules (and batch invocations) of `kind`."""

    def deco(fn: ScheduleHandler) -> ScheduleHandler:
        if kind in _HANDLERS and _HANDLERS[kind] is not fn:
            raise ValueError(f"schedule kind {kind!r} is registered twice")
        _HANDLERS[kind] = fn
        return fn

    return deco


def kinds() -> list[str]:
    _load_kinds()
    return sorted(_HANDLERS)


def dispatch(payload: dict[str, Any], ctx: ScheduleContext) -> Any:
    """Run the handler of the payload's kind: what the router's schedule handler does with each invocation."""
    _load_kinds()
    kind = payload.get("kind")
    if not isinstance(kind, str) or kind not in _HANDLERS:
        raise UnknownScheduleKind(f"field kind: {kind!r} is not one of {', '.join(sorted(_HANDLERS))}")
    return _HANDLERS[kind](payload, ctx)


def _load_kinds() -> None:
    for module in _KIND_MODULES:
        importlib.import_module(module)
