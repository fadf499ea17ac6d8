"""VNC displays of qemu+tls hosts: reached over TLS, never in clear.

A qemu+tls host has no SSH to tunnel through, so its displays listen on its network
address, and QEMU there speaks TLS (qemu.conf: vnc_tls = 1, with
vnc_tls_x509_verify = 1 so that it asks for the panel's client certificate). The panel
opens a relay on its own loopback for a console session (open_relay). For each
connection websockify (or the view-only proxy) makes to it, the relay connects to the
display, negotiates RFB's VeNCrypt security with an x509 subtype, checks the display's
certificate against the host's uploaded CA and the host's name, and shows its client
certificate, all with the certificates the panel reaches that host's libvirtd with
(hypervisor.pki_path). Then it speaks plain RFB on its loopback side, offering the
display's own inner security (none, or the VNC password challenge, which passes through
untouched), and relays the bytes both ways.

A display that offers no x509 VeNCrypt subtype is refused: the panel does not carry a
console in clear over the network.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RFB_VERSION = b"RFB 003.008\n"
VENCRYPT = 19
SECURITY_NONE = 1
SECURITY_VNC = 2
# VeNCrypt subtypes with x509 certificates, and the RFB security each carries inside TLS.
X509_NONE = 260
X509_VNC = 261
INNER = {X509_NONE: SECURITY_NONE, X509_VNC: SECURITY_VNC}
CONNECT_TIMEOUT = 10.0
CHUNK = 65536


class DisplayRefused(Exception):
    """The display cannot be reached over TLS; the message says why and what to do."""


@dataclass(frozen=True)
class Display:
    """A display of a qemu+tls host: its address and port, the host's name its
    certificate must carry, and the host's certificates (libvirt's pkipath layout)."""

    address: str
    port: int
    server_name: str
    pki: Path

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"


def _context(display: Display) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    try:
        context.load_verify_locations(cafile=str(display.pki / "cacert.pem"))
        context.load_cert_chain(
            str(display.pki / "clientcert.pem"), str(display.pki / "clientkey.pem")
        )
    except (OSError, ssl.SSLError) as exc:
        raise DisplayRefused(f"the host's certificates cannot be loaded: {exc}") from exc
    return context


def _read(sock: socket.socket, n: int, what: str) -> bytes:
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            raise DisplayRefused(f"the display closed the connection during {what}")
        data += part
    return data


def _choose_subtype(sock: socket.socket, display: Display) -> int:
    """RFB's version and security, then VeNCrypt up to the chosen x509 subtype."""
    version = _read(sock, 12, "the RFB greeting")
    if not version.startswith(b"RFB "):
        raise DisplayRefused(f"{display.where} is not a VNC display")
    sock.sendall(RFB_VERSION)
    count = _read(sock, 1, "the security types")[0]
    types = _read(sock, count, "the security types") if count else b""
    if VENCRYPT not in types:
        raise DisplayRefused(
            f"the display at {display.where} does not offer TLS (VeNCrypt): set vnc_tls = 1 "
            "and vnc_tls_x509_verify = 1 in the host's qemu.conf and restart the VM; the "
            "panel does not carry a console in clear over the network"
        )
    sock.sendall(bytes([VENCRYPT]))
    major, minor = _read(sock, 2, "VeNCrypt's version")
    if (major, minor) < (0, 2):
        raise DisplayRefused(f"the display at {display.where} speaks VeNCrypt {major}.{minor}")
    sock.sendall(b"\x00\x02")
    if _read(sock, 1, "VeNCrypt's version")[0] != 0:
        raise DisplayRefused(f"the display at {display.where} refused VeNCrypt 0.2")
    count = _read(sock, 1, "VeNCrypt's subtypes")[0]
    offered = struct.unpack(f">{count}I", _read(sock, 4 * count, "VeNCrypt's subtypes"))
    subtype = next((s for s in (X509_VNC, X509_NONE) if s in offered), None)
    if subtype is None:
        raise DisplayRefused(
            f"the display at {display.where} offers TLS without certificates only: give "
            "QEMU the host's certificates (vnc_tls_x509_cert_dir) in its qemu.conf"
        )
    sock.sendall(struct.pack(">I", subtype))
    if _read(sock, 1, "VeNCrypt's subtype")[0] != 1:
        raise DisplayRefused(f"the display at {display.where} refused its own subtype")
    return subtype


@dataclass
class Upstream:
    """A display's TLS connection, its inner security (SECURITY_NONE or SECURITY_VNC),
    and the display's first bytes inside TLS, read to learn that it took the panel's
    certificate (TLS 1.3 says so only after the handshake): its security result or its
    password challenge, owed to the viewer."""

    tls: ssl.SSLSocket
    inner: int
    first: bytes


def connect_display(display: Display) -> Upstream:
    """A TLS connection to the display, RFB negotiated up to its inner security."""
    context = _context(display)
    try:
        raw = socket.create_connection((display.address, display.port), CONNECT_TIMEOUT)
    except OSError as exc:
        raise DisplayRefused(
            f"cannot reach the display at {display.where} ({exc.strerror or exc}): it must "
            "listen on an address the panel reaches (vnc_listen in the host's qemu.conf)"
        ) from exc
    try:
        subtype = _choose_subtype(raw, display)
        tls = context.wrap_socket(raw, server_hostname=display.server_name)
    except ssl.SSLCertVerificationError as exc:
        raw.close()
        raise DisplayRefused(
            f"the certificate of the display at {display.where} is refused "
            f"({exc.verify_message}): give QEMU a server certificate of the host's CA "
            f"that names {display.server_name}"
        ) from exc
    except (ssl.SSLError, OSError) as exc:
        raw.close()
        raise DisplayRefused(
            f"the TLS handshake with the display at {display.where} failed: {exc}"
        ) from exc
    except DisplayRefused:
        raw.close()
        raise
    inner = INNER[subtype]
    try:
        first = _read(tls, 4 if inner == SECURITY_NONE else 16, "its security")
    except (ssl.SSLError, OSError, DisplayRefused) as exc:
        tls.close()
        raise DisplayRefused(
            f"the TLS handshake with the display at {display.where} failed: it refused the "
            f"panel's client certificate ({exc}); the host's qemu.conf must trust the CA "
            "of the certificates uploaded for the host"
        ) from exc
    tls.settimeout(None)
    return Upstream(tls, inner, first)


def _greet_viewer(viewer: socket.socket, inner: int) -> bool:
    """Plain RFB toward the viewer, offering the display's inner security; False when the
    viewer chose something else or went away."""
    viewer.sendall(RFB_VERSION)
    if not viewer.recv(12).startswith(b"RFB 003.00"):
        return False
    viewer.sendall(bytes([1, inner]))
    return viewer.recv(1) == bytes([inner])


def _pump(viewer: socket.socket, display: ssl.SSLSocket) -> None:
    """Bytes both ways until either side closes, in one thread (an SSL socket must not
    be read and written from two threads at once)."""
    other = {viewer: display, display: viewer}
    while True:
        ready = [display] if display.pending() else select.select([viewer, display], [], [])[0]
        for sock in ready:
            try:
                data = sock.recv(CHUNK)
            except ssl.SSLWantReadError:
                continue
            if not data:
                return
            other[sock].sendall(data)


def _serve(viewer: socket.socket, display: Display) -> None:
    with viewer:
        try:
            upstream = connect_display(display)
        except DisplayRefused as exc:
            log.warning("VNC over TLS to %s refused: %s", display.where, exc)
            return
        with upstream.tls, contextlib.suppress(OSError):
            if _greet_viewer(viewer, upstream.inner):
                viewer.sendall(upstream.first)
                _pump(viewer, upstream.tls)


def _accept(listener: socket.socket, display: Display, hold_seconds: float) -> None:
    deadline = time.monotonic() + hold_seconds
    with listener:
        while (left := deadline - time.monotonic()) > 0:
            listener.settimeout(left)
            try:
                viewer, _ = listener.accept()
            except TimeoutError:
                break
            viewer.settimeout(None)
            threading.Thread(
                target=_serve, args=(viewer, display), name="vnc-tls-relay", daemon=True
            ).start()


def open_relay(display: Display, hold_seconds: float) -> int:
    """Check that the display is reached over TLS (DisplayRefused, saying why, if not),
    then listen on a loopback port that takes connections for hold_seconds, each relayed
    to the display as the module says; returns the port."""
    connect_display(display).tls.close()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    threading.Thread(
        target=_accept, args=(listener, display, hold_seconds), name="vnc-tls-accept", daemon=True
    ).start()
    return int(port)
