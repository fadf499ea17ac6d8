"""The NIC card's forms on a VM's page: attach, detach and set a NIC's link."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.permissions import CONFIG_NETWORK, get_object_for_user

from .models import VirtualMachine
from .services import nics


def _vm(request: HttpRequest, vm_id: str) -> VirtualMachine:
    return get_object_for_user(
        VirtualMachine.objects.select_related("host", "project"),
        request.user,
        vm_id,
        CONFIG_NETWORK,
    )


def _flag(request: HttpRequest, name: str) -> bool | None:
    """A checkbox that the form always sends (hidden 0 + checkbox 1): None when absent."""
    values = request.POST.getlist(name)
    return None if not values else "1" in values


def _nic_request(request: HttpRequest, bridge: bool) -> dict[str, Any]:
    """attach_nic's input from the page's form (the bridge only when no network is chosen)."""
    post = request.POST
    return {
        "bridge": post.get("bridge", "") if bridge else "",
        "model": post.get("model", "virtio"),
        "mac": post.get("mac", ""),
        "link_up": _flag(request, "link_up") is not False,
        "inbound_kib": post.get("inbound_kib") or None,
        "outbound_kib": post.get("outbound_kib") or None,
        "live": _flag(request, "live"),
        "persistent": _flag(request, "persistent"),
    }


@require_POST
def vm_nic_attach(request: HttpRequest, vm_id: str) -> HttpResponse:
    vm = _vm(request, vm_id)
    network = None
    raw = request.POST.get("network", "")
    if raw.isdigit():
        network = nics.usable_networks(vm, request.user).filter(pk=int(raw)).first()
        if network is None:
            messages.error(request, "Choose a network this VM may use.")
            return redirect("vm_detail", vm_id=vm.pk)
    try:
        vm, mac = nics.attach_nic(
            vm, actor=Actor.of(request), network=network, **_nic_request(request, network is None)
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"NIC {mac} attached to {vm.name}.")
        if network is not None and not network.active:
            messages.warning(
                request,
                f"Network '{network.name}' is not running: {vm.name} cannot start with this "
                "NIC until the network is started.",
            )
    return redirect("vm_detail", vm_id=vm.pk)


@require_POST
def vm_nic_detach(request: HttpRequest, vm_id: str) -> HttpResponse:
    vm = _vm(request, vm_id)
    mac = request.POST.get("mac", "")
    try:
        vm = nics.detach_nic(
            vm,
            mac,
            actor=Actor.of(request),
            live=_flag(request, "live"),
            persistent=_flag(request, "persistent"),
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"NIC {mac} detached from {vm.name}.")
    return redirect("vm_detail", vm_id=vm.pk)


@require_POST
def vm_nic_link(request: HttpRequest, vm_id: str) -> HttpResponse:
    vm = _vm(request, vm_id)
    mac, up = request.POST.get("mac", ""), request.POST.get("up") == "1"
    try:
        vm = nics.set_nic_link(vm, mac, up, actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Link of {mac} is {'up' if up else 'down'}.")
    return redirect("vm_detail", vm_id=vm.pk)
