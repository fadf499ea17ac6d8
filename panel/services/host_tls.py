"""qemu+tls hosts: the certificates an admin uploads, verified against the host before the
panel keeps them, and replaced the same way (the old set works until the new one does)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from panel import audit, hypervisor, tlscerts
from panel.actors import Actor
from panel.choices import AuditResult
from panel.exceptions import ServiceError
from panel.models import Host, HostCertificates
from panel.permissions import can_manage_hosts

NEEDED = (
    "A qemu+tls host needs its certificates: upload the CA certificate, the client "
    "certificate and the client key (PEM)."
)


@dataclass(frozen=True)
class Verified:
    """A set of certificates the host accepted, staged beside the host's current set."""

    directory: Path
    checked: tlscerts.Checked
    facts: hypervisor.HostFacts
    server: hypervisor.PeerCertificate


def upload_for(uri: str, certificates: Mapping[str, Any] | None) -> tlscerts.Upload | None:
    """The certificates given for a new host at uri, when its scheme takes them."""
    upload = tlscerts.Upload.of(dict(certificates or {}))
    if hypervisor.is_tls(uri) and upload is None:
        raise ServiceError(NEEDED, field="ca_certificate")
    if upload is not None and not hypervisor.is_tls(uri):
        raise ServiceError(
            "Certificates are for qemu+tls hosts only: use a qemu+tls://HOST/system URI, "
            "or leave the certificate fields empty.",
            field="ca_certificate",
        )
    return upload


def verify(uri: str, upload: tlscerts.Upload, *, actor: Actor, target: object) -> Verified:
    """Check the files, stage them and connect to the host with them; on any failure the
    staged files are gone, the failure is audited and ServiceError names the cause."""
    checked = tlscerts.check(upload)
    link = hypervisor.pki_path(uri)
    directory = tlscerts.stage(checked, link.parent, link.name)
    try:
        facts, server = hypervisor.verify_tls_host(
            uri, directory, float(settings.PANEL_CONNECT_TIMEOUT)
        )
    except hypervisor.HypervisorError as exc:
        tlscerts.discard(directory)
        with transaction.atomic():
            audit.record(
                actor, _action(target), target, result=AuditResult.FAILURE, detail=str(exc)
            )
        raise ServiceError(
            f"Could not connect to {uri} over TLS: {exc}. Nothing was kept.", field="uri"
        ) from exc
    return Verified(directory, checked, facts, server)


@contextlib.contextmanager
def undone_on_failure(verified: Verified | None) -> Iterator[None]:
    """Remove the staged set when the block fails (nothing of an add is kept)."""
    try:
        yield
    except BaseException:
        if verified is not None:
            tlscerts.discard(verified.directory)
        raise


def _action(target: object) -> str:
    return "host.certificates" if isinstance(target, Host) else "host.add"


def keep(host: Host, verified: Verified) -> HostCertificates:
    """Record the verified set as the host's and put it in place (inside the caller's
    transaction: a failure here undoes the row)."""
    row, _ = HostCertificates.objects.update_or_create(
        host=host,
        defaults={
            "ca_subject": "; ".join(ca.subject for ca in verified.checked.ca),
            "client_subject": verified.checked.client.subject,
            "client_not_after": verified.checked.client.not_after,
            "server_subject": verified.server.subject,
            "server_not_after": verified.server.not_after,
            "server_sha256": verified.server.sha256,
            "since": timezone.now(),
        },
    )
    tlscerts.install(verified.directory, hypervisor.pki_path(host.uri))
    return row


def forget(uri: str) -> None:
    """Remove the certificates of the host at uri (it left the panel)."""
    if hypervisor.is_tls(uri):
        tlscerts.remove(hypervisor.pki_path(uri))


def replace_certificates(
    host: Host, certificates: Mapping[str, Any], *, actor: Actor
) -> HostCertificates:
    """Give a qemu+tls host a new set of certificates, once the host accepts them; until
    then (and when it does not) the panel keeps using the old set."""
    if not can_manage_hosts(actor.user):
        raise PermissionDenied("Only administrators can manage hosts.")
    if not hypervisor.is_tls(host.uri):
        raise ServiceError(
            f"{host.name} is not reached over TLS ({host.uri}): it has no certificates to replace.",
        )
    upload = tlscerts.Upload.of(dict(certificates))
    if upload is None:
        raise ServiceError(NEEDED, field="ca_certificate")
    verified = verify(host.uri, upload, actor=actor, target=host)
    client, server = verified.checked.client, verified.server
    try:
        with transaction.atomic():
            audit.record(
                actor,
                "host.certificates",
                host,
                detail=f"client {client.subject} until {client.not_after:%Y-%m-%d}; "
                f"server {server.subject} until {server.not_after:%Y-%m-%d}",
            )
            row = keep(host, verified)  # last: once in place, the new set is the host's
    except Exception:
        tlscerts.discard(verified.directory)
        raise
    return row
