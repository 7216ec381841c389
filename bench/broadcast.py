"""Broadcast benchmark: contacts entered per second on the local stack, and what bounds 1M contacts in AWS.

    .venv/bin/python bench/broadcast.py [--contacts 500] [--runs 3] [--dynamodb-ms 8] [--sfn-ms 30]

One run prints, side by side:
- local: each run's wall and CPU seconds for a fixed-date list of --contacts going out through the broadcast
  machine on the local stack (moto runs every StartExecution's workflow in-process too), entered per wall second
  and per CPU second (the CPU figure moves less when the machine is shared), medians over --runs;
- measured in those runs: the AWS requests a batch makes per contact, by kind, and the state transitions of one
  entered run (from its history);
- the projection for 1M contacts: every bound the path meets in AWS as a rate of entries per second and its
  ratio to the 300/s StartExecution refill, the lowest of them the projected rate. The batch Lambda's bound is
  the measured requests per contact times the assumed request latencies (--dynamodb-ms, --sfn-ms: assumptions,
  not measurements; shown as such).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.workflow.broadcast import (
    BATCH_SIZE,
    MAX_CONCURRENCY,
    RATE_PER_BATCH,
    START_EXECUTION_QUOTA,
)

# AWS quotas (Step Functions Standard, us-east-1 / us-west-2 / eu-west-1; per account and Region).
STATE_TRANSITION_REFILL = 5_000  # StateTransition token bucket refill per second
MAP_CHILD_CONCURRENCY = 10_000  # a Distributed Map's most child workflow executions at once
OPEN_EXECUTIONS = 1_000_000  # open (running) Standard executions per account
# A batch is one child execution of the Map: entering its one Task state, the Task's Retry-free success, the end.
MAP_TRANSITIONS_PER_BATCH = 3


class Requests:
    """AWS requests made by the broadcast's batches (on the Map's threads, not the simulation's main thread), by
    operation."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, event_name: str, **_: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            return
        with self._lock:
            self.counts[event_name.rsplit(".", 2)[-2] + "." + event_name.rsplit(".", 1)[-1]] += 1


def measure(contacts: int) -> dict[str, Any]:
    from stepwise.simulate import DEFAULT_START, Simulation
    from tests.integration.support import workflow
    from tests.integration.test_broadcast import AT, BLAST, add_members, enrolments

    with Simulation([workflow(BLAST)], DEFAULT_START) as sim:
        add_members(sim, contacts)
        requests = Requests()
        for client in (sim.stack.sfn, sim.stack.dynamodb):
            client.meta.events.register("before-call", requests, unique_id="bench-broadcast")
        wall, cpu = time.perf_counter(), time.process_time()
        sim.advance(AT + timedelta(minutes=1))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        entered = sum(enrolments(sim).values())
        one_run = sim.execution_arns("blast")[0]
        transitions = sum(1 for e in sim.stack.history(one_run) if e["type"].endswith("StateEntered"))
    return {
        "contacts": contacts,
        "entered": entered,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "per_wall_second": round(entered / wall, 1),
        "per_cpu_second": round(entered / cpu, 1),
        "requests_per_contact": {k: round(v / max(entered, 1), 3) for k, v in sorted(requests.counts.items())},
        "transitions_per_run": transitions,
    }


def projection(
    requests_per_contact: dict[str, float],
    transitions_per_run: int,
    *,
    contacts: int = 1_000_000,
    dynamodb_ms: float = 8.0,
    sfn_ms: float = 30.0,
) -> dict[str, Any]:
    """Each bound on entries per second for `contacts` in AWS, and the lowest of them."""
    per_contact_ms = sum(
        n * (sfn_ms if kind.startswith("sfn.") else dynamodb_ms) for kind, n in requests_per_contact.items()
    )
    batches = -(-contacts // BATCH_SIZE)
    bounds = {
        # Each of MAX_CONCURRENCY batches paces itself to RATE_PER_BATCH starts a second: 95% of the refill.
        "pace (MaxConcurrency x rate per batch)": RATE_PER_BATCH * MAX_CONCURRENCY,
        # The account's StartExecution refill, shared with the router's own entries.
        "StartExecution refill": float(START_EXECUTION_QUOTA),
        # A batch Lambda enters its contacts one at a time; each costs its requests' latencies (assumed).
        "batch Lambdas (MaxConcurrency / per-contact latency)": MAX_CONCURRENCY * 1000 / per_contact_ms,
        # The same at the MaxConcurrency of 10 used before (one batch short of its 28.5/s pace).
        "(MaxConcurrency 10, for comparison)": 10 * 1000 / per_contact_ms,
        # The StateTransition refill, shared by the entered runs' own transitions and the Map's batch children
        # (MAP_TRANSITIONS_PER_BATCH per BATCH_SIZE contacts); MAX_CONCURRENCY children at once of the 10,000.
        "StateTransition refill (entered runs + the Map's batches)": STATE_TRANSITION_REFILL
        / (max(transitions_per_run, 1) + MAP_TRANSITIONS_PER_BATCH / BATCH_SIZE),
    }
    real = {k: v for k, v in bounds.items() if not k.startswith("(")}
    rate = min(real.values())
    first = min(real, key=lambda k: real[k])
    return {
        "contacts": contacts,
        "batches": batches,
        "map_children_at_once": f"{MAX_CONCURRENCY} of {MAP_CHILD_CONCURRENCY}",
        "assumed_latency_ms": {"dynamodb": dynamodb_ms, "stepfunctions": sfn_ms},
        "per_contact_ms_in_a_batch": round(per_contact_ms, 1),
        "bounds_per_second": {k: round(v, 1) for k, v in bounds.items()},
        "ratio_to_quota": {k: round(v / START_EXECUTION_QUOTA, 3) for k, v in bounds.items()},
        "met_first": first,
        "starts_per_second": round(rate, 1),
        "share_of_quota": round(rate / START_EXECUTION_QUOTA, 3),
        "minutes": round(contacts / rate / 60, 1),
        "open_executions": f"{contacts:,} of {OPEN_EXECUTIONS:,} if every entered run waits (none end meanwhile)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--contacts", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dynamodb-ms", type=float, default=8.0, help="assumed DynamoDB request latency in AWS")
    parser.add_argument("--sfn-ms", type=float, default=30.0, help="assumed StartExecution latency in AWS")
    args = parser.parse_args()
    runs = [measure(args.contacts) for _ in range(args.runs)]
    last = runs[-1]
    local = {
        "contacts": args.contacts,
        "runs": [{k: r[k] for k in ("entered", "wall_seconds", "cpu_seconds")} for r in runs],
        "median_per_wall_second": statistics.median(r["per_wall_second"] for r in runs),
        "median_per_cpu_second": statistics.median(r["per_cpu_second"] for r in runs),
        "requests_per_contact": last["requests_per_contact"],
        "transitions_per_run": last["transitions_per_run"],
    }
    proj = projection(
        last["requests_per_contact"], last["transitions_per_run"], dynamodb_ms=args.dynamodb_ms, sfn_ms=args.sfn_ms
    )
    print(json.dumps({"local": local, "projection_1m": proj}, indent=2))


if __name__ == "__main__":
    main()
