"""Benchmark (not a test): render time of the cart-reminder template with a 50-item cart (median and p95, ms).

.venv/bin/python bench/render.py [--items 50] [--runs 500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.messaging.templates import TemplateSet, render_context  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--runs", type=int, default=500)
    args = parser.parse_args(argv)
    products = [{"name": f"Product {i} <b>", "quantity": 1 + i % 3, "price": 9.5 + i} for i in range(args.items)]
    event = {"cart_value": 1234.5, "currency": "EUR", "url": "https://shop.example.com/c?k=1", "products": products}
    ctx = render_context(
        {"email": "ana@example.com", "first_name": "Ana"}, event, unsubscribe_url="https://u.example/x"
    )
    started = time.perf_counter()
    ts = TemplateSet.load(ROOT / "templates")
    ts.render("cart-reminder", "email", ctx)  # parses and compiles once, as the sender's first send does
    first = (time.perf_counter() - started) * 1000
    samples = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        ts.render("cart-reminder", "email", ctx)
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    p95 = samples[int(len(samples) * 0.95) - 1]
    print(
        f"cart-reminder, {args.items}-item cart: median {statistics.median(samples):.3f} ms, p95 {p95:.3f} ms "
        f"per render (subject + HTML + generated text), {args.runs} runs; load + first render {first:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
