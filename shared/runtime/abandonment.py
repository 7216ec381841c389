"""Abandoned checkouts, derived: each checkout update schedules checkout.abandoned at every idle threshold the
active workflows' triggers need; a later update restarts the idle clock and an order for the checkout cancels it.

Thresholds are read from each checkout.abandoned trigger's `where: {idle_minutes: ...}`, as the earliest idle
time the filter accepts, to the second:
  gt N   -> N minutes + 1 second (idle_minutes then says N + 1/60: "more than N" holds, by one second)
  gte N, eq N, in [..] -> N minutes exactly (each value of `in` is a threshold of its own)
  lt N   -> N minutes - 1 second (with no lower bound: the latest moment the filter still holds)
  lte N  -> N minutes
  no idle_minutes bound -> DEFAULT_IDLE_MINUTES.
The fired event's idle_minutes is the idle time the checkout had reached at that threshold (threshold seconds
/ 60, rounded to 4 places), not the Scheduler's delivery lag, so a filter's boundary behaves as written.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared import clock
from shared.events import ContactEvent, ContactRef
from shared.runtime import schedules as sched
from shared.store.checkouts import CheckoutStore
from shared.workflow.runtime import Compare, Trigger, Where, Workflow
from shared.workflow.runtime import workflows as runtime_workflows

if TYPE_CHECKING:
    from shared.routing import Router

ABANDONED = "checkout.abandoned"
UPDATES = ("checkout.started", "checkout.updated")
ORDERS = ("order.paid",)
KIND = "abandonment"
DEFAULT_IDLE_MINUTES = 60
CART_FIELDS = ("cart_value", "currency", "products", "url")


def threshold_seconds(where: Where | None) -> list[int]:
    """Idle times (seconds) at which a checkout.abandoned trigger with this filter can first match."""
    cmp: Compare | None = (where.comparisons() if where is not None else {}).get("idle_minutes")
    if cmp is None:
        return [DEFAULT_IDLE_MINUTES * 60]
    if cmp.in_ is not None:
        return sorted({math.ceil(float(v) * 60) for v in cmp.in_ if _is_number(v)})
    if cmp.eq is not None and _is_number(cmp.eq):
        return [math.ceil(float(cmp.eq) * 60)]
    low: int | None = None
    if cmp.gt is not None:
        low = math.floor(cmp.gt * 60) + 1
    if cmp.gte is not None:
        low = max(low or 0, math.ceil(cmp.gte * 60))
    high: int | None = None
    if cmp.lt is not None:
        high = math.ceil(cmp.lt * 60) - 1
    if cmp.lte is not None:
        high = min(high if high is not None else math.floor(cmp.lte * 60), math.floor(cmp.lte * 60))
    if low is None:
        if high is None:
            return [DEFAULT_IDLE_MINUTES * 60]
        return [high] if high >= 1 else []
    return [max(low, 1)] if high is None or low <= high else []  # an unsatisfiable filter needs no schedule


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def thresholds(workflows: list[Workflow]) -> list[int]:
    """Every distinct idle threshold (seconds) of the workflows' checkout.abandoned triggers."""
    out: set[int] = set()
    for wf in runtime_workflows(workflows):
        for entry in wf.triggers:
            t = entry.root
            if isinstance(t, Trigger) and t.event == ABANDONED:
                out.update(threshold_seconds(t.where))
    return sorted(out)


def idle_minutes(seconds: int) -> int | float:
    return seconds // 60 if seconds % 60 == 0 else round(seconds / 60, 4)


def _key(token: str, version: str, seconds: int) -> str:
    return f"{token}:{version}:{seconds}"


def observe(router: Router, contact_id: str, event: ContactEvent, at: datetime) -> None:
    """What a checkout update or an order does to pending abandonments (Router.handle calls this for every
    event; others return at once). `at` is when the update happened: the idle clock starts there."""
    if event.type not in UPDATES and event.type not in ORDERS:
        return
    token = event.data.get("checkout_id") or event.data.get("checkout_token")
    if not token:
        return
    seconds = thresholds(router.workflows)
    if not seconds:
        return  # no workflow listens: nothing to schedule or cancel
    token = str(token)
    checkouts = CheckoutStore(router.store)
    schedules = sched.required()
    if event.type in ORDERS:
        before = checkouts.convert(token, str(event.data.get("order_id") or ""), at)
        if before is not None:
            for s in seconds:
                schedules.cancel(KIND, _key(token, before.version, s))
        return
    cart = {k: event.data[k] for k in CART_FIELDS if event.data.get(k) is not None}
    version = event.digest()
    applied, before = checkouts.observe(token, contact_id, version, at, cart)
    if not applied:
        return  # an order came first, or a later update is recorded
    if before is not None and before.version != version:
        for s in seconds:  # the previous update's schedules: they would find the checkout changed anyway
            schedules.cancel(KIND, _key(token, before.version, s))
    now = clock.now()
    for s in seconds:
        due = max(at + timedelta(seconds=s), now)  # a late delivery's threshold may have passed: fire now
        payload = {"checkout_id": token, "version": version, "after_seconds": s}
        schedules.at(KIND, _key(token, version, s), due, payload)


@sched.register(KIND)
def fire(payload: dict[str, Any], ctx: sched.ScheduleContext) -> dict[str, Any]:
    """A threshold came: route checkout.abandoned unless the checkout has an order or changed since."""
    token, version, seconds = str(payload["checkout_id"]), str(payload["version"]), int(payload["after_seconds"])
    checkout = CheckoutStore(ctx.router.store).get(token)
    if checkout is None or checkout.converted_at is not None or checkout.version != version:
        return {"routed": []}
    event = ContactEvent(
        id=f"abandoned:{token}:{seconds}:{version}",
        type=ABANDONED,
        contact=ContactRef(contact_id=checkout.contact_id),
        data={**checkout.cart, "checkout_id": token, "idle_minutes": idle_minutes(seconds)},
        occurred_at=checkout.updated_at + timedelta(seconds=seconds),
    )
    return {"routed": [asdict(r) for r in ctx.router.handle(event)]}
