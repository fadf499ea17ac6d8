"""SSH host keys of qemu+ssh hosts: shown to an admin, pinned once confirmed, and a
changed key blocking the host until an admin accepts it. libvirt connects to such a
host with the panel's key and the pinned host key only (panel/hypervisor/connection.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from panel import audit, hypervisor, rows, sshkeys
from panel.actors import Actor
from panel.choices import AuditResult
from panel.exceptions import ConflictError, ServiceError
from panel.models import Host
from panel.permissions import can_manage_hosts

FINGERPRINT_FIELD = "ssh_host_key_fingerprint"


class HostKeyToConfirm(ServiceError):
    """A qemu+ssh host's key must be confirmed first; key is the one it offers."""

    def __init__(self, key: sshkeys.HostKey) -> None:
        super().__init__(
            f"Confirm the SSH host key first: the host offers {key.key_type} {key.fingerprint}. "
            "Compare it with the output of `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` "
            "run on the host, then confirm that fingerprint.",
            field=FINGERPRINT_FIELD,
        )
        self.key = key


def _admin(actor: Actor) -> None:
    if not can_manage_hosts(actor.user):
        raise PermissionDenied("Only administrators can manage hosts.")


def panel_public_key(actor: Actor) -> str:
    """The panel's public key as an authorized_keys line (the key pair made on first need)."""
    _admin(actor)
    try:
        return sshkeys.panel_public_key()
    except sshkeys.SSHKeyError as exc:
        raise ServiceError(f"The panel's SSH key could not be made: {exc}") from exc


def scan_host_key(uri: str, *, actor: Actor) -> sshkeys.HostKey:
    """The host key the host at uri offers now, for an admin to confirm before adding it."""
    _admin(actor)
    try:
        uri = hypervisor.check_uri(uri)
    except hypervisor.InvalidURI as exc:
        raise ServiceError(str(exc), field="uri") from exc
    if not hypervisor.is_ssh(uri):
        raise ServiceError(
            "Only qemu+ssh hosts have a host key to confirm: use qemu+ssh://user@host/system.",
            field="uri",
        )
    try:
        return sshkeys.scan(uri)
    except sshkeys.SSHKeyError as exc:
        raise ServiceError(str(exc), field="uri") from exc


def pin_for_add(uri: str, confirmed: str) -> sshkeys.HostKey:
    """The key of the host at uri, pinned for libvirt, when it is the one the admin confirmed."""
    try:
        key = sshkeys.scan(uri)
    except sshkeys.SSHKeyError as exc:
        raise ServiceError(str(exc), field="uri") from exc
    confirmed = (confirmed or "").strip()
    if not confirmed:
        raise HostKeyToConfirm(key)
    if confirmed != key.fingerprint:
        raise ServiceError(
            f"The host now offers the key {key.fingerprint}, not the {confirmed} you "
            "confirmed. Check the host before you confirm its key again.",
            field=FINGERPRINT_FIELD,
        )
    sshkeys.panel_public_key()
    sshkeys.write_known_hosts(uri, key.line)
    return key


def write_pinned(host: Host) -> None:
    """The host's known_hosts file as the database says (none when no key is pinned)."""
    if not hypervisor.is_ssh(host.uri):
        return
    if host.ssh_host_key:
        sshkeys.write_known_hosts(host.uri, host.ssh_host_key)
    else:
        sshkeys.forget_known_hosts(host.uri)


def key_changed_warning(host: Host) -> str:
    return (
        f"The SSH host key of {host.name} changed: the panel pinned {sshkeys.fingerprint(host.ssh_host_key)}, "
        f"the host now offers {sshkeys.fingerprint(host.ssh_host_key_offered)}. The panel does not "
        "connect to it until an admin checks the host and accepts the new key on its page."
    )


def check_offered_key(host: Host) -> str:
    """After a failed connection to a qemu+ssh host: whether it offers another key than the
    pinned one. Then the host is blocked with a warning naming both keys, and the change is
    audited once; returns the warning ('' when the key is the same or unreadable)."""
    if not hypervisor.is_ssh(host.uri) or not host.ssh_host_key:
        return ""
    try:
        offered = sshkeys.scan(host.uri)
    except sshkeys.SSHKeyError:
        return ""
    if offered.line == host.ssh_host_key:
        return ""
    with transaction.atomic():
        if rows.lock(host) is None:
            return ""
        new = offered.line != host.ssh_host_key_offered
        host.ssh_host_key_offered = offered.line
        host.last_error = key_changed_warning(host)
        host.save(update_fields=["ssh_host_key_offered", "last_error"])
        if new:
            audit.record(
                Actor(None, None),
                "host.key_changed",
                host,
                result=AuditResult.FAILURE,
                detail=f"pinned {sshkeys.fingerprint(host.ssh_host_key)}, offered {offered.fingerprint}",
            )
    return host.last_error


def accept_host_key(host: Host, fingerprint: str, *, actor: Actor) -> Host:
    """Pin the key the host offers now in place of the old one; fingerprint is the one the
    admin checked, refused when the host offers another by now."""
    _admin(actor)
    if not hypervisor.is_ssh(host.uri):
        raise ServiceError(f"{host.name} is not reached over SSH: it has no host key.")
    key = pin_for_add(host.uri, fingerprint)
    with transaction.atomic():
        if rows.lock(host) is None:
            raise ConflictError(f"{host.name} was removed from the panel meanwhile.")
        before = host.ssh_host_key
        host.ssh_host_key = key.line
        host.ssh_host_key_offered = ""
        host.ssh_host_key_pinned_at = timezone.now()
        host.last_error = ""
        host.save(
            update_fields=[
                "ssh_host_key",
                "ssh_host_key_offered",
                "ssh_host_key_pinned_at",
                "last_error",
            ]
        )
        audit.record(
            actor,
            "host.key_accepted",
            host,
            detail=f"{sshkeys.fingerprint(before) or 'none'} -> {key.fingerprint}",
        )
    hypervisor.forget_connection(host.uri)
    return host


def reach(host: Host) -> dict[str, Any]:
    """How the panel reaches the host, for its admins: transport, user, address, the
    pinned host key and since when."""
    parts = urlsplit(host.uri)
    ssh = hypervisor.is_ssh(host.uri)
    return {
        "transport": "ssh" if ssh else (parts.scheme.partition("+")[2] or "local"),
        "user": parts.username or "",
        "address": parts.hostname or "",
        "port": parts.port,
        "ssh_host_key_fingerprint": sshkeys.fingerprint(host.ssh_host_key) if ssh else "",
        "ssh_host_key_offered_fingerprint": sshkeys.fingerprint(host.ssh_host_key_offered),
        "since": host.ssh_host_key_pinned_at
        if ssh and host.ssh_host_key_pinned_at
        else host.created,
    }
