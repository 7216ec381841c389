"""Differential examples per minute: generated cases run on the local stack and by the reference interpreter.

.venv/bin/python bench/differential.py [N] [SEED]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, Phase, given, seed, settings

from tests.differential.harness import Case, run_machine, run_reference
from tests.differential.strategies import cases


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    s = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    ran: list[tuple[float, bool]] = []

    @seed(s)
    @settings(max_examples=n, deadline=None, database=None, derandomize=s == 0, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(cases())
    def one(case: Case) -> None:
        t = time.perf_counter()
        agree = run_machine(case) == run_reference(case)
        ran.append((time.perf_counter() - t, agree))

    start = time.perf_counter()
    one()
    total = time.perf_counter() - start
    print(f"{len(ran)} examples in {total:.1f} s: {60 * len(ran) / total:.1f} examples/min; "
          f"{sum(not a for _, a in ran)} disagreements; slowest {max(t for t, _ in ran):.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
