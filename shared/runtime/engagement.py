"""The engagement checks' poll in AWS: email.not_opened / email.not_clicked whose window passed, routed. A recurring
Scheduler schedule invokes the router's schedule handler with {"kind": "engagement_checks"}; locally the
simulation's settle takes the same checks (shared/messaging/feedback.engagement_events) each pass."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from shared import clock
from shared.events import ContactEvent
from shared.messaging.feedback import engagement_events
from shared.runtime import inbound
from shared.runtime import schedules as sched
from shared.store.messages import MessageStore

KIND_ENGAGEMENT = "engagement_checks"
EVERY = timedelta(minutes=5)  # the schedule's rate: an engagement event fires at most this late
# A run stops starting pages of due checks after this many seconds (the router's timeout is 60 s); what is left
# is due at the next run. 100 checks a page (MessageStore.due_checks).
BUDGET_SECONDS = 30.0


class ChecksNotRouted(Exception):
    """Some engagement events failed to route after their checks were taken (a check is taken once, so a retry
    of the poll would not find them again). `payload` re-routes exactly those events: the router keeps it as the
    dead letter, and `stepwise replay` dispatches it."""

    def __init__(self, events: list[ContactEvent], errors: list[str]) -> None:
        super().__init__(f"{len(events)} engagement event(s) not routed: {'; '.join(errors[:3])}")
        self.payload: dict[str, Any] = {"kind": KIND_ENGAGEMENT, "events": [inbound.event_json(e) for e in events]}


@sched.register(KIND_ENGAGEMENT)
def run_checks(
    payload: dict[str, Any],
    ctx: sched.ScheduleContext,
    *,
    monotonic: Callable[[], float] = time.monotonic,
    budget: float = BUDGET_SECONDS,
) -> dict[str, Any]:
    """Take the checks due now and route the events they give, page after page until none is due or the budget
    is spent. With `events` in the payload (a dead letter's replay), route those instead."""
    router = ctx.router
    if payload.get("events"):
        out = _Routing(router)
        out.route([ContactEvent.model_validate(e) for e in payload["events"]])
        return out.result()
    messages = MessageStore(router.store.table, router.store.client)
    now = clock.now()
    started = monotonic()
    out = _Routing(router)
    while True:
        out.route(engagement_events(messages, now))  # routed page by page: a timeout loses no taken check's event
        out.pages += 1
        if monotonic() - started >= budget or not messages.due_checks(now, limit=1):
            break
    return out.result()


class _Routing:
    def __init__(self, router: Any) -> None:
        self.router = router
        self.pages = 0
        self.events = 0
        self.routed: list[dict[str, Any]] = []
        self.failed: list[ContactEvent] = []
        self.errors: list[str] = []

    def route(self, events: list[ContactEvent]) -> None:
        for ev in events:
            self.events += 1
            try:
                self.routed += [asdict(r) for r in self.router.handle(ev, internal=True)]  # as the local settle does
            except Exception as err:  # the others still route; the failed ones are kept whole (ChecksNotRouted)
                self.failed.append(ev)
                self.errors.append(f"{ev.id}: {type(err).__name__}")

    def result(self) -> dict[str, Any]:
        if self.failed:
            raise ChecksNotRouted(self.failed, self.errors)
        return {"pages": self.pages, "events": self.events, "routed": self.routed}
