"""Webhooks: a subscriber's URL checked for what it reaches, and each call signed.

A tenant names the URL, so the panel must not become their way into its own network:
the URL must be http(s), and every address its host name resolves to must be public,
unless an administrator allowed it in PANEL_WEBHOOK_ALLOW (networks or host names). The
name is resolved again at each call and the connection goes to the address checked, so
a name that changes its answer after the check (DNS rebinding) gains nothing; redirects
are not followed.

Each call carries `X-Panel-Timestamp` and `X-Panel-Signature: sha256=<hex>`, the
HMAC-SHA256 of `<timestamp>.<body>` under the subscription's secret: a receiver checks
the signature and refuses old timestamps, so a recorded call cannot be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
import urllib.parse
from dataclasses import dataclass

from django.conf import settings

from panel.exceptions import ServiceError
from panel.netcheck import internal_address, pinned_pool

SCHEMES = ("http", "https")
TIMEOUT = 10.0
ANSWER_EXCERPT = 500


@dataclass(frozen=True)
class Target:
    """Where a call goes: the checked address, and the name and path it is for."""

    scheme: str
    hostname: str
    port: int
    address: str
    path: str

    @property
    def host_header(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _refuse(url: str, why: str) -> ServiceError:
    return ServiceError(f'The webhook URL "{url}" {why}', field="webhook_url")


def _allowed(hostname: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an administrator allowed this name or address (PANEL_WEBHOOK_ALLOW)."""
    for entry in settings.PANEL_WEBHOOK_ALLOW:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            if entry.lower() == hostname.lower():
                return True
    return False


def target(url: str) -> Target:
    """The URL's checked target (see the module's text); ServiceError saying why not."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        hostname = parts.hostname or ""
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise _refuse(url, "is not a valid URL. Give an http or https address.") from None
    if parts.scheme.lower() not in SCHEMES or not hostname:
        raise _refuse(url, "is not an http or https URL, e.g. https://hooks.example.org/panel.")
    if parts.username or parts.password:
        raise _refuse(url, "holds a user name or password: the signature proves the sender.")
    try:
        found = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise _refuse(url, f"names a host the panel cannot resolve ({exc}).") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in found]
    if not addresses:
        raise _refuse(url, "names a host that resolves to no address.")
    inside = [a for a in addresses if internal_address(a) and not _allowed(hostname, a)]
    if inside:
        raise _refuse(
            url,
            f"points at {inside[0]}, a loopback, private or link-local address, which the "
            "panel does not call. Give a public address, or ask an administrator to allow "
            "this receiver (PANEL_WEBHOOK_ALLOW).",
        )
    path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    return Target(parts.scheme.lower(), hostname, port, str(addresses[0]), path)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Panel-Signature value of a body sent at timestamp."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def post(url: str, secret: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    """POST the signed body: (status, the start of the answer). ServiceError when the URL
    may not be called; OSError-like failures as urllib3 raises them."""
    where = target(url)
    timestamp = str(int(time.time()))
    sent = {
        "Host": where.host_header,
        "Content-Type": "application/json",
        "User-Agent": "kvm-panel-webhook",
        "X-Panel-Timestamp": timestamp,
        "X-Panel-Signature": signature(secret, timestamp, body),
        **headers,
    }
    pool = pinned_pool(
        where.scheme, where.hostname, where.port, where.address, connect=TIMEOUT, read=TIMEOUT
    )
    response = pool.urlopen(
        "POST",
        where.path,
        body=body,
        headers=sent,
        redirect=False,
        retries=False,
        assert_same_host=False,
        preload_content=False,
    )
    try:
        answer = response.read(ANSWER_EXCERPT, decode_content=True)
    finally:
        response.release_conn()
    return response.status, answer.decode("utf-8", "replace")
