"""Boot files of a network install tree, like `virt-install --location URL`.

The panel boots the installer's kernel and initrd directly, so it has to find
them in the tree: each distribution keeps them in its own place, and the
known places are tried in order. Only http and https are followed, so a user
can never make the panel read its own files through a `file:` URL, and only
trees under `PANEL_INSTALL_MIRRORS` (when set) or on a public address (when
not), so the panel cannot be made to fetch from itself or its private network.
The check reads the URL only (no DNS lookup); redirects are checked the same way.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from django.conf import settings

from panel.exceptions import ServiceError

# (distributions, kernel, initrd), relative to the tree's root, tried in order.
LAYOUTS: tuple[tuple[str, str, str], ...] = (
    ("Fedora, RHEL, CentOS, Rocky, Alma", "images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"),
    ("Debian DVD or tree", "install.amd/vmlinuz", "install.amd/initrd.gz"),
    (
        "Debian mirror",
        "main/installer-amd64/current/images/netboot/debian-installer/amd64/linux",
        "main/installer-amd64/current/images/netboot/debian-installer/amd64/initrd.gz",
    ),
    ("Ubuntu", "casper/vmlinuz", "casper/initrd"),
    ("openSUSE", "boot/x86_64/loader/linux", "boot/x86_64/loader/initrd"),
)
SCHEMES = ("http", "https")
CHUNK = 1024 * 1024


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http and https URLs."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme not in SCHEMES:
            raise ServiceError(
                f"{req.full_url} redirects to {newurl}, which is not http or https. "
                "Give the final http(s) URL of the tree.",
                field="location",
            )
        try:
            checked_url(newurl)
        except ServiceError as exc:
            raise ServiceError(
                f"{req.full_url} redirects to {newurl}, which the panel may not fetch from: "
                f"{exc.message}",
                field="location",
            ) from exc
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def find_boot_files(url: str, *, timeout: float = 15) -> tuple[str, str]:
    """The absolute URLs of the kernel and initrd of the first known layout found under `url`."""
    base = checked_url(url).rstrip("/") + "/"
    for _, kernel, initrd in LAYOUTS:
        kernel_url = urllib.parse.urljoin(base, kernel)
        initrd_url = urllib.parse.urljoin(base, initrd)
        if _exists(kernel_url, timeout) and _exists(initrd_url, timeout):
            return kernel_url, initrd_url
    tried = "; ".join(f"{kernel} ({names})" for names, kernel, _ in LAYOUTS)
    raise ServiceError(
        f"No installer kernel and initrd found under {base}. Tried: {tried}. "
        "Give the URL of the tree's root (the folder holding images/ or install.amd/).",
        field="location",
    )


def fetch(
    url: str,
    *,
    max_bytes: int,
    timeout: float = 60,
    progress: Callable[[int, int | None], None] | None = None,
) -> bytes:
    """Download `url`, refusing a body over `max_bytes`; `progress(done, total)` after each chunk."""
    request = urllib.request.Request(checked_url(url))
    too_big = ServiceError(
        f"{url} is larger than {max_bytes} bytes, the most the panel downloads for it. "
        "Check that the URL points at an installer kernel or initrd.",
        field="location",
    )
    try:
        response = _open(request, timeout)
    except urllib.error.HTTPError as exc:
        raise ServiceError(
            f"{url} answered {exc.code} {exc.reason}. Check the URL in a browser.",
            field="location",
        ) from exc
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total > max_bytes:
            raise too_big
        chunks: list[bytes] = []
        done = 0
        try:
            while chunk := response.read(CHUNK):
                done += len(chunk)
                if done > max_bytes:
                    raise too_big
                chunks.append(chunk)
                if progress is not None:
                    progress(done, total)
        except OSError as exc:
            raise ServiceError(
                f"The download of {url} broke off after {done} bytes ({exc}). Try again.",
                field="location",
            ) from exc
    return b"".join(chunks)


def checked_url(url: str) -> str:
    """The URL, if it is an http(s) address the panel may fetch from; else a ServiceError."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        hostname = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError on a port out of range
    except ValueError:
        parts, hostname = None, None
    if parts is None or parts.scheme.lower() not in SCHEMES or not hostname:
        raise ServiceError(
            f'"{url}" is not an http or https URL. Give the install tree\'s web address, '
            "e.g. https://mirror.example.org/fedora/releases/40/Server/x86_64/os/.",
            field="location",
        )
    normalized = urllib.parse.urlunsplit(parts)
    mirrors = settings.PANEL_INSTALL_MIRRORS
    if mirrors:
        if not any(_under(normalized, mirror) for mirror in mirrors):
            raise ServiceError(
                f'"{url}" is not on an allowed mirror. Install trees must be under one of: '
                f"{', '.join(mirrors)} (PANEL_INSTALL_MIRRORS).",
                field="location",
            )
    elif _internal_host(hostname):
        raise ServiceError(
            f'"{url}" points at a loopback, private or link-local address, which the panel '
            "does not fetch from. Give the address of a public mirror, or have the admin list "
            "the local mirror in PANEL_INSTALL_MIRRORS.",
            field="location",
        )
    return normalized


def _under(url: str, prefix: str) -> bool:
    """Whether `url` is `prefix` or below it (the same scheme, host and port, a path inside)."""
    try:
        want = urllib.parse.urlsplit(prefix.strip())
        have = urllib.parse.urlsplit(url)
        same_origin = (
            have.scheme.lower() == want.scheme.lower()
            and have.hostname == want.hostname
            and have.port == want.port
        )
    except ValueError:
        return False
    if not same_origin or have.username or have.password:
        return False
    base = want.path if want.path.endswith("/") else want.path + "/"
    path = have.path if have.path.endswith("/") else have.path + "/"
    segments = urllib.parse.unquote(have.path).split("/")
    return path.startswith(base) and ".." not in segments


def _internal_host(hostname: str) -> bool:
    """Whether `hostname` names this machine or a private network, read literally (no DNS)."""
    name = hostname.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost") or not name:
        return True
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        address = _legacy_ipv4(name)
        if address is None:
            return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            address = embedded
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address.is_reserved
        or address.is_multicast
    )


def _legacy_ipv4(name: str) -> ipaddress.IPv4Address | None:
    """The address of a numeric host like `2130706433`, `0x7f.1` or `127.1`, as the C library reads it."""
    if not all(c in "0123456789abcdefx." for c in name) or not name[0].isdigit():
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(name))
    except OSError:
        return None


def _exists(url: str, timeout: float) -> bool:
    """Whether `url` answers 2xx: HEAD first, then a one-byte GET for servers that refuse HEAD."""
    try:
        with _open(urllib.request.Request(url, method="HEAD"), timeout):
            return True
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
    try:
        ranged = urllib.request.Request(url, headers={"Range": "bytes=0-0"})
        with _open(ranged, timeout):
            return True
    except urllib.error.HTTPError:
        return False


def _open(request: urllib.request.Request, timeout: float) -> http.client.HTTPResponse:
    """Open `request`, turning network failures into a message about the tree's server."""
    try:
        opener = urllib.request.build_opener(_HttpOnlyRedirects)
        return opener.open(request, timeout=timeout)
    except urllib.error.HTTPError:
        raise
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServiceError(
            f"Cannot reach {request.full_url}: {reason}. Check the URL and that the panel's "
            "host can reach that server.",
            field="location",
        ) from exc
