"""call_webhook is safe: https to public addresses only, checked at send time with the checked IP pinned."""

from __future__ import annotations

import ipaddress
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from shared.webhooks import WebhookPolicy, WebhookRefused, internal_reason, send
from shared.workflow.lint import lint
from shared.workflow.model import load_workflow


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.5", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.1.1", "internal"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("::1", "loopback"),
        ("fd00::1", "private"),
        ("fe80::1", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("93.184.215.14", None),
        ("2606:4700::1111", None),
    ],
)
def test_internal_addresses(address: str, reason: str | None) -> None:
    assert internal_reason(ipaddress.ip_address(address)) == reason


def resolver(answer: list[str]) -> Any:
    return lambda host, port: answer


def test_a_host_resolving_to_the_metadata_address_is_refused() -> None:
    policy = WebhookPolicy(resolve=resolver(["93.184.215.14", "169.254.169.254"]))
    with pytest.raises(WebhookRefused) as info:
        policy.check("https://crm.example.com/hook")
    assert str(info.value) == (
        "host crm.example.com: resolves to 169.254.169.254, a link-local address; webhooks may only call public "
        "addresses (add the host or network to STEPWISE_WEBHOOK_ALLOW to allow it)"
    )


def test_plain_http_is_refused_by_default() -> None:
    policy = WebhookPolicy(resolve=resolver(["93.184.215.14"]))
    with pytest.raises(WebhookRefused) as refused:
        policy.check("http://crm.example.com/hook")
    assert str(refused.value) == (
        "host crm.example.com: plain http is refused; use https, "
        "or add the host to STEPWISE_WEBHOOK_ALLOW for a trusted one"
    )


def test_a_public_https_host_is_checked_and_pinned() -> None:
    policy = WebhookPolicy(resolve=resolver(["93.184.215.14"]))
    assert policy.check("https://crm.example.com:8443/hook") == ("https", "crm.example.com", 8443, "93.184.215.14")


def test_the_allowlist_takes_hosts_and_networks() -> None:
    internal = resolver(["10.1.2.3"])
    assert WebhookPolicy.from_allowlist("crm.internal", internal).check("http://crm.internal/x")[3] == "10.1.2.3"
    assert WebhookPolicy.from_allowlist("10.1.0.0/16", internal).check("https://crm.internal/x")[3] == "10.1.2.3"
    with pytest.raises(WebhookRefused):
        WebhookPolicy.from_allowlist("10.9.0.0/16", internal).check("https://crm.internal/x")


def test_the_connection_goes_to_the_checked_address_with_the_urls_host() -> None:
    seen: list[tuple[str, str, bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, self.headers["Host"], body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    port = server.server_address[1]
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    # The name resolves (once, here) to the loopback receiver; only the allowlist lets it be called.
    policy = WebhookPolicy.from_allowlist("hooks.test", resolver(["127.0.0.1"]))
    status = send(policy, f"http://hooks.test:{port}/in?x=1", "POST", b'{"a":1}', {"Content-Type": "x"}, 5)
    thread.join(5)
    server.server_close()
    assert status == 204
    assert seen == [("/in?x=1", f"hooks.test:{port}", b'{"a":1}')]


def test_a_webhook_timeout_past_the_step_runners_is_refused_by_validate(tmp_path: Path) -> None:
    f = tmp_path / "slow.yaml"
    f.write_text("name: slow\nsteps:\n  - {id: crm, call_webhook: {url: 'https://crm.example.com', timeout: 90s}}\n")
    assert [str(v) for v in lint(load_workflow(f))] == [
        "step crm, field call_webhook.timeout: 1m30s is not less than the step runner's own timeout of 60s; use at "
        "most 50s (the receiver can answer 202 and work afterwards)"
    ]
