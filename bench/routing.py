"""Routing benchmark: AWS requests per event by kind, and events routed per second with 10 and with 1,000 active
workflows, measured side by side in one run (medians of alternating rounds).

    .venv/bin/python bench/routing.py [--events 40] [--rounds 5]

Requests are counted with botocore's event system on the router's DynamoDB and Step Functions clients, from the
call of Router.handle to its return (the step runner's own clients are not counted: its work is the run's, not
the event's). Generated workflows listen to event types of their own, and one in ten has a goal on a condition,
so they are active but do not listen to the events measured.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from shared.events import ContactEvent
from shared.routing import Router
from shared.workflow.model import Workflow, parse_workflow

TARGET = """
name: thanks
triggers: [{event: order.paid}]
reentry: always
steps:
  - id: thanks
    send_email: {template: thanks}
"""


def _letters(i: int) -> str:
    out = ""
    while True:
        i, r = divmod(i, 26)
        out = chr(97 + r) + out
        if i == 0:
            return out


def generated(n: int) -> list[Workflow]:
    """`n` active workflows that listen to events of their own: a trigger, an event goal, one in ten a goal on a
    condition (which a change of any contact's data could meet, for contacts running them)."""
    out = []
    for i in range(n):
        name = f"gen-{_letters(i)}"
        goal = {"has_tag": f"done-{i}"} if i % 10 == 0 else None
        doc: dict[str, Any] = {
            "name": name,
            "triggers": [{"event": f"gen_{_letters(i)}.happened"}],
            "steps": [
                {"id": "hello", "send_email": {"template": "hello"}},
                {"id": "pause", "wait": "1d"},
                {"id": "goal", "goal": {"condition": goal} if goal else {"event": f"gen_{_letters(i)}.done"}},
                {"id": "bye", "send_email": {"template": "bye"}},
            ],
        }
        out.append(parse_workflow(doc, f"<generated {name}>"))
    return out


@contextmanager
def counting(*clients: Any) -> Iterator[Counter[str]]:
    counts: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        counts[f"{model.service_model.service_name}:{model.name}"] += 1

    for c in clients:
        c.meta.events.register("before-call", count)
    try:
        yield counts
    finally:
        for c in clients:
            c.meta.events.unregister("before-call", count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40, help="events per kind per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    from stepwise.simulate import Simulation

    target = parse_workflow(yaml.safe_load(TARGET), "<bench>")
    sizes = {10: [target, *generated(9)], 1000: [target, *generated(999)]}
    with Simulation([target]) as sim:
        routers = {n: Router(wfs, sim.store, sim.enroller, sim.stack.sfn) for n, wfs in sizes.items()}
        seq = iter(range(10**9))

        def ev(etype: str, email: str) -> ContactEvent:
            return ContactEvent.model_validate(
                {"id": f"e{next(seq)}", "type": etype, "contact": {"email": email}, "data": {}}
            )

        known = "known@example.com"
        routers[10].handle(ev("page.visited", known))  # the contact exists; the target's status is recorded
        routers[10].handle(ev("order.paid", "warm@example.com"))
        kinds: dict[str, Callable[[int, int], ContactEvent]] = {
            # a new contact each time, so every event enters the target workflow
            "entering": lambda n, i: ev("order.paid", f"new-{n}-{next(seq)}@example.com"),
            # an existing contact, an event type no trigger, goal or wait listens to
            "unheard": lambda n, i: ev("page.visited", known),
            # an event goals of the generated workflows listen to, for a contact running none of them
            "goal type": lambda n, i: ev("gen_a.done", known),
        }
        requests: dict[str, Counter[str]] = {}
        for kind, make in kinds.items():
            with counting(sim.stack.dynamodb, sim.stack.sfn) as counts:
                routers[1000].handle(make(1000, 0))
            requests[kind] = counts
        rates: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.rounds):
            for kind, make in kinds.items():
                for n in (10, 1000):  # side by side, alternating, so load on the machine hits both alike
                    batch = [make(n, i) for i in range(args.events)]
                    began = time.perf_counter()
                    for e in batch:
                        routers[n].handle(e)
                    rates.setdefault((kind, n), []).append(len(batch) / (time.perf_counter() - began))
            sim.settle()

    print("AWS requests per event (with 1,000 active workflows):")
    for kind, counts in requests.items():
        ddb = sum(v for k, v in counts.items() if k.startswith("dynamodb:"))
        sfn = sum(v for k, v in counts.items() if not k.startswith("dynamodb:"))
        detail = ", ".join(f"{k.split(':')[1]} {v}" for k, v in sorted(counts.items()))
        print(f"  {kind:<10} DynamoDB {ddb}, Step Functions {sfn}  ({detail})")
    print(f"\nEvents routed per second in-process (median of {args.rounds} rounds of {args.events}):")
    for kind in kinds:
        small = statistics.median(rates[(kind, 10)])
        large = statistics.median(rates[(kind, 1000)])
        print(
            f"  {kind:<10} 10 workflows {small:7.1f}/s   1,000 workflows {large:7.1f}/s   ratio 1 : {small / large:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
