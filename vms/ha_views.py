"""Pages of HA: a VM marked HA or not (its users with the right to change its CPU and
memory), a host's fencing and an administrator's word that a host is off."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.models import Host
from panel.permissions import CONFIG_CPU_MEMORY, VIEW, get_object_for_user

from .models import VirtualMachine
from .services import failover, ha


@require_POST
def vm_ha(request: HttpRequest, vm_id: str) -> HttpResponse:
    vm = get_object_for_user(
        VirtualMachine.objects.select_related("host", "project"),
        request.user,
        vm_id,
        CONFIG_CPU_MEMORY,
    )
    enabled = request.POST.get("ha") == "on"
    try:
        vm = ha.set_vm_ha(vm, enabled, actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{vm.name} is {'' if vm.ha else 'not '}HA.")
    return redirect("vm_detail", vm_id=vm.pk)


@require_POST
def host_fencing(request: HttpRequest, host_id: int) -> HttpResponse:
    host = get_object_for_user(Host.objects.all(), request.user, host_id, VIEW)
    try:
        host = ha.set_fencing(host, request.POST.get("fencing", ""), actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Fencing of {host.name}: {host.get_fencing_display()}.")
    return redirect("host_detail", host_id=host.pk)


@require_POST
def host_confirm_off(request: HttpRequest, host_id: int) -> HttpResponse:
    host = get_object_for_user(Host.objects.all(), request.user, host_id, VIEW)
    try:
        made = failover.confirm_host_off(host, actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.info(request, f"{host.name} is off: restarting {len(made)} HA VMs elsewhere.")
    return redirect("host_detail", host_id=host.pk)
