"""Console tickets: short-lived, single-use permissions to open one VM's console.

A ticket is issued after the permission check, for one user, one VM and one
console type, and lives in Redis for TICKET_SECONDS. The serial websocket and
websockify's token plugin both take it with GETDEL, so it works once.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.core.exceptions import PermissionDenied

from panel import audit, hypervisor
from panel.console_tokens import KEY_PREFIX
from panel.exceptions import ConflictError, ServiceError, UnavailableError
from panel.permissions import CONSOLE, CONSOLE_INPUT, allowed

from .choices import VMState
from .models import VirtualMachine

TICKET_SECONDS = 30
TYPES = ("serial", "vnc")


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def _vnc_endpoint(vm: VirtualMachine) -> tuple[str, int]:
    """Where the VM's VNC server listens, as seen from websockify."""
    info = hypervisor.get_domain(vm.host.uri, str(vm.pk))
    vnc = next((g for g in info.graphics if g.type == "vnc" and g.port), None)
    if vnc is None:
        raise ConflictError(f"{vm.name} has no VNC display (or it is not running).")
    host = urlsplit(vm.host.uri).hostname or "127.0.0.1"
    listen = vnc.listen if vnc.listen not in ("", "0.0.0.0", "::") else host
    if not urlsplit(vm.host.uri).hostname:
        listen = "127.0.0.1" if listen in ("127.0.0.1", "localhost", host) else listen
    return listen, vnc.port


def issue_ticket(
    vm: VirtualMachine, user: Any, kind: str, *, ws_base: str, source_ip: str | None = None
) -> dict[str, Any]:
    """A ticket for user to open vm's console of kind; raises 403/409 as it applies."""
    if kind not in TYPES:
        raise ServiceError("Console type must be 'serial' or 'vnc'.", field="type")
    if not allowed(user, vm, CONSOLE):
        raise PermissionDenied(f"Your role does not allow opening the console of {vm.name}.")
    if vm.state not in (VMState.RUNNING, VMState.PAUSED):
        raise ConflictError(f"{vm.name} is {vm.state}: start it to use its console.")
    view_only = not allowed(user, vm, CONSOLE_INPUT)
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
            password = hypervisor.vnc_password(vm.host.uri, str(vm.pk))
    except hypervisor.HostUnavailable as exc:
        raise ServiceError(f"{vm.host.name} cannot be reached: {exc}") from exc
    except hypervisor.NotFound:
        raise ConflictError(f"{vm.name} is no longer on {vm.host.name}.") from None
    if password and view_only:
        # The console client answers the VNC server's challenge itself, so it would have to
        # be given the password, and with it full control of the display past the panel.
        raise PermissionDenied(
            f"The display of {vm.name} has a VNC password, which a view-only console may not "
            "be given. Ask someone who may use its console fully, or remove the password."
        )
    try:
        _redis().set(KEY_PREFIX + ticket, json.dumps(data), ex=TICKET_SECONDS)
    except redis.RedisError as exc:
        raise UnavailableError(
            "The console cannot be opened now: the panel cannot reach Redis, where console "
            "tickets are kept. Try again once Redis runs."
        ) from exc
    audit.record(
        user,
        f"console.{kind}.ticket",
        vm,
        project=vm.project,
        source_ip=source_ip,
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
    """The ticket's data, removing it (a second take finds nothing)."""
    if not ticket or len(ticket) > 100:
        return None
    try:
        raw = _redis().getdel(KEY_PREFIX + ticket)
    except redis.RedisError:
        return None  # no ticket can be checked: the console is refused
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None
