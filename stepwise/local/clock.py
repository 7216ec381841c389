"""Deterministic discrete-event virtual clock on which local Step Functions executions block."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

# A blocked thread re-checks its watched and interrupt events this often (real seconds), only as a
# safety net for code that sets them without going through `set_event`.
_POLL_SECONDS = 0.25


@dataclass(eq=False)
class _Waiter:
    owner: str
    deadline: datetime | None
    watched: threading.Event | None
    interrupt: threading.Event | None
    wake: threading.Event = field(default_factory=threading.Event)


class VirtualClock:
    """Virtual time plus a registry of the owners (execution ARNs) whose threads are blocked on it.

    Time only moves when `advance_to` is called. Every path that wakes a blocked thread removes its
    registry entry under the clock's lock before waking it, so an observer that sees an owner as
    not blocked can rely on that owner's thread making progress on its own.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("VirtualClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()
        self._waiters: set[_Waiter] = set()
        self._closed = False
        self._releases = 0

    def now(self) -> datetime:
        """Current virtual time, timezone-aware UTC."""
        return self._now

    def sleep_until(self, deadline: datetime, *, owner: str, interrupt: threading.Event | None = None) -> bool:
        """Block until virtual now >= deadline (True) or `interrupt` is set or the clock closes (False)."""
        waiter = _Waiter(owner=owner, deadline=deadline, watched=None, interrupt=interrupt)
        with self._lock:
            if self._now >= deadline:
                return True
            if self._closed or (interrupt is not None and interrupt.is_set()):
                return False
            self._waiters.add(waiter)
        self._block(waiter)
        return self._now >= deadline

    def wait_event(
        self,
        event: threading.Event,
        timeout_seconds: float | None,
        *,
        owner: str,
        interrupt: threading.Event | None = None,
    ) -> bool:
        """Block until `event` is set (True) or the virtual timeout passes, `interrupt` is set or the clock
        closes (False). A None timeout waits without a deadline."""
        with self._lock:
            if event.is_set():
                return True
            if self._closed or (interrupt is not None and interrupt.is_set()):
                return False
            deadline = None if timeout_seconds is None else self._now + timedelta(seconds=timeout_seconds)
            if deadline is not None and deadline <= self._now:
                return False
            waiter = _Waiter(owner=owner, deadline=deadline, watched=event, interrupt=interrupt)
            self._waiters.add(waiter)
        self._block(waiter)
        return event.is_set()

    def set_event(self, event: threading.Event) -> None:
        """Set `event` and release, synchronously, every thread waiting on it or interrupted by it."""
        with self._lock:
            event.set()
            released = [w for w in self._waiters if w.watched is event or w.interrupt is event]
            self._release(released)

    def next_deadline(self) -> datetime | None:
        """Earliest deadline of any blocked thread, or None when nothing waits on a deadline."""
        with self._lock:
            deadlines = [w.deadline for w in self._waiters if w.deadline is not None]
        return min(deadlines, default=None)

    def advance_to(self, t: datetime) -> None:
        """Move virtual time to t (never backwards) and wake every thread whose deadline has come."""
        with self._lock:
            if t > self._now:
                self._now = t.astimezone(UTC)
            due = [w for w in self._waiters if w.deadline is not None and w.deadline <= self._now]
            self._release(due)

    def blocked_owners(self) -> set[str]:
        """Owners with at least one thread currently blocked on the clock."""
        with self._lock:
            return {w.owner for w in self._waiters}

    def blocked_snapshot(self) -> tuple[int, set[str]]:
        """Blocked owners plus the release counter; an unchanged counter later means none was woken since."""
        with self._lock:
            return self._releases, {w.owner for w in self._waiters}

    def release_count(self) -> int:
        """How many blocked threads have been released so far."""
        with self._lock:
            return self._releases

    def close(self) -> None:
        """Release every blocked thread and make later waits return at once (for shutdown)."""
        with self._lock:
            self._closed = True
            self._release(list(self._waiters))

    def _release(self, waiters: list[_Waiter]) -> None:
        # Caller holds the lock: removing before waking is what keeps the registry truthful.
        for waiter in waiters:
            self._waiters.discard(waiter)
            self._releases += 1
            waiter.wake.set()

    def _block(self, waiter: _Waiter) -> None:
        while not waiter.wake.wait(_POLL_SECONDS):
            with self._lock:
                if waiter not in self._waiters:
                    return
                watched_set = waiter.watched is not None and waiter.watched.is_set()
                interrupted = waiter.interrupt is not None and waiter.interrupt.is_set()
                if watched_set or interrupted:
                    self._waiters.discard(waiter)
                    self._releases += 1
                    return
