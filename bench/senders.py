"""Benchmark (not a test): the sender in-process against moto — sends per second, AWS requests per send, cold start.

Run with `.venv/bin/python bench/senders.py [--sends N] [--json]`.

1. Sends per second through the sender's whole path for one marketing email each: one BatchGetItem (profile,
   suppression, reputation guard), render (the repo's templates/cart-reminder), the claim, SES v2 SendEmail on moto,
   and the record (message sent + email.sent outbox event + reputation counter + engagement checks, one
   TransactWriteItems). The frequency cap and send window are the step runner's (decided before the message is
   queued), so they cost the sender nothing.
2. AWS requests per send, counted with botocore's before-call event on the clients the sender uses.
3. Cold start: `import functions.senders.handler` against `import boto3` alone, medians of subprocess runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from shared import clock  # noqa: E402
from shared.messaging.channels import SesEmailChannel  # noqa: E402
from shared.messaging.delivery import Policy, Sender  # noqa: E402
from shared.messaging.templates import TemplateSet  # noqa: E402
from shared.messaging.unsubscribe import Links  # noqa: E402
from shared.store.contacts import ContactStore, create_table  # noqa: E402
from shared.store.messages import MessageStore  # noqa: E402

IMPORT = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def bench_sends(n: int) -> dict[str, Any]:
    os.environ.update({"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"})
    with mock_aws():
        ddb, ses = boto3.client("dynamodb"), boto3.client("sesv2")
        create_table(ddb, "bench")
        ses.create_email_identity(EmailIdentity="hello@example.com")
        store = ContactStore("bench", ddb)
        now = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
        clock.use(lambda: now)
        items = []
        for i in range(n):
            cid = store.upsert(
                _ref(f"b{i}@example.com", "Bea")  # a profile with a first name
            )
            item = {
                "pk": f"CONTACT#{cid}",
                "sk": f"MSG#m{i}",
                "message_id": f"m{i}",
                "channel": "email",
                "workflow": "abandoned-checkout",
                "step": "remind",
                "template": "cart-reminder",
                "to": f"b{i}@example.com",
                "status": "queued",
                "at": now.isoformat(),
            }
            store.put_item(item)
            items.append(item)
        messages = MessageStore("bench", ddb)
        sender = Sender(
            messages,
            {"email": SesEmailChannel(ses, "hello@example.com", "bench")},
            TemplateSet.load(ROOT / "templates"),
            Links(b"k" * 32, "https://api.example.com"),
            Policy(configuration_set="bench"),
        )
        calls: Counter[str] = Counter()
        in_aws = [0.0, 0.0]  # [start of the current call, total seconds inside moto]

        def before(model: Any, **_: Any) -> None:
            calls.update([model.name])
            in_aws[0] = time.perf_counter()

        def after(**_: Any) -> None:
            in_aws[1] += time.perf_counter() - in_aws[0]

        for client in (ddb, ses):
            client.meta.events.register("before-call.*.*", before)
            client.meta.events.register("after-call.*.*", after)
        t = time.perf_counter()
        outcomes = Counter(sender.deliver(item).status for item in items)
        elapsed = time.perf_counter() - t
        clock.use(None)
    per_send = {op: round(c / n, 2) for op, c in sorted(calls.items())}
    own = elapsed - in_aws[1]
    return {
        "own_ms_per_send": round(own / n * 1000, 2),
        "moto_ms_per_send": round(in_aws[1] / n * 1000, 2),
        "sends": n,
        "outcomes": dict(outcomes),
        "seconds": round(elapsed, 3),
        "per_second": round(n / elapsed, 1),
        "requests_per_send": per_send,
    }


def _ref(email: str, first: str) -> Any:
    from shared.events import ContactRef

    return ContactRef(email=email, first_name=first)


def cold_start(runs: int) -> dict[str, float]:
    out = {}
    for module in ("boto3", "functions.senders.handler"):
        times = [
            float(
                subprocess.run(
                    [sys.executable, "-c", IMPORT.format(module=module)],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            for _ in range(runs)
        ]
        out[module] = round(statistics.median(times) * 1000, 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sends", type=int, default=50)  # moto deep-copies the table per transaction
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = {"sender": bench_sends(args.sends), "cold_start_import_ms_median": cold_start(args.runs)}
    if args.json:
        print(json.dumps(result))
        return 0
    s = result["sender"]
    print(f"sends: {s['sends']} {s['outcomes']} in {s['seconds']} s = {s['per_second']} sends/s (moto, in-process)")
    print(
        f"per send: {s['own_ms_per_send']} ms in Stepwise (render, MIME, decisions), {s['moto_ms_per_send']} ms in moto"
    )
    print("AWS requests per send: " + ", ".join(f"{k} {v}" for k, v in s["requests_per_send"].items()))
    print(
        "cold-start import (median ms): "
        + ", ".join(f"{k} {v}" for k, v in result["cold_start_import_ms_median"].items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
