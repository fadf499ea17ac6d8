"""Boot files of a network install tree, like `virt-install --location URL`.

The panel boots the installer's kernel and initrd directly, so it has to find
them in the tree: each distribution keeps them in its own place, and the
known places are tried in order. Only http and https are followed, so a user
can never make the panel read its own files through a `file:` URL, and only
trees under `PANEL_INSTALL_MIRRORS` (when set) or on public addresses (when
not), so the panel cannot be made to fetch from itself or its private network.

A name is resolved, every address it has is checked, and the connection goes to
the address that was checked (the Host header and TLS name stay the URL's): a name
that points inside, or that answers differently between the check and the fetch
(DNS rebinding), reaches nothing. Each redirect is checked the same way. Fetches
go straight to the tree's server, never through an http_proxy.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import urllib3
from django.conf import settings

from panel.exceptions import ServiceError
from panel.netcheck import internal_address, pinned_pool

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
MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class UrlRules:
    """Where a kind of URL may point: the setting that lists its allowed mirrors (none:
    any public address), the request field it comes in, and what it is (for messages)."""

    setting: str
    field: str
    what: str
    example: str

    @property
    def mirrors(self) -> list[str]:
        return list(getattr(settings, self.setting, []) or [])


INSTALL_TREES = UrlRules(
    "PANEL_INSTALL_MIRRORS",
    "location",
    "Install trees",
    "Give the install tree's web address, e.g. "
    "https://mirror.example.org/fedora/releases/40/Server/x86_64/os/.",
)


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
    too_big = ServiceError(
        f"{url} is larger than {max_bytes} bytes, the most the panel downloads for it. "
        "Check that the URL points at an installer kernel or initrd.",
        field="location",
    )
    response = _open("GET", url, timeout)
    try:
        if response.status >= 400:
            raise ServiceError(
                f"{url} answered {response.status} {response.reason}. Check the URL in a browser.",
                field="location",
            )
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total > max_bytes:
            raise too_big
        chunks: list[bytes] = []
        done = 0
        try:
            while chunk := response.read(CHUNK, decode_content=False):
                done += len(chunk)
                if done > max_bytes:
                    raise too_big
                chunks.append(chunk)
                if progress is not None:
                    progress(done, total)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ServiceError(
                f"The download of {url} broke off after {done} bytes ({exc}). Try again.",
                field="location",
            ) from exc
    finally:
        response.release_conn()
    return b"".join(chunks)


def checked_url(url: str, rules: UrlRules = INSTALL_TREES) -> str:
    """The URL, if it is an http(s) address the panel may fetch from; else a ServiceError."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        hostname = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError on a port out of range
    except ValueError:
        parts, hostname = None, None
    if parts is None or parts.scheme.lower() not in SCHEMES or not hostname:
        raise ServiceError(
            f'"{url}" is not an http or https URL. {rules.example}', field=rules.field
        )
    normalized = urllib.parse.urlunsplit(parts)
    mirrors = rules.mirrors
    if mirrors:
        if not any(_under(normalized, mirror) for mirror in mirrors):
            raise ServiceError(
                f'"{url}" is not on an allowed mirror. {rules.what} must be under one of: '
                f"{', '.join(mirrors)} ({rules.setting}).",
                field=rules.field,
            )
    elif _internal_host(hostname):
        raise ServiceError(
            f'"{url}" points at a loopback, private or link-local address, which the panel '
            "does not fetch from. Give the address of a public mirror, or have the admin list "
            f"the local mirror in {rules.setting}.",
            field=rules.field,
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
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        address = _legacy_ipv4(name)
        if address is None:
            return False
    return internal_address(address)


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
    head = _open("HEAD", url, timeout)
    head.release_conn()
    if head.status < 300:
        return True
    if head.status == 404:
        return False
    ranged = _open("GET", url, timeout, headers={"Range": "bytes=0-0"})
    ranged.release_conn()
    return ranged.status < 300


@dataclass(frozen=True)
class Target:
    """Where a request for a URL goes: the checked address, and the name it is sent for."""

    url: str
    scheme: str
    hostname: str
    port: int
    address: str  # the address that was checked: the one connected to

    @property
    def host_header(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def path(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        return urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))


def target(url: str, rules: UrlRules = INSTALL_TREES) -> Target:
    """The URL checked (checked_url), its host name resolved and, unless the URL is under
    the rules' mirrors, every address it resolves to checked as public; ServiceError if not."""
    normalized = checked_url(url, rules)
    parts = urllib.parse.urlsplit(normalized)
    hostname = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        found = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ServiceError(
            f'The panel cannot resolve "{hostname}" ({exc}). Check the name in the URL.',
            field=rules.field,
        ) from exc
    addresses = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in found))
    if not addresses:
        raise ServiceError(
            f'"{hostname}" resolves to no address. Check the name in the URL.', field=rules.field
        )
    if not rules.mirrors:
        inside = [a for a in addresses if internal_address(ipaddress.ip_address(a))]
        if inside:
            raise ServiceError(
                f'"{url}": {hostname} resolves to {inside[0]}, a loopback, private or link-local '
                "address, which the panel does not fetch from. Give the address of a public "
                f"mirror, or have the admin list the local mirror in {rules.setting}.",
                field=rules.field,
            )
    return Target(normalized, parts.scheme.lower(), hostname, port, addresses[0])


def _pool(where: Target, timeout: float) -> urllib3.HTTPConnectionPool:
    """A connection pool to the checked address, speaking to it as the URL's host name."""
    return pinned_pool(
        where.scheme,
        where.hostname,
        where.port,
        where.address,
        connect=min(timeout, 15),
        read=timeout,
    )


def open_url(
    url: str, rules: UrlRules, *, timeout: float = 60, headers: dict[str, str] | None = None
) -> urllib3.BaseHTTPResponse:
    """A GET of url under rules (each redirect checked, connections to the checked address):
    the response, its body still to read; release_conn() it when done."""
    return _open("GET", url, timeout, headers, rules)


def _open(
    method: str,
    url: str,
    timeout: float,
    headers: dict[str, str] | None = None,
    rules: UrlRules = INSTALL_TREES,
) -> urllib3.BaseHTTPResponse:
    """The response to `method url` once no redirect is left, each hop checked by target()
    and sent to the address checked; network failures become a message about the server."""
    previous = url
    for hop in range(MAX_REDIRECTS + 1):
        try:
            where = target(url, rules)
        except ServiceError as exc:
            if hop == 0:
                raise
            raise ServiceError(
                f"{previous} redirects to {url}, which the panel may not fetch from: {exc.message}",
                field=rules.field,
            ) from exc
        try:
            response = _pool(where, timeout).urlopen(
                method,
                where.path,
                headers={"Host": where.host_header, **(headers or {})},
                redirect=False,
                retries=False,
                preload_content=False,
                assert_same_host=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ServiceError(
                f"Cannot reach {url}: {exc}. Check the URL and that the panel's host can "
                "reach that server.",
                field=rules.field,
            ) from exc
        location = response.headers.get("Location")
        if response.status not in REDIRECTS or not location:
            return response
        response.release_conn()
        previous, url = url, urllib.parse.urljoin(where.url, location)
        if urllib.parse.urlsplit(url).scheme.lower() not in SCHEMES:
            raise ServiceError(
                f"{previous} redirects to {url}, which is not http or https. "
                "Give the final http(s) URL.",
                field=rules.field,
            )
    raise ServiceError(
        f"{url} redirects more than {MAX_REDIRECTS} times. Give the final URL.",
        field=rules.field,
    )
