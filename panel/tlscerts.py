"""The certificates an admin uploads for a qemu+tls host: checked before anything is kept,
written in libvirt's pkipath layout, and read back for the host's page.

libvirt loads cacert.pem, clientcert.pem and clientkey.pem from the host's directory and
checks its own certificate against the same CA file as the host's, so the CA file must
hold the CA that signed the client certificate too. What the host accepts (its own CA
list, tls_allowed_dn_list) is checked by connecting.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization

from panel.exceptions import ServiceError

# A PEM certificate is 1-3 KiB and a CA file holds a few: more is the wrong file.
MAX_BYTES = 64 * 1024
FIELDS = ("ca_certificate", "client_certificate", "client_key")
LABELS = {
    "ca_certificate": "The CA certificate",
    "client_certificate": "The client certificate",
    "client_key": "The client key",
}


@dataclass(frozen=True)
class Upload:
    """The three PEM files an admin gives for a qemu+tls host, as uploaded."""

    ca_certificate: bytes
    client_certificate: bytes
    client_key: bytes

    @classmethod
    def of(cls, data: dict[str, Any]) -> Upload | None:
        """The upload among data's fields, None when none of them is given."""
        given = {f: data.get(f) for f in FIELDS}
        if not any(given.values()):
            return None
        for name, value in given.items():
            if not value:
                raise ServiceError(
                    f"{LABELS[name]} is missing: a qemu+tls host needs the CA certificate, "
                    "the client certificate and the client key.",
                    field=name,
                )
        return cls(**{f: _bytes(v) for f, v in given.items()})


def _bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


@dataclass(frozen=True)
class CertInfo:
    """What the host page shows of a certificate."""

    subject: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    sha256: str

    @classmethod
    def of(cls, cert: x509.Certificate) -> CertInfo:
        return cls(
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            sha256=cert.fingerprint(hashes.SHA256()).hex(":"),
        )


@dataclass(frozen=True)
class Checked:
    """A checked upload, re-encoded (nothing but the PEM blocks is kept)."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    ca: tuple[CertInfo, ...]
    client: CertInfo


def _refuse(field: str, problem: str) -> ServiceError:
    return ServiceError(f"{LABELS[field]} {problem}", field=field)


def _certificates(field: str, data: bytes) -> list[x509.Certificate]:
    if len(data) > MAX_BYTES:
        raise _refuse(
            field,
            f"is over {MAX_BYTES // 1024} KiB: a PEM certificate takes a few KiB. Upload the "
            "certificate file itself (-----BEGIN CERTIFICATE-----).",
        )
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise _refuse(
            field,
            "is not a PEM certificate: upload the file that starts with "
            "-----BEGIN CERTIFICATE----- (convert a DER one with "
            "openssl x509 -inform der -in FILE -out FILE.pem).",
        )
    return certs


def _in_date(field: str, cert: x509.Certificate, now: dt.datetime) -> None:
    subject = cert.subject.rfc4514_string() or "(no subject)"
    if cert.not_valid_after_utc <= now:
        raise _refuse(
            field,
            f"({subject}) expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: "
            "issue a new one and upload it.",
        )
    if cert.not_valid_before_utc > now:
        raise _refuse(
            field,
            f"({subject}) is valid only from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC: "
            "check the clock of the machine that made it, or wait.",
        )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _key(data: bytes) -> Any:
    if len(data) > MAX_BYTES:
        raise _refuse("client_key", f"is over {MAX_BYTES // 1024} KiB: a PEM key takes a few KiB.")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise _refuse(
            "client_key",
            "is protected by a passphrase, which the panel cannot type: remove it "
            "(openssl pkey -in key.pem -out clientkey.pem) and upload that file.",
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise _refuse(
            "client_key",
            "is not a PEM private key: upload the file that starts with "
            "-----BEGIN PRIVATE KEY----- (or BEGIN RSA/EC PRIVATE KEY).",
        ) from exc
    return key


def _signed_by(cert: x509.Certificate, cas: list[x509.Certificate]) -> bool:
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _client_usage(cert: x509.Certificate) -> None:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            raise _refuse(
                "client_certificate",
                "may not be used for digital signatures (its key usage), which a TLS "
                "client needs: issue one with digitalSignature.",
            )
    except x509.ExtensionNotFound:
        pass
    try:
        purposes = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH not in purposes:
        raise _refuse(
            "client_certificate",
            "is not for TLS clients (its extended key usage lacks clientAuth): issue one "
            "with the tls_www_client purpose.",
        )


def check(upload: Upload, now: dt.datetime | None = None) -> Checked:
    """The upload, when each file is what it says, in date, and the three fit together;
    else ServiceError naming the file and what to do."""
    now = now or dt.datetime.now(dt.UTC)
    cas = _certificates("ca_certificate", upload.ca_certificate)
    for ca in cas:
        if not _is_ca(ca):
            raise _refuse(
                "ca_certificate",
                f"({ca.subject.rfc4514_string()}) is not a CA certificate (its basic "
                "constraints say CA:FALSE or nothing): upload the certificate of the CA "
                "that signed the host's and the client's certificates.",
            )
        _in_date("ca_certificate", ca, now)
    certs = _certificates("client_certificate", upload.client_certificate)
    client = certs[0]
    _in_date("client_certificate", client, now)
    _client_usage(client)
    key = _key(upload.client_key)
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*public) != client.public_key().public_bytes(*public):
        raise _refuse(
            "client_key",
            "does not belong to the client certificate: upload the key the certificate "
            "was made for.",
        )
    if not _signed_by(client, cas):
        raise _refuse(
            "client_certificate",
            f"was issued by {client.issuer.rfc4514_string()}, not by the uploaded CA "
            "certificate: libvirt checks its own certificate against the same CA file as "
            "the host's, so upload the CA that signed both (or both CAs in one file).",
        )
    pem = serialization.Encoding.PEM
    return Checked(
        ca_pem=b"".join(c.public_bytes(pem) for c in cas),
        cert_pem=b"".join(c.public_bytes(pem) for c in certs),
        key_pem=key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        ca=tuple(CertInfo.of(c) for c in cas),
        client=CertInfo.of(client),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def stage(checked: Checked, root: Path, prefix: str) -> Path:
    """A new directory under root (0700) holding the checked files in libvirt's pkipath
    layout, the key readable by the panel's user only."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    root.chmod(0o700)
    directory = Path(tempfile.mkdtemp(prefix=f"{prefix}.", dir=root))
    directory.chmod(0o700)
    _write(directory / "cacert.pem", checked.ca_pem, 0o644)
    _write(directory / "clientcert.pem", checked.cert_pem, 0o644)
    _write(directory / "clientkey.pem", checked.key_pem, 0o600)
    return directory


def install(directory: Path, link: Path) -> None:
    """Make link point at directory in one step; the set it pointed at before goes."""
    old = Path(os.path.realpath(link)) if link.is_symlink() else None
    temporary = link.with_name(f"{link.name}.link-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(directory.name)
    os.replace(temporary, link)
    if old is not None and old != directory.resolve() and _beside(old, link):
        shutil.rmtree(old, ignore_errors=True)


def _beside(directory: Path, link: Path) -> bool:
    """Whether the resolved directory is a set of link's, in the same parent (never
    anything elsewhere a link might point at)."""
    return directory.parent == link.parent.resolve() and directory.name.startswith(link.name)


def remove(link: Path) -> None:
    """Forget the set link points at, and the link."""
    if link.is_symlink():
        target = Path(os.path.realpath(link))
        link.unlink(missing_ok=True)
        if _beside(target, link):
            shutil.rmtree(target, ignore_errors=True)


def discard(directory: Path) -> None:
    """Remove a staged set that did not work."""
    shutil.rmtree(directory, ignore_errors=True)
