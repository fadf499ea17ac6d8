"""Console tickets: short-lived, single-use permissions to open one VM's console.

A ticket is issued after the permission check, for one user, one VM and one
console type, and lives in Redis for TICKET_SECONDS, signed with the secret key
(panel.console_tokens). The serial and view-only VNC websockets and websockify's
token plugin take it with GETDEL, so it works once, and refuse it unless the
panel signed it.

VNC displays listen on their host's loopback address. The panel reaches those of
VMs on its own machine directly, and those of VMs on a qemu+ssh host through an SSH
tunnel opened for the session (panel.sshkeys.open_tunnel: a local forward on
127.0.0.1, with the panel's key and the host's pinned key only, as virt-manager
does), so the ticket carries that forward, bound to the VM's own host. The displays
of a qemu+tls host listen on its network address and speak TLS: the panel reaches
them through a relay on its loopback that speaks VeNCrypt with the host's
certificates (panel.vnc_tls). A graphical console of a VM on another kind of host
is refused (the serial console goes through libvirt's own connection and works on
every host).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.core.exceptions import PermissionDenied

from panel import audit, hypervisor, redis_client, sshkeys, vnc_tls
from panel.actors import Actor
from panel.console_tokens import KEY_PREFIX, TICKET_SECONDS, sign_ticket, verify_ticket
from panel.exceptions import ConflictError, ServiceError, UnavailableError
from panel.permissions import CONSOLE, CONSOLE_INPUT, allowed

from .choices import VMState
from .models import VirtualMachine

TYPES = ("serial", "vnc")


@dataclass(frozen=True)
class VncTarget:
    """Where the view-only proxy reaches a VM's display, and the display's password."""

    host: str
    port: int
    password: str | None


def _redis() -> redis.Redis:
    return redis_client.client()


# How long a tunnel to a remote display takes new connections: the ticket's lifetime
# for websockify, a moment for the view-only proxy, which connects at once.
TUNNEL_HOLD_SECONDS = TICKET_SECONDS + 5
VIEW_TUNNEL_HOLD_SECONDS = 10


def _require_local_display(vm: VirtualMachine) -> None:
    uri = vm.host.uri
    if not (hypervisor.is_local(uri) or hypervisor.is_ssh(uri) or hypervisor.is_tls(uri)):
        raise ConflictError(
            f"The graphical console of {vm.name} cannot be opened: it runs on host "
            f"{vm.host.name}, which the panel reaches neither over SSH (to tunnel the "
            "display) nor over TLS (to speak TLS to the display). Use its serial console, "
            "which works on every host."
        )


def _tls_display(vm: VirtualMachine, listen: str, port: int) -> vnc_tls.Display:
    """The display of a VM on a qemu+tls host: at the address it listens on, or at the
    host's own address when it listens on every address."""
    host = urlsplit(vm.host.uri).hostname or ""
    loopback = listen in ("localhost", "::1") or listen.startswith("127.")
    if loopback and not (host == "localhost" or host.startswith("127.")):
        raise ConflictError(
            f"The graphical console of {vm.name} cannot be opened: its display listens on "
            f"the loopback address of {vm.host.name}. Set vnc_listen in that host's "
            "qemu.conf to an address the panel reaches, with vnc_tls = 1, and restart the VM."
        )
    address = host if listen in ("", "0.0.0.0", "::") or loopback else listen
    return vnc_tls.Display(address, port, host, hypervisor.pki_path(vm.host.uri))


def _vnc_endpoint(vm: VirtualMachine, hold: int = TUNNEL_HOLD_SECONDS) -> tuple[str, int]:
    """Where the panel reaches the VM's VNC server: on this machine, or through an SSH
    tunnel to the VM's own host for a qemu+ssh host."""
    info = hypervisor.get_domain(vm.host.uri, str(vm.pk))
    vnc = next((g for g in info.graphics if g.type == "vnc" and g.port), None)
    if vnc is None or vnc.port is None:
        raise ConflictError(f"{vm.name} has no VNC display (or it is not running).")
    if hypervisor.is_tls(vm.host.uri):
        try:
            return "127.0.0.1", vnc_tls.open_relay(_tls_display(vm, vnc.listen, vnc.port), hold)
        except vnc_tls.DisplayRefused as exc:
            raise ConflictError(f"The console of {vm.name} cannot be opened: {exc}.") from exc
    address = vnc.listen
    if vnc.listen in ("", "0.0.0.0", "::", "localhost", "::1"):
        address = "127.0.0.1"
    if not hypervisor.is_ssh(vm.host.uri):
        return address, vnc.port
    try:
        return "127.0.0.1", sshkeys.open_tunnel(vm.host.uri, address, vnc.port, hold)
    except sshkeys.SSHKeyError as exc:
        raise UnavailableError(f"The console of {vm.name} cannot be reached: {exc}") from exc


def vnc_target(vm_id: str) -> VncTarget:
    """The display of a running VM on this machine, for the view-only proxy (which answers
    the display's password challenge itself, so the viewer is never given it)."""
    vm = VirtualMachine.objects.select_related("host").filter(pk=vm_id).first()
    if vm is None:
        raise ConflictError("The VM no longer exists.")
    _require_local_display(vm)
    try:
        host, port = _vnc_endpoint(vm, VIEW_TUNNEL_HOLD_SECONDS)
        password = hypervisor.vnc_password(vm.host.uri, str(vm.pk))
    except hypervisor.HostUnavailable as exc:
        raise UnavailableError(f"{vm.host.name} cannot be reached: {exc}") from exc
    except hypervisor.NotFound:
        raise ConflictError(f"{vm.name} is no longer on {vm.host.name}.") from None
    return VncTarget(host, port, password)


def issue_ticket(vm: VirtualMachine, actor: Actor, kind: str, *, ws_base: str) -> dict[str, Any]:
    """A ticket for actor's user to open vm's console of kind; raises 403/409 as it applies."""
    if kind not in TYPES:
        raise ServiceError("Console type must be 'serial' or 'vnc'.", field="type")
    with audit.refusals_recorded(actor, f"console.{kind}.ticket", vm, project=vm.project):
        return _issue_ticket(vm, actor, kind, ws_base=ws_base)


def _issue_ticket(vm: VirtualMachine, actor: Actor, kind: str, *, ws_base: str) -> dict[str, Any]:
    user = actor.person
    if user is None or not allowed(user, vm, CONSOLE):
        raise PermissionDenied(f"Your role does not allow opening the console of {vm.name}.")
    if vm.state not in (VMState.RUNNING, VMState.PAUSED):
        raise ConflictError(f"{vm.name} is {vm.state}: start it to use its console.")
    view_only = not allowed(user, vm, CONSOLE_INPUT)
    if kind == "vnc":
        _require_local_display(vm)
    ticket = secrets.token_urlsafe(24)
    data: dict[str, Any] = {
        "type": kind,
        "user": user.pk,
        "vm": str(vm.pk),
        "view_only": view_only,
    }
    password = None
    try:
        if kind == "vnc":
            data["host"], data["port"] = _vnc_endpoint(vm)
            if not view_only:
                # A full session's client answers the display's challenge itself; the
                # view-only proxy answers it for viewers, who are never given the password.
                password = hypervisor.vnc_password(vm.host.uri, str(vm.pk))
    except hypervisor.HostUnavailable as exc:
        raise ServiceError(f"{vm.host.name} cannot be reached: {exc}") from exc
    except hypervisor.NotFound:
        raise ConflictError(f"{vm.name} is no longer on {vm.host.name}.") from None
    try:
        _redis().set(KEY_PREFIX + ticket, sign_ticket(ticket, data), ex=TICKET_SECONDS)
    except redis.RedisError as exc:
        raise UnavailableError(
            "The console cannot be opened now: the panel cannot reach Redis, where console "
            "tickets are kept. Try again once Redis runs."
        ) from exc
    audit.record(
        actor,
        f"console.{kind}.ticket",
        vm,
        project=vm.project,
        detail="view only" if view_only else "",
    )
    if kind == "serial":
        url = f"{ws_base}/ws/vms/{vm.pk}/serial/?ticket={ticket}"
    elif view_only:
        # Viewers go through the panel's filtering proxy, never websockify.
        url = f"{ws_base}/ws/vms/{vm.pk}/vnc-view/?ticket={ticket}"
    else:
        url = f"{settings.PANEL_WEBSOCKIFY_URL.rstrip('/')}/?token={ticket}"
    answer = {"url": url, "ticket": ticket, "expires_in": TICKET_SECONDS, "view_only": view_only}
    if password:
        # Only the console client gets it, to answer the VNC server's challenge.
        answer["password"] = password
    return answer


def take_ticket(ticket: str) -> dict[str, Any] | None:
    """The ticket's data, removing it (a second take finds nothing); None unless the
    panel signed it."""
    if not ticket or len(ticket) > 100:
        return None
    try:
        raw = _redis().getdel(KEY_PREFIX + ticket)
    except redis.RedisError:
        return None  # no ticket can be checked: the console is refused
    return verify_ticket(ticket, raw)
