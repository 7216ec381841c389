"""call_webhook on the local stack against a real receiver on loopback (which the local stack allows): a retried
Task never POSTs again for a webhook step that committed, and `secret:` signs the body with an SSM SecureString
read through Powertools parameters."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from stepwise.simulate import DEFAULT_START, Simulation
from tests.integration.support import event, executions, steps, workflow


@dataclass
class Receiver:
    """What the receiving app got: (path, headers, body) per request; `fail_first` paths answer 500 once."""

    url: str
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    fail_first: set[str] = field(default_factory=set)
    secret: bytes | None = None

    def posts(self, path: str) -> int:
        return sum(1 for p, _, _ in self.requests if p == path)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got.requests.append((self.path, dict(self.headers), body))
            status = 200
            if self.path in got.fail_first:
                got.fail_first.discard(self.path)
                status = 500
            elif got.secret is not None:
                # What a receiver does with the signature: recompute it and compare in constant time.
                expected = "sha256=" + hmac.new(got.secret, body, hashlib.sha256).hexdigest()
                status = 200 if hmac.compare_digest(expected, self.headers.get("X-Stepwise-Signature", "")) else 401
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    got.url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield got
    finally:
        server.shutdown()
        thread.join(5)


TWO_HOOKS = """
name: hooks
triggers: [{event: form.submitted}]
steps:
  - id: tell-crm
    call_webhook: {url: "%(url)s/crm", body: {source: form}}
  - id: tell-billing
    call_webhook: {url: "%(url)s/billing"}
  - id: thanks
    send_email: {template: thanks}
"""


def test_a_task_retried_after_a_later_webhook_failed_does_not_call_the_first_webhook_again(
    receiver: Receiver,
) -> None:
    receiver.fail_first = {"/billing"}
    with Simulation([workflow(TWO_HOOKS % {"url": receiver.url})]) as sim:
        sim.send(event("f1", "form.submitted", {"form": "demo"}, email="ivo@example.com"))
        sim.advance(DEFAULT_START + timedelta(minutes=5))  # WebhookFailed is retried after 30 s
        sim.finish()
        (run,) = executions(sim, "hooks")
        assert run["status"] == "SUCCEEDED"
        failures = [e for e in sim.stack.history(run["executionArn"]) if e["type"] == "TaskFailed"]
        assert [e["taskFailedEventDetails"]["error"] for e in failures] == ["WebhookFailed"]
        # One Task holds the three steps: it ran twice, and the CRM heard of the contact once.
        assert receiver.posts("/crm") == 1
        assert receiver.posts("/billing") == 2
        assert [s[1:] for s in steps(sim, "hooks", email="ivo@example.com")] == [
            ("tell-crm", "done"),
            ("tell-billing", "done"),
            ("thanks", "done"),
        ]
    # Both calls of the billing hook carry one idempotency key: a receiver can drop the second.
    keys = {h["Idempotency-Key"] for p, h, _ in receiver.requests if p == "/billing"}
    assert len(keys) == 1


SIGNED = """
name: signed
triggers: [{event: form.submitted}]
steps:
  - id: tell-crm
    call_webhook: {url: "%(url)s/crm", secret: %(secret)s, body: {plan: pro}}
"""


def test_a_webhook_with_a_secret_is_signed_with_the_ssm_secure_string(receiver: Receiver) -> None:
    name = "/stepwise/test/webhook-signing-secret"  # its own name: Powertools caches a parameter for 5 minutes
    receiver.secret = b"s3cr3t-from-ssm"
    with Simulation([workflow(SIGNED % {"url": receiver.url, "secret": name})]) as sim:
        boto3.client("ssm").put_parameter(Name=name, Value=receiver.secret.decode(), Type="SecureString")
        sim.send(event("f1", "form.submitted", {"form": "demo"}, email="lia@example.com"))
        sim.finish()
        (run,) = executions(sim, "signed")
        assert run["status"] == "SUCCEEDED", run.get("cause")
    ((path, headers, body),) = receiver.requests
    assert path == "/crm" and b'"plan": "pro"' in body
    assert headers["X-Stepwise-Signature"] == "sha256=" + hmac.new(receiver.secret, body, hashlib.sha256).hexdigest()


def test_a_wrong_secret_is_refused_by_the_receiver_and_retried_not_ignored(receiver: Receiver) -> None:
    name = "/stepwise/test/webhook-wrong-secret"
    receiver.secret = b"the-receivers-secret"
    with Simulation([workflow(SIGNED % {"url": receiver.url, "secret": name})]) as sim:
        boto3.client("ssm").put_parameter(Name=name, Value="another-secret", Type="SecureString")
        sim.send(event("f1", "form.submitted", {"form": "demo"}, email="mia@example.com"))
        sim.finish()
        (run,) = executions(sim, "signed")
        assert run["status"] == "FAILED" and run["error"] == "WebhookFailed"
        assert "HTTP 401" in run["cause"]
    assert len(receiver.requests) == 1 + 5  # the first try and the five WebhookFailed retries
