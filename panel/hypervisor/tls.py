"""Hosts reached over qemu+tls: checking a set of certificates against the host before
the panel keeps it, with the cause of a refusal named.

libvirt says little when TLS fails ("Failed to verify peer's certificate"), so a TLS
handshake of our own with the same files comes first: it tells an unknown CA from a
certificate made for another name. Then libvirt connects with them and reads the host's
facts; a host that closes the connection after the handshake refused our certificate.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import libvirt
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .connection import check_uri, libvirt_errors, open_connection
from .errors import HostUnavailable
from .host import read_facts
from .specs import HostFacts

DEFAULT_TLS_PORT = 16514
# OpenSSL's codes for a chain that does not lead to a CA of ours.
_UNKNOWN_ISSUER = {2, 18, 19, 20, 21}
_EXPIRED, _NOT_YET_VALID = 10, 9


class TLSRefused(HostUnavailable):
    """The host and the panel's certificates do not fit: the message says which side and why."""


@dataclass(frozen=True)
class PeerCertificate:
    """The certificate a host showed: its subject, issuer, names, expiry and fingerprint."""

    subject: str
    issuer: str
    names: tuple[str, ...]
    not_after: dt.datetime
    sha256: str


def _names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    ips = [str(ip) for ip in alt.get_values_for_type(x509.IPAddress)]
    return tuple(alt.get_values_for_type(x509.DNSName)) + tuple(ips)


def _common_names(cert: x509.Certificate) -> list[str]:
    attrs = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    return [str(a.value) for a in attrs]


def _name_matches(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*.") and "." in host:
        return host.split(".", 1)[1] == pattern[2:]
    return pattern == host


def _is_for(cert: x509.Certificate, host: str) -> bool:
    """Whether cert names host, as gnutls checks it (names, else the common name)."""
    names = _names(cert) or tuple(_common_names(cert))
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return any(_name_matches(n, host) for n in names)
    return any(n == str(address) for n in names)


def _peer(der: bytes) -> PeerCertificate:
    cert = x509.load_der_x509_certificate(der)
    return PeerCertificate(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        names=_names(cert) or tuple(_common_names(cert)),
        not_after=cert.not_valid_after_utc,
        sha256=cert.fingerprint(hashes.SHA256()).hex(":"),
    )


def _context(pki: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # checked below, to name what the certificate is for
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(pki / "cacert.pem"))
    context.load_cert_chain(str(pki / "clientcert.pem"), str(pki / "clientkey.pem"))
    return context


def _refusal(exc: ssl.SSLCertVerificationError, where: str) -> TLSRefused:
    code = exc.verify_code
    if code in _UNKNOWN_ISSUER:
        return TLSRefused(
            f"the certificate of {where} is not signed by the uploaded CA certificate "
            f"({exc.verify_message}): upload the CA certificate that signed the host's "
            "server certificate (the ca_file of its libvirtd, /etc/pki/CA/cacert.pem by default)"
        )
    if code in (_EXPIRED, _NOT_YET_VALID):
        return TLSRefused(
            f"the certificate of {where} is {exc.verify_message}: renew the host's server "
            "certificate (/etc/pki/libvirt/servercert.pem there)"
        )
    return TLSRefused(f"the certificate of {where} is refused: {exc.verify_message}")


def server_certificate(uri: str, pki: Path, timeout: float) -> PeerCertificate:
    """The host's TLS certificate, when it is signed by the CA in pki and made for the
    host's name in uri; else TLSRefused (or HostUnavailable) saying what is wrong."""
    parts = urlsplit(check_uri(uri))
    host, port = parts.hostname or "", parts.port or DEFAULT_TLS_PORT
    where = f"{host}:{port}"
    try:
        context = _context(pki)
    except ssl.SSLError as exc:
        raise TLSRefused(f"the certificates cannot be loaded: {exc.reason or exc}") from exc
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLCertVerificationError as exc:
        raise _refusal(exc, where) from exc
    except ssl.SSLError as exc:
        raise TLSRefused(
            f"the TLS handshake with {where} failed ({exc.reason or exc}): check that "
            "libvirtd listens for TLS there (listen_tls = 1)"
        ) from exc
    except OSError as exc:
        raise HostUnavailable(
            f"cannot reach {where} ({exc.strerror or exc}): check that libvirtd listens "
            "for TLS there (listen_tls = 1, tls_port) and that no firewall is in the way"
        ) from exc
    if not der:
        raise TLSRefused(f"{where} showed no certificate")
    peer = _peer(der)
    if not _is_for(x509.load_der_x509_certificate(der), host):
        raise TLSRefused(
            f"the certificate of {where} is made for {', '.join(peer.names) or 'no name'}, "
            f"not for {host}: use one of those names in the URI, or give the host a "
            f"certificate that names {host}"
        )
    return peer


def verify_tls_host(uri: str, pki: Path, timeout: float) -> tuple[HostFacts, PeerCertificate]:
    """Connect to the qemu+tls host at uri with the certificates in pki and read its facts
    (and the certificate it showed); TLSRefused or HostUnavailable naming the cause."""
    uri = check_uri(uri)
    peer = server_certificate(uri, pki, timeout)
    try:
        conn = open_connection(uri, timeout, pki=pki)
    except HostUnavailable as exc:
        if "TLS confirmation" in str(exc) or "Connection reset" in str(exc):
            raise TLSRefused(
                "the host closed the connection after the TLS handshake: its libvirtd "
                "refused the client certificate (its ca_file does not hold the CA that "
                "signed it, or the certificate's subject is not in its tls_allowed_dn_list)"
            ) from exc
        raise
    try:
        with libvirt_errors():
            facts = read_facts(conn, uri)
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()
    return facts, peer
