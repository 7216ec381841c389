"""Benchmark (not a test): the sender in-process against moto — sends per second, AWS requests per send, cold start.

Run with `.venv/bin/python bench/senders.py [--sends N] [--json]`.

1. Sends per second through the sender's whole path for one marketing email each: one BatchGetItem (profile,
   suppression, reputation guard), render (the repo's templates/cart-reminder), the claim that marks it sent (one
   TransactWriteItems: the message queued -> sent with the claim id, the reputation counter, the engagement checks
   and the provider-confirmation check), then SES v2 SendEmail on moto. The frequency cap and send window are the
   step runner's (decided before the message is queued), so they cost the sender nothing.
2. AWS requests per send by kind (DynamoDB reads, DynamoDB writes, provider calls), counted with botocore's
   before-call event on the clients the sender uses; the items inside each transaction too. Then the same count for
   what each send causes elsewhere: SES's Send event through the feedback code (attaches SES's id, routes
   email.sent), and the failure path (a throttled SendEmail: the claim given back).
3. Cold start: `import functions.senders.handler` against `import boto3` alone, medians of subprocess runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from shared import clock  # noqa: E402
from shared.messaging.channels import ChannelError, SesEmailChannel  # noqa: E402
from shared.messaging.delivery import Policy, Sender  # noqa: E402
from shared.messaging.feedback import absorb, engagement_events, to_events  # noqa: E402
from shared.messaging.templates import TemplateSet  # noqa: E402
from shared.messaging.unsubscribe import Links  # noqa: E402
from shared.store.contacts import ContactStore, create_table  # noqa: E402
from shared.store.messages import MessageStore  # noqa: E402

IMPORT = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})


def kind(op: str) -> str:
    return "dynamodb_reads" if op in READS else "dynamodb_writes" if op in WRITES else "provider"


class Counting:
    """botocore before-call / after-call on the given clients: requests by operation, items per transaction, and
    the seconds spent inside the calls (moto's own work)."""

    def __init__(self, *clients: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.tx_items: list[int] = []
        self.started = 0.0
        self.inside = 0.0
        for client in clients:
            client.meta.events.register("before-call.*.*", self.before)
            client.meta.events.register("after-call.*.*", self.after)
            client.meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", self.transaction)

    def transaction(self, params: dict[str, Any], **_: Any) -> None:
        self.tx_items.append(len(params.get("TransactItems", [])))

    def before(self, model: Any, **_: Any) -> None:
        self.calls.update([model.name])
        self.started = time.perf_counter()

    def after(self, **_: Any) -> None:
        self.inside += time.perf_counter() - self.started

    def reset(self) -> None:
        self.calls.clear()
        self.tx_items.clear()
        self.inside = 0.0

    def per(self, n: int) -> dict[str, Any]:
        by_kind: Counter[str] = Counter()
        for op, c in self.calls.items():
            by_kind[kind(op)] += c
        return {
            "by_operation": {op: round(c / n, 2) for op, c in sorted(self.calls.items())},
            "by_kind": {k: round(by_kind.get(k, 0) / n, 2) for k in ("dynamodb_reads", "dynamodb_writes", "provider")},
            "items_per_transaction": round(statistics.mean(self.tx_items), 2) if self.tx_items else 0,
        }


def bench_sends(n: int) -> dict[str, Any]:
    os.environ.update({"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"})
    with mock_aws():
        ddb, ses = boto3.client("dynamodb"), boto3.client("sesv2")
        create_table(ddb, "bench")
        ses.create_email_identity(EmailIdentity="hello@example.com")
        store = ContactStore("bench", ddb)
        now = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
        clock.use(lambda: now)
        items = _queue(store, n, now, "m")
        messages = MessageStore("bench", ddb)
        sender = Sender(
            messages,
            {"email": SesEmailChannel(ses, "hello@example.com", "bench")},
            TemplateSet.load(ROOT / "templates"),
            Links(b"k" * 32, "https://api.example.com"),
            Policy(configuration_set="bench"),
        )
        count = Counting(ddb, ses)
        t = time.perf_counter()
        done = [sender.deliver(item) for item in items]
        elapsed = time.perf_counter() - t
        send_path = count.per(n)
        in_moto = count.inside
        own = elapsed - in_moto

        # What each send costs elsewhere: SES's Send event through the feedback code (its id attached, email.sent).
        count.reset()
        routed = 0
        for item, d in zip(items, done, strict=True):
            routed += len(absorb(messages, to_events(_send_event(item, d.provider_id)), now))
        feedback = count.per(n)

        # The engagement poll once the confirmation window has passed: each send's confirmation check taken.
        count.reset()
        later = now + Policy().confirm_window + timedelta(minutes=1)
        fired = 0
        while page := engagement_events(messages, later):
            fired += len(page)
        if messages.due_checks(later, limit=1):
            raise SystemExit("confirmation checks left behind")
        poll = count.per(n)

        # The failure path: SendEmail throttled, the claim given back (the stream's retry then sends it as above).
        failing = _queue(store, n_fail := max(5, n // 10), now, "f")
        count.reset()

        def throttle_first(**_: Any) -> None:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "slow"}}, "SendEmail")

        ses.meta.events.register("before-call.sesv2.SendEmail", throttle_first)
        for item in failing:
            with contextlib.suppress(ChannelError):  # the retryable error the stream would retry
                sender.deliver(item)
        failure = count.per(n_fail)
        ses.meta.events.unregister("before-call.sesv2.SendEmail", throttle_first)
        clock.use(None)
    return {
        "own_ms_per_send": round(own / n * 1000, 2),
        "moto_ms_per_send": round(in_moto / n * 1000, 2),
        "sends": n,
        "outcomes": dict(Counter(d.status for d in done)),
        "seconds": round(elapsed, 3),
        "per_second": round(n / elapsed, 1),
        "requests_per_send": send_path,
        "feedback_per_send": {**feedback, "email_sent_routed": round(routed / n, 2)},
        "confirm_check_poll_per_send": {**poll, "events": fired},
        "throttled_attempt": failure,
    }


def _queue(store: ContactStore, n: int, now: datetime, prefix: str) -> list[dict[str, Any]]:
    items = []
    for i in range(n):
        cid = store.upsert(_ref(f"{prefix}{i}@example.com", "Bea"))
        item = {
            "pk": f"CONTACT#{cid}",
            "sk": f"MSG#{prefix}{i}",
            "message_id": f"{prefix}{i}",
            "channel": "email",
            "workflow": "abandoned-checkout",
            "step": "remind",
            "template": "cart-reminder",
            "to": f"{prefix}{i}@example.com",
            "status": "queued",
            "at": now.isoformat(),
        }
        store.put_item(item)
        items.append(item)
    return items


def _send_event(item: dict[str, Any], provider_id: str) -> dict[str, Any]:
    tags = {"message_id": [item["message_id"]], "contact_id": [str(item["pk"]).removeprefix("CONTACT#")]}
    mail = {"messageId": provider_id, "timestamp": "2026-11-30T09:00:01Z", "tags": tags}
    return {"source": "aws.ses", "detail-type": "Email Sent", "detail": {"eventType": "Send", "mail": mail, "send": {}}}


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
    print("AWS requests per send (exact counts / sends):")
    print(f"  {'path':<34} {'DDB reads':>9} {'DDB writes':>10} {'provider':>8} {'items/tx':>8}  operations")
    for label, row in (
        ("sender, happy path", s["requests_per_send"]),
        ("feedback: SES Send event", s["feedback_per_send"]),
        ("poll: confirmation check, 15 min on", s["confirm_check_poll_per_send"]),
        ("sender, throttled attempt", s["throttled_attempt"]),
    ):
        k = row["by_kind"]
        ops = ", ".join(f"{op} {v}" for op, v in row["by_operation"].items())
        print(
            f"  {label:<34} {k['dynamodb_reads']:>9} {k['dynamodb_writes']:>10} {k['provider']:>8} "
            f"{row['items_per_transaction']:>8}  {ops}"
        )
    print(f"  email.sent routed per send: {s['feedback_per_send']['email_sent_routed']}")
    print(
        "cold-start import (median ms): "
        + ", ".join(f"{k} {v}" for k, v in result["cold_start_import_ms_median"].items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
