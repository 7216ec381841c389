"""Deterministic discrete-event virtual clock on which local Step Functions executions block."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

# A blocked thread re-checks its watched and interrupt events this often (real seconds), only as a
# safety net for code that sets them without going through `set_event`.
_POLL_SECONDS = 0.25

_thread_owner = threading.local()


def current_owner() -> str | None:
    """The owner the calling thread runs for, if it was started through `thread_starting`/`thread_running`."""
    owner: str | None = getattr(_thread_owner, "owner", None)
    return owner


@dataclass(eq=False)
class _Waiter:
    owner: str
    deadline: datetime | None
    watched: threading.Event | None
    interrupt: threading.Event | None
    # Owner whose running-thread count this waiter took one from (None: an untracked thread).
    counted: str | None
    wake: threading.Event = field(default_factory=threading.Event)


class VirtualClock:
    """Virtual time, the threads blocked on it, and per-owner counts of threads still running.

    Owners are Step Functions execution ARNs. Time only moves in `advance_to`. Every path that wakes a
    blocked thread unregisters it and counts it as running again under the clock's lock, before it
    wakes, so an owner observed as idle (no running thread) cannot be making progress on its own.
    Threads are counted when started through `thread_starting`/`thread_running`/`thread_finished`;
    an execution whose every counted thread is blocked is idle even when it has several (Parallel,
    Map, the interpreter's per-state worker threads).
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("VirtualClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()
        self._waiters: set[_Waiter] = set()
        self._running: dict[str, int] = {}
        self._releases = 0
        self._closed = False

    def now(self) -> datetime:
        """Current virtual time, timezone-aware UTC."""
        return self._now

    # --- blocking primitives ---------------------------------------------------------------------
    def sleep_until(self, deadline: datetime, *, owner: str, interrupt: threading.Event | None = None) -> bool:
        """Block until virtual now >= deadline (True) or `interrupt` is set or the clock closes (False)."""
        with self._lock:
            if self._now >= deadline:
                return True
            if self._closed or (interrupt is not None and interrupt.is_set()):
                return False
            waiter = self._register(owner, deadline, None, interrupt)
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
        closes (False). A None timeout waits without a deadline. Wake the waiter with `set_event`."""
        with self._lock:
            if event.is_set():
                return True
            if self._closed or (interrupt is not None and interrupt.is_set()):
                return False
            deadline = None if timeout_seconds is None else self._now + timedelta(seconds=timeout_seconds)
            if deadline is not None and deadline <= self._now:
                return False
            waiter = self._register(owner, deadline, event, interrupt)
        self._block(waiter)
        return event.is_set()

    def set_event(self, event: threading.Event) -> None:
        """Set `event` and release, synchronously, every thread waiting on it or interrupted by it."""
        with self._lock:
            # The base method: `event` may be a subclass whose set() delegates here.
            threading.Event.set(event)
            self._release([w for w in self._waiters if w.watched is event or w.interrupt is event])

    # --- thread accounting -----------------------------------------------------------------------
    def thread_starting(self, owner: str) -> None:
        """Count a new thread of `owner` as running; call from the spawning thread before it starts."""
        with self._lock:
            self._running[owner] = self._running.get(owner, 0) + 1

    def thread_running(self, owner: str) -> None:
        """Mark the calling (new) thread as working for `owner`, so its waits are counted."""
        _thread_owner.owner = owner

    def thread_finished(self, done: threading.Event | None = None) -> None:
        """Uncount the calling thread and, in the same step, set `done` to release its joiners."""
        owner = current_owner()
        _thread_owner.owner = None
        with self._lock:
            if owner is not None:
                self._uncount(owner)
            if done is not None:
                threading.Event.set(done)
                self._release([w for w in self._waiters if w.watched is done])

    # --- driving and observing -------------------------------------------------------------------
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
            self._release([w for w in self._waiters if w.deadline is not None and w.deadline <= self._now])

    def blocked_owners(self) -> set[str]:
        """Owners with a thread blocked on the clock and no counted thread running."""
        with self._lock:
            return {w.owner for w in self._waiters} - set(self._running)

    def busy_snapshot(self) -> tuple[int, set[str]]:
        """(release counter, owners with a counted thread running). If the counter is unchanged when
        read again later, no blocked thread was woken in between."""
        with self._lock:
            return self._releases, set(self._running)

    def release_count(self) -> int:
        """How many blocked threads have been released so far."""
        with self._lock:
            return self._releases

    def close(self) -> None:
        """Release every blocked thread and make later waits return at once (for shutdown)."""
        with self._lock:
            self._closed = True
            self._release(list(self._waiters))

    # --- internals (callers hold the lock) ------------------------------------------------------
    def _register(
        self,
        owner: str,
        deadline: datetime | None,
        watched: threading.Event | None,
        interrupt: threading.Event | None,
    ) -> _Waiter:
        counted = current_owner()
        waiter = _Waiter(owner, deadline, watched, interrupt, counted)
        self._waiters.add(waiter)
        if counted is not None:
            self._uncount(counted)
        return waiter

    def _uncount(self, owner: str) -> None:
        remaining = self._running.get(owner, 0) - 1
        if remaining > 0:
            self._running[owner] = remaining
        else:
            self._running.pop(owner, None)

    def _release(self, waiters: list[_Waiter]) -> None:
        # Unregister and recount before waking: this is what keeps observers' view truthful.
        for waiter in waiters:
            self._waiters.discard(waiter)
            if waiter.counted is not None:
                self._running[waiter.counted] = self._running.get(waiter.counted, 0) + 1
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
                    self._release([waiter])
