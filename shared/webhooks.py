"""call_webhook's HTTP client: https only, no internal addresses (checked at send time, the checked IP pinned)."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shared import constants as C

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

# Beyond what ipaddress calls private/loopback/link-local/reserved/multicast: the shared address space of carrier
# NAT (100.64.0.0/10, where some VPC endpoints live) and NAT64's well-known prefix (64:ff9b::/96 maps to IPv4).
_ALSO_INTERNAL = [ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("64:ff9b::/96")]


class WebhookRefused(Exception):
    """The webhook's address is not one a workflow may call; the message names the URL's host and the reason."""


class WebhookUnreachable(Exception):
    """The webhook could not be reached or did not answer in time."""


def internal_reason(ip: IPAddress) -> str | None:
    """Why `ip` is internal (loopback, private, link-local such as 169.254.169.254, ...), or None if public."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return internal_reason(ip.ipv4_mapped)
    for name in ("loopback", "unspecified", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    if any(ip in net for net in _ALSO_INTERNAL):
        return "internal"
    if not ip.is_global:
        return "not public"
    return None


def parse_allowlist(text: str) -> tuple[frozenset[str], tuple[Network, ...]]:
    """`host.example.com, 10.1.2.0/24, ::1` (comma or space separated): host names and networks."""
    hosts: set[str] = set()
    nets: list[Network] = []
    for item in text.replace(",", " ").split():
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            hosts.add(item.lower().rstrip("."))
    return frozenset(hosts), tuple(nets)


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class WebhookPolicy:
    """Which webhook addresses a deployment may call. By default: https to public addresses only. Hosts or networks
    on the allowlist (env STEPWISE_WEBHOOK_ALLOW) may also be internal and plain http."""

    allow_hosts: frozenset[str] = frozenset()
    allow_networks: tuple[Network, ...] = ()
    resolve: Resolver = field(default=_resolve, compare=False)

    @classmethod
    def from_allowlist(cls, text: str, resolve: Resolver = _resolve) -> WebhookPolicy:
        hosts, nets = parse_allowlist(text)
        return cls(hosts, nets, resolve)

    def _allowed(self, host: str, ips: Iterable[IPAddress] = ()) -> bool:
        if host.lower().rstrip(".") in self.allow_hosts:
            return True
        ips = list(ips)
        return bool(ips) and all(any(ip in net for net in self.allow_networks) for ip in ips)

    def check(self, url: str) -> tuple[str, str, int, str]:
        """(scheme, host, port, the IP to connect to) for `url`, every address its host resolves to checked now
        (the answer of this lookup is the one connected to: a second lookup could answer differently)."""
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname
        if scheme not in ("https", "http") or not host:
            raise WebhookRefused(f"url {url!r}: only https:// addresses can be called")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise WebhookRefused(f"host {host}: the port is not a number 1-65535") from None
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        try:
            ips = (
                [literal]
                if literal is not None
                else [ipaddress.ip_address(a.split("%")[0]) for a in self.resolve(host, port)]
            )
        except OSError as err:
            raise WebhookUnreachable(f"host {host}: cannot be resolved ({err})") from None
        if not ips:
            raise WebhookUnreachable(f"host {host}: resolves to no address")
        allowed = self._allowed(host, ips)
        if scheme == "http" and not allowed:
            raise WebhookRefused(
                f"host {host}: plain http is refused; use https, or add the host to {ALLOW_ENV} for a trusted one"
            )
        if not allowed:
            for ip in ips:
                reason = internal_reason(ip)
                if reason is not None:
                    raise WebhookRefused(
                        f"host {host}: resolves to {ip}, a {reason} address; webhooks may only call public addresses "
                        f"(add the host or network to {ALLOW_ENV} to allow it)"
                    )
        return scheme, host, port, str(ips[0])


ALLOW_ENV = C.ENV_WEBHOOK_ALLOW


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a checked IP, with the URL's host as the Host header, SNI and the name the certificate must match."""

    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


def send(policy: WebhookPolicy, url: str, method: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST/PUT/PATCH `body` to `url` under `policy`; the HTTP status. Redirects are not followed (a redirect
    could lead to an internal address). Raises WebhookRefused or WebhookUnreachable."""
    scheme, host, port, ip = policy.check(url)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn_cls = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
    conn = conn_cls(host, port, ip, timeout)
    try:
        conn.request(method, target, body=body, headers=headers)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException) as err:
        raise WebhookUnreachable(f"host {host}: {err or type(err).__name__}") from None
    finally:
        conn.close()
