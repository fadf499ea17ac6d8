"""Pytest plugin: a libvirt host reached over qemu+tls, and test certificates.

List it in ``pytest_plugins`` of tests/conftest.py. Fixtures:

``test_pki`` (session)
    A certificate authority, a server certificate for 127.0.0.1 and localhost, a client
    certificate (CN=panel-client), and an unrelated second CA, made with ``cryptography``
    in a directory of this session (``Pki``; ``pki.issue()`` makes more).

``tls_host_uri`` (session)
    Starts a libvirtd with ``scripts/second-libvirtd.sh`` (its own mount namespace and
    state dir, ``PANEL_TLS_HOST_DIR``), listening for TLS on 127.0.0.1 only with the
    server certificate of ``test_pki``, asking every client for a certificate of that
    CA whose subject matches ``CN=panel-*``. Returns ``qemu+tls://127.0.0.1:PORT/system``;
    stops it at the end of the session.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "second-libvirtd.sh"
STATE_DIR = os.environ.get("PANEL_TLS_HOST_DIR", "/var/lib/panel-tls-host")
TCP_PORT = int(os.environ.get("PANEL_TLS_HOST_TCP_PORT", "16549"))
TLS_PORT = int(os.environ.get("PANEL_TLS_HOST_PORT", "16559"))
ALLOWED_DN = "CN=panel-*"


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass
class Issued:
    """A certificate and its key, as PEM."""

    cert: bytes
    key: bytes
    certificate: x509.Certificate = field(repr=False)
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(pem(cert), key_pem(key), cert, key)


def issue(
    ca: Issued,
    cn: str,
    *,
    server: bool = False,
    names: tuple[str, ...] = (),
    days: int = 365,
    expired: bool = False,
) -> Issued:
    """A certificate of ca for a TLS server (with names) or client."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(days=1), now + dt.timedelta(days=days)
    if expired:
        start, end = now - dt.timedelta(days=30), now - dt.timedelta(days=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if names:
        alt: list[x509.GeneralName] = []
        for n in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                alt.append(x509.DNSName(n))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = builder.sign(ca.private_key, hashes.SHA256())
    return Issued(pem(cert), key_pem(key), cert, key)


@dataclass
class Pki:
    """The session's test certificates."""

    dir: Path
    ca: Issued
    server: Issued
    client: Issued
    other_ca: Issued

    def files(self, client: Issued | None = None, ca: bytes | None = None) -> dict[str, bytes]:
        """The three uploads of an add: CA, client certificate and key (PEM)."""
        client = client or self.client
        return {
            "ca_certificate": self.ca.cert if ca is None else ca,
            "client_certificate": client.cert,
            "client_key": client.key,
        }


def make_pki(directory: Path) -> Pki:
    ca = make_ca("Panel Test CA")
    server = issue(ca, "panel-tls-host", server=True, names=("127.0.0.1", "localhost"))
    pki = Pki(
        dir=directory,
        ca=ca,
        server=server,
        client=issue(ca, "panel-client"),
        other_ca=make_ca("Unrelated CA"),
    )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / "cacert.pem").write_bytes(ca.cert)
    (directory / "servercert.pem").write_bytes(server.cert)
    key = directory / "serverkey.pem"
    key.touch(mode=0o600)
    key.write_bytes(server.key)
    return pki


def _script(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PANEL_SECOND_HOST_DIR": STATE_DIR},
    )


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("tls-host-pki"))


@pytest.fixture(scope="session")
def tls_host_uri(test_pki):
    # Its certificates are this session's: one left running by another session goes first.
    _script("stop")
    args = ["start", str(TCP_PORT), "--tls", str(TLS_PORT), str(test_pki.dir)]
    result = _script(*args, "--allowed-dn", ALLOWED_DN)
    if result.returncode != 0:
        pytest.fail(f"{SCRIPT} {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    yield f"qemu+tls://127.0.0.1:{TLS_PORT}/system"
    result = _script("stop")
    if result.returncode != 0:
        pytest.fail(f"{SCRIPT} stop failed:\n{result.stdout}{result.stderr}")
