"""Broadcast benchmark: contacts entered per second on the local stack, and what that means for 1M contacts.

    .venv/bin/python bench/broadcast.py [--contacts 1000]

Local figures measure moto (every StartExecution also runs the workflow's execution in-process); the
projection uses the design's figures: batches of BATCH_SIZE, MAX_CONCURRENCY at once, each paced to
RATE_PER_BATCH StartExecution calls a second, against the 300/s StartExecution refill.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.workflow.broadcast import (
    BATCH_SIZE,
    MAX_CONCURRENCY,
    RATE_PER_BATCH,
    START_EXECUTION_QUOTA,
)


def projection(contacts: int = 1_000_000, per_contact_seconds: float = 0.0) -> dict[str, float]:
    """Time for `contacts` at the quota: the paced rate, unless the batch Lambda is slower than its pace (each
    contact costs ~4 DynamoDB calls + 1 StartExecution, `per_contact_seconds` of real work)."""
    paced = RATE_PER_BATCH * MAX_CONCURRENCY
    worker = 1 / per_contact_seconds if per_contact_seconds > 0 else float("inf")
    rate = min(paced, worker * MAX_CONCURRENCY, START_EXECUTION_QUOTA)
    return {
        "contacts": contacts,
        "batch_size": BATCH_SIZE,
        "max_concurrency": MAX_CONCURRENCY,
        "rate_per_batch": RATE_PER_BATCH,
        "starts_per_second": rate,
        "share_of_quota": rate / START_EXECUTION_QUOTA,
        "minutes": contacts / rate / 60,
        "batches": -(-contacts // BATCH_SIZE),
    }


def measure(contacts: int) -> dict[str, float]:
    from stepwise.simulate import DEFAULT_START, Simulation
    from tests.integration.support import workflow
    from tests.integration.test_broadcast import AT, BLAST, add_members, enrolments

    with Simulation([workflow(BLAST)], DEFAULT_START) as sim:
        add_members(sim, contacts)
        began = time.perf_counter()
        sim.advance(AT + timedelta(minutes=1))
        elapsed = time.perf_counter() - began
        entered = sum(enrolments(sim).values())
    return {"contacts": contacts, "entered": entered, "seconds": elapsed, "per_second": entered / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1000)
    args = parser.parse_args()
    local = measure(args.contacts)
    print(json.dumps({"local": local, "projection_1m": projection()}, indent=2))


if __name__ == "__main__":
    main()
