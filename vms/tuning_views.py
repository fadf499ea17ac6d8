"""The VM's tuning tab and its forms: one view per setting, each calling the same service
as the API and coming back to the tab with what happened."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from panel import hypervisor
from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.hypervisor.specs import IOTUNE_FIELDS
from panel.permissions import CONFIG_CPU_MEMORY, allowed, get_object_for_user, is_admin

from .models import VirtualMachine
from .services import tuning
from .services.tuning import Scope


def _host_cells(info: dict[str, Any]) -> list[tuple[int, list[dict[str, Any]]]]:
    """The host's CPUs by NUMA cell, in cell order, for the pinning grid."""
    cells: dict[int, list[dict[str, Any]]] = {}
    for cpu in info["host"]["cpus"]:
        cells.setdefault(cpu["cell"], []).append(cpu)
    return sorted(cells.items())


def vm_tuning_page(request: HttpRequest, vm_id: str) -> HttpResponse:
    """The VM's tuning tab: its vCPUs, memory, pinning over the host's CPUs, I/O limits."""
    vm = get_object_for_user(VirtualMachine.objects.select_related("host"), request.user, vm_id)
    try:
        info = tuning.vm_tuning(vm, actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("vm_detail", vm_id=vm.pk)
    return render(
        request,
        "monitoring/vm_tuning.html",
        {
            "vm": vm,
            "t": info,
            "cells": _host_cells(info),
            "pins": [{"vcpu": i, "cpus": set(p)} for i, p in enumerate(info["vcpu_pins"])],
            "emulator": set(info["emulator_pin"]),
            "iotune_fields": IOTUNE_FIELDS,
            "numa_modes": list(hypervisor.NUMA_MODES),
            "can_change": allowed(request.user, vm, CONFIG_CPU_MEMORY),
            "is_admin": is_admin(request.user),
        },
    )


def whole_number(value: str | None, field: str) -> int:
    """value as a whole number (0 when empty); a ServiceError naming field otherwise."""
    try:
        return int(value or 0)
    except ValueError:
        raise ServiceError(f"{field}: '{value}' is not a whole number.", field=field) from None


class TuningPost:
    """A tuning form as posted: its whole numbers, check boxes and texts, the live and
    persistent scope it asks for, and who sends it."""

    def __init__(self, request: HttpRequest) -> None:
        self.data = request.POST
        self.actor = Actor.of(request)
        self.scope = Scope(live=self.checked("live"), persistent=self.checked("persistent"))

    def number(self, field: str) -> int:
        """The field as a whole number (0 when empty)."""
        return whole_number(self.data.get(field), field)

    def numbers(self, field: str, name: str = "") -> list[int]:
        """Every value posted under field as a whole number; errors name `name` or field."""
        return [whole_number(value, name or field) for value in self.data.getlist(field)]

    def checked(self, field: str) -> bool:
        """Whether the check box field was ticked."""
        return self.data.get(field) == "on"

    def text(self, field: str) -> str:
        """The field as posted, empty when absent."""
        return self.data.get(field, "")


TuningForm = Callable[[HttpRequest, VirtualMachine, TuningPost], None]


def tuning_form(apply: TuningForm) -> Callable[[HttpRequest, str], HttpResponse]:
    """A tuning form's view: apply runs on the VM (changeable by the user) with the POST;
    a refusal becomes the tab's error message, and the answer is the tab again."""

    @require_POST
    @functools.wraps(apply)
    def view(request: HttpRequest, vm_id: str) -> HttpResponse:
        vm = get_object_for_user(
            VirtualMachine.objects.select_related("host", "project"),
            request.user,
            vm_id,
            CONFIG_CPU_MEMORY,
        )
        try:
            apply(request, vm, TuningPost(request))
        except ServiceError as exc:
            messages.error(request, exc.message)
        return redirect("vm_tuning_page", vm_id=vm.pk)

    return view


def say_done(request: HttpRequest, warning: str, done: str) -> None:
    """The service's warning when it gave one, else what was done."""
    if warning:
        messages.warning(request, warning)
    else:
        messages.success(request, done)


@tuning_form
def vm_tune_vcpus(request: HttpRequest, vm: VirtualMachine, post: TuningPost) -> None:
    """The vCPUs in use."""
    tuning.set_vcpus(vm, post.number("vcpus"), **post.scope, actor=post.actor)
    messages.success(request, f"vCPUs of {vm.name} set.")


@tuning_form
def vm_tune_memory(request: HttpRequest, vm: VirtualMachine, post: TuningPost) -> None:
    """The memory in use (a warning when the host runs short)."""
    _info, warning = tuning.set_memory(
        vm, post.number("memory_mib"), force=post.checked("force"), **post.scope, actor=post.actor
    )
    say_done(request, warning, f"Memory of {vm.name} set.")


@tuning_form
def vm_tune_vcpupin(request: HttpRequest, vm: VirtualMachine, post: TuningPost) -> None:
    """Which host CPUs each vCPU runs on."""
    rows = post.number("vcpu_rows")
    pins = {i: post.numbers(f"pin-{i}", "pins") for i in range(rows)}
    tuning.pin_vcpus(vm, pins, **post.scope, actor=post.actor)
    messages.success(request, f"vCPU pinning of {vm.name} applied.")


@tuning_form
def vm_tune_emulatorpin(request: HttpRequest, vm: VirtualMachine, post: TuningPost) -> None:
    """Which host CPUs the emulator threads run on."""
    tuning.pin_emulator(vm, post.numbers("cpus"), **post.scope, actor=post.actor)
    messages.success(request, f"Emulator pinning of {vm.name} applied.")


@tuning_form
def vm_tune_iotune(request: HttpRequest, vm: VirtualMachine, post: TuningPost) -> None:
    """A disk's I/O limits (0 is no limit)."""
    limits = {field: post.number(field) for field in IOTUNE_FIELDS}
    if any(v < 0 for v in limits.values()):
        raise ServiceError("Limits cannot be negative: 0 means no limit.", field="iotune")
    tuning.set_iotune(vm, post.text("target"), limits, **post.scope, actor=post.actor)
    messages.success(request, f"I/O limits of {post.data.get('target')} applied.")


@tuning_form
def vm_tune_max_vcpus(request: HttpRequest, vm: VirtualMachine, post: TuningPost) -> None:
    """The most vCPUs the VM can have, from its next boot."""
    tuning.set_max_vcpus(vm, post.number("max_vcpus"), actor=post.actor)
    messages.success(request, f"Maximum vCPUs of {vm.name} set (from its next boot).")


@tuning_form
def vm_tune_max_memory(request: HttpRequest, vm: VirtualMachine, post: TuningPost) -> None:
    """The most memory the VM can have, from its next boot."""
    _info, warning = tuning.set_max_memory(
        vm, post.number("max_memory_mib"), force=post.checked("force"), actor=post.actor
    )
    say_done(request, warning, f"{vm.name}'s definition changed (from its next boot).")


@tuning_form
def vm_tune_hugepages(request: HttpRequest, vm: VirtualMachine, post: TuningPost) -> None:
    """Whether the VM's memory is backed by huge pages, from its next boot."""
    _info, warning = tuning.set_hugepages(
        vm, post.checked("enabled"), force=post.checked("force"), actor=post.actor
    )
    say_done(request, warning, f"{vm.name}'s definition changed (from its next boot).")


@tuning_form
def vm_tune_numatune(request: HttpRequest, vm: VirtualMachine, post: TuningPost) -> None:
    """The NUMA policy and nodes of the VM's memory."""
    tuning.set_numatune(
        vm, post.text("mode"), post.text("nodeset").strip(), **post.scope, actor=post.actor
    )
    messages.success(request, f"NUMA policy of {vm.name} set.")


@tuning_form
def vm_tune_nic_bandwidth(request: HttpRequest, vm: VirtualMachine, post: TuningPost) -> None:
    """A NIC's inbound and outbound bandwidth limits."""
    nic = tuning.set_nic_bandwidth(
        vm,
        post.text("mac"),
        post.number("inbound_kib"),
        post.number("outbound_kib"),
        **post.scope,
        actor=post.actor,
    )
    messages.success(request, f"Bandwidth of NIC {nic['mac']} set.")
