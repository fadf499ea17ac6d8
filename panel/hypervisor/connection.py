"""Connections to libvirt hosts: one per URI per process, kept alive, reopened.

libvirt needs an event loop for keepalives, lifecycle events and console
streams; one daemon thread per process runs it. Both the loop and the
connections are created lazily and belong to the process that made them, so
nothing opened before a fork (Celery prefork, the web server's workers) is used after it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import libvirt

from .errors import Conflict, HostUnavailable, HypervisorError, InvalidURI, NotFound

log = logging.getLogger(__name__)

ALLOWED_SCHEMES = {
    "qemu",
    "qemu+ssh",
    "qemu+tls",
    "qemu+tcp",
    "qemu+unix",
    "test",
    "test+tcp",
}

_NOT_FOUND_CODES = {
    libvirt.VIR_ERR_NO_DOMAIN,
    libvirt.VIR_ERR_NO_STORAGE_POOL,
    libvirt.VIR_ERR_NO_STORAGE_VOL,
    libvirt.VIR_ERR_NO_NETWORK,
    libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT,
    libvirt.VIR_ERR_NO_INTERFACE,
}
_CONFLICT_CODES = {libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_OPERATION_DENIED}
_UNAVAILABLE_CODES = {libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_INVALID_CONN}
_UNAVAILABLE_DOMAINS = {libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE}

# Suppress libvirt's default handler, which prints every error to stderr.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def translate(exc: libvirt.libvirtError) -> HypervisorError:
    """Map a libvirtError to our exception, keeping libvirt's message."""
    code = exc.get_error_code()
    message = exc.get_error_message() or str(exc)
    if code in _NOT_FOUND_CODES:
        return NotFound(message)
    if code in _CONFLICT_CODES:
        return Conflict(message)
    if code in _UNAVAILABLE_CODES or (
        code == libvirt.VIR_ERR_SYSTEM_ERROR and exc.get_error_domain() in _UNAVAILABLE_DOMAINS
    ):
        return HostUnavailable(message)
    return HypervisorError(message)


@contextlib.contextmanager
def libvirt_errors() -> Iterator[None]:
    """Turn libvirtError raised inside the block into our exceptions."""
    try:
        yield
    except libvirt.libvirtError as exc:
        raise translate(exc) from exc


class _EventLoop:
    """libvirt's default event implementation, run by one daemon thread per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._registered = False

    def ensure(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            if not self._registered:
                # The registration can happen once per process image; after a
                # fork the child inherits it but not the thread that ran it.
                libvirt.virEventRegisterDefaultImpl()
                self._registered = True
            thread = threading.Thread(target=self._run, name="libvirt-events", daemon=True)
            thread.start()
            self._pid = os.getpid()

    @staticmethod
    def _run() -> None:
        while True:
            try:
                libvirt.virEventRunDefaultImpl()
            except Exception:  # noqa: BLE001 - the loop must outlive one bad callback
                log.exception("libvirt event loop iteration failed")


event_loop = _EventLoop()


def check_uri(uri: str) -> str:
    """Return the URI when its scheme is one the panel drives, else raise InvalidURI."""
    uri = (uri or "").strip()
    scheme = urlsplit(uri).scheme
    if not scheme or "://" not in uri:
        raise InvalidURI(
            f"'{uri}' is not a libvirt URI. Use a form like qemu:///system, "
            "qemu+ssh://user@host/system or qemu+tls://host/system."
        )
    if scheme in ("qemu+libssh", "qemu+libssh2"):
        raise InvalidURI(
            f"Use qemu+ssh://user@host/system rather than {scheme}: the panel reaches SSH "
            "hosts its own way, with its own key and the host key an admin confirmed."
        )
    if scheme not in ALLOWED_SCHEMES:
        raise InvalidURI(
            f"The scheme '{scheme}' is not supported. Use one of: "
            + ", ".join(sorted(ALLOWED_SCHEMES))
            + "."
        )
    if urlsplit(uri).password:
        raise InvalidURI(
            "Do not put a password in the URI: it would be stored and shown. "
            "Use an SSH key (qemu+ssh://user@host/system) or TLS certificates instead."
        )
    if any(c.isspace() or ord(c) < 32 for c in uri) or (
        (urlsplit(uri).hostname or "").startswith("-")
        or (urlsplit(uri).username or "").startswith("-")
    ):
        # A host or user starting with '-' would reach ssh as one of its options.
        raise InvalidURI(f"'{uri}' has spaces, control characters or a host starting with '-'.")
    names = _check_parameters(uri)
    if scheme.endswith("+ssh") and "no_tty" not in names:
        # Never let ssh ask for a password on the worker's terminal.
        uri += ("&" if "?" in uri else "?") + "no_tty=1"
    return uri


# The URI parameters a host may carry (https://libvirt.org/uri.html), with the values each
# may take (None: any). Everything else is refused: parameters that run a program
# (command, netcat), open another socket (socket), read a file of the panel's machine
# (keyfile, known_hosts, pkipath, authfile), weaken the connection's checks (no_verify,
# known_hosts_verify, tls_priority) or name another driver (name).
ALLOWED_PARAMETERS: dict[str, frozenset[str] | None] = {
    "no_tty": frozenset({"0", "1"}),
    "mode": frozenset({"auto", "legacy", "direct"}),
    "proxy": frozenset({"auto", "netcat", "native"}),
    "sshauth": None,  # checked per method below
}
_SSH_AUTH_METHODS = frozenset({"agent", "privkey", "password", "keyboard-interactive"})


def _check_parameters(uri: str) -> set[str]:
    """The names of the URI's query parameters, when each is allowed; else InvalidURI."""
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise InvalidURI("A libvirt URI has no #fragment: remove it.")
    if not parts.query:
        return set()
    if ";" in parts.query:
        # libvirt splits parameters at ';' as well as '&'.
        raise InvalidURI("Separate the URI's parameters with '&', not ';'.")
    allowed = ", ".join(sorted(ALLOWED_PARAMETERS))
    names = set()
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in ALLOWED_PARAMETERS:
            raise InvalidURI(
                f"The URI parameter '{name}' is not allowed: the panel refuses parameters "
                "that run programs, open other sockets or files, or weaken the connection's "
                f"checks. Allowed: {allowed}. Put ssh options in the ssh configuration of "
                "the user the panel runs as; a qemu+tls host's certificates are uploaded with it."
            )
        values = ALLOWED_PARAMETERS[name]
        given = set(value.split(",")) if name == "sshauth" else {value}
        choices = _SSH_AUTH_METHODS if name == "sshauth" else values
        if choices is not None and not given <= choices:
            raise InvalidURI(
                f"'{value}' is not a value the panel allows for the URI parameter '{name}': "
                f"use {' or '.join(sorted(choices))}."
            )
        names.add(name)
    return names


def default_pki_dir() -> Path:
    """Where the certificates of the qemu+tls hosts live, one directory per host."""
    return Path("/var/lib/panel/pki")


# The panel points it at its setting (PANEL_PKI_DIR) when it starts.
pki_dir: Callable[[], Path] = default_pki_dir


def is_tls(uri: str) -> bool:
    """Whether the panel reaches the host at uri over TLS with certificates of its own."""
    return urlsplit(uri).scheme == "qemu+tls"


def pki_path(uri: str) -> Path:
    """The certificates the panel reaches the qemu+tls host at uri with, in libvirt's
    pkipath layout (cacert.pem, clientcert.pem, clientkey.pem): a link to the directory of
    the current set, so that replacing them is one rename."""
    digest = hashlib.sha256(check_uri(uri).encode()).hexdigest()[:32]
    return pki_dir() / digest


def tls_uri(uri: str, pki: Path | None = None) -> str:
    """The URI libvirt opens for uri: a qemu+tls host with pkipath naming its certificates
    (pki, else the host's own set), never libvirt's default places once the panel has a set
    for it."""
    if not is_tls(uri):
        return uri
    if pki is None:
        link = pki_path(uri)
        if not link.exists():
            return uri  # a host set up with the certificates in libvirt's default places
        # The directory itself: libvirt reads three files, all of one set.
        pki = Path(os.path.realpath(link))
    separator = "&" if urlsplit(uri).query else "?"
    return f"{uri}{separator}pkipath={quote(str(pki), safe='/')}"


def default_ssh_dir() -> Path:
    """Where the panel's SSH key and the pinned host keys live."""
    return Path("/var/lib/panel/ssh")


# The panel points it at its setting (PANEL_SSH_DIR) when it starts.
ssh_dir: Callable[[], Path] = default_ssh_dir


def is_ssh(uri: str) -> bool:
    """Whether the panel reaches the host at uri over SSH, with a pinned host key."""
    return urlsplit(uri).scheme == "qemu+ssh"


def panel_key_path() -> Path:
    """The panel's own SSH private key (its public key next to it, with .pub)."""
    return ssh_dir() / "id_ed25519"


def known_hosts_path(uri: str) -> Path:
    """The known_hosts file holding the one host key pinned for the host at uri."""
    digest = hashlib.sha256(check_uri(uri).encode()).hexdigest()[:32]
    return ssh_dir() / "known_hosts" / digest


def transport_uri(uri: str) -> str:
    """The URI libvirt opens for uri. A qemu+ssh host is reached with libvirt's libssh
    transport, the panel's key only and the host key pinned for it only (checked, never
    learnt); a host whose key no admin confirmed is not contacted at all."""
    if not is_ssh(uri):
        return uri
    known_hosts = known_hosts_path(uri)
    if not known_hosts.is_file() or not known_hosts.stat().st_size:
        raise HostUnavailable(
            f"The SSH host key of {uri} is not confirmed: the panel does not connect to "
            "it until an admin confirms the host key's fingerprint on the host's page."
        )
    parts = urlsplit(uri)
    params = [(k, v) for k, v in parse_qsl(parts.query) if k in {"mode", "proxy"}]
    params += [
        ("no_tty", "1"),
        ("sshauth", "privkey"),
        ("keyfile", str(panel_key_path())),
        ("known_hosts", str(known_hosts)),
        ("known_hosts_verify", "normal"),
    ]
    return urlunsplit(("qemu+libssh", parts.netloc, parts.path, urlencode(params, safe="/"), ""))


def _auth_callback(_credentials: list[list[object]], _data: object) -> int:
    # Interactive credentials are never available in a server process.
    return -1


def open_connection(uri: str, timeout: float, *, pki: Path | None = None) -> libvirt.virConnect:
    """Open a connection in a helper thread so an unreachable host cannot hang us; a
    qemu+tls host with the certificates in pki (default: its own)."""
    result: dict[str, object] = {}
    target_uri = tls_uri(transport_uri(uri), pki)

    def target() -> None:
        try:
            auth = [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE], _auth_callback, None]
            result["conn"] = libvirt.openAuth(target_uri, auth, 0)
        except libvirt.libvirtError as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, name="libvirt-open", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise HostUnavailable(
            f"No answer from {uri} within {timeout:.0f} s. Check that the host is up "
            "and that libvirtd listens there."
        )
    if "error" in result:
        exc = result["error"]
        assert isinstance(exc, libvirt.libvirtError)
        raise HostUnavailable(f"Cannot connect to {uri}: {exc.get_error_message()}") from exc
    conn = result["conn"]
    assert isinstance(conn, libvirt.virConnect)
    return conn


class ConnectionPool:
    """One open connection per URI for this process, reopened when it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: dict[str, libvirt.virConnect] = {}
        self._pid = os.getpid()

    def get(self, uri: str, timeout: float = 10.0) -> libvirt.virConnect:
        uri = check_uri(uri)
        event_loop.ensure()
        with self._lock:
            if self._pid != os.getpid():
                # Inherited across a fork: the sockets belong to the parent.
                self._conns = {}
                self._pid = os.getpid()
            conn = self._conns.get(uri)
            if conn is not None:
                try:
                    if conn.isAlive():
                        return conn
                except libvirt.libvirtError:
                    pass
                self._conns.pop(uri, None)
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()
        conn = open_connection(uri, timeout)
        with contextlib.suppress(libvirt.libvirtError):
            # Not every driver supports keepalive (test:///, local qemu:///).
            conn.setKeepAlive(5, 3)
        with self._lock:
            existing = self._conns.get(uri)
            if existing is not None:
                conn.close()
                return existing
            self._conns[uri] = conn
        return conn

    def drop(self, uri: str) -> None:
        """Forget (and close) the connection to uri, e.g. after it failed."""
        with self._lock:
            conn = self._conns.pop(uri, None)
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()


pool = ConnectionPool()


def forget_connection(uri: str) -> None:
    """Close this process's connection to uri: the next call opens a new one."""
    pool.drop(check_uri(uri))


def default_timeout() -> float:
    """Seconds to wait for a host to answer when opening a connection."""
    return 10.0


# What connect() and consoles wait for a host by default; the panel points it at its
# setting (PANEL_CONNECT_TIMEOUT) when it starts, so the boundary reads no Django settings.
connect_timeout: Callable[[], float] = default_timeout


def connect(uri: str, timeout: float | None = None) -> libvirt.virConnect:
    """Return this process's live connection to uri (opening it if needed)."""
    if timeout is None:
        timeout = connect_timeout()
    return pool.get(uri, timeout)


@contextlib.contextmanager
def session(uri: str) -> Iterator[libvirt.virConnect]:
    """A connection for one unit of work; a lost connection is dropped for the next one."""
    conn = connect(uri)
    try:
        with libvirt_errors():
            yield conn
    except HostUnavailable:
        pool.drop(check_uri(uri))
        raise
    except HypervisorError:
        try:
            alive = conn.isAlive()
        except libvirt.libvirtError:
            alive = False
        if not alive:
            pool.drop(check_uri(uri))
            raise HostUnavailable(f"Lost the connection to {uri}.") from None
        raise


__all__ = [
    "Conflict",
    "HostUnavailable",
    "HypervisorError",
    "NotFound",
    "check_uri",
    "connect",
    "libvirt_errors",
    "session",
]
