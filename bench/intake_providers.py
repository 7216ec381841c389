"""Figure: pipeline.accept per delivery for each provider's published samples (median and p99, microseconds), wall
and CPU (thread_time) side by side: a wall p99 far above the CPU p99 is the shared machine's scheduler, not work.

Run: .venv/bin/python bench/intake_providers.py [runs]   (default 1,000 runs per sample)"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.intake.base import IntakeError
from shared.intake.common import _parse
from shared.intake.pipeline import accept
from shared.intake.testing import all_fixtures, load_fixture, signed

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def main(runs: int = 1000) -> None:
    print(f"{'provider':<12} {'topic':<30} {'bytes':>7} {'median us':>10} {'p99 us':>9} {'cpu p99':>8}  outcome")
    for provider, topic in all_fixtures():
        f = load_fixture(provider, topic)
        d = signed(f, "bench-secret", NOW)
        samples = []
        cpu = []
        outcome = ""
        for _ in range(runs):
            _parse.cache_clear()  # every run parses the body, as a fresh delivery would
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                out = accept(provider, d, lambda _: "bench-secret")
                outcome = f"{len(out.events)} event(s)"
            except IntakeError as e:
                outcome = type(e).__name__
            samples.append((time.perf_counter() - t0) * 1e6)
            cpu.append((time.thread_time() - c0) * 1e6)
        samples.sort()
        cpu.sort()
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        cpu99 = cpu[min(len(cpu) - 1, int(len(cpu) * 0.99))]
        median = statistics.median(samples)
        print(f"{provider:<12} {topic:<30} {len(d.body):>7} {median:>10.1f} {p99:>9.1f} {cpu99:>8.1f}  {outcome}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
