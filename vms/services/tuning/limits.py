"""What every tuning stays within: the template the VM was made from, the project's
quota (which counts what each VM may grow to), and the memory the host's reserve advice
leaves for guests; and virsh's notation for CPU lists."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TypedDict

from django.db import transaction

from panel import hypervisor, quotas
from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.permissions import is_admin
from vms.choices import VMState
from vms.models import VirtualMachine
from vms.services.common import reread

MIB = 1024 * 1024


class Scope(TypedDict):
    """Where a change applies: the running VM (live), its saved definition (persistent)."""

    live: bool
    persistent: bool


def cpu_list(cpus: tuple[int, ...] | list[int]) -> str:
    """0,1,2,5 as 0-2,5 (virsh's notation)."""
    cpus = sorted(set(cpus))
    runs: list[str] = []
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        runs.append(f"{cpus[i]}-{cpus[j]}" if j > i else str(cpus[i]))
        i = j + 1
    return ",".join(runs)


def within_template(vm: VirtualMachine, field: str, *, vcpus: int = 0, memory_mib: int = 0) -> None:
    """The VM's template (if it was made from one) allows this many vCPUs and MiB."""
    template = vm.template
    if template is None:
        return
    if vcpus > template.max_vcpus:
        raise ServiceError(
            f"{vm.name} was made from template {template.name}, which allows at most "
            f"{template.max_vcpus} vCPUs. Choose fewer, or ask an admin to raise the "
            "template's limit.",
            field=field,
        )
    if memory_mib > template.max_memory_mib:
        raise ServiceError(
            f"{vm.name} was made from template {template.name}, which allows at most "
            f"{template.max_memory_mib} MiB. Choose less, or ask an admin to raise the "
            "template's limit.",
            field=field,
        )


@contextlib.contextmanager
def growing(
    vm: VirtualMachine, *, vcpus: int = 0, memory_mib: int = 0, maximum: bool
) -> Iterator[None]:
    """Around a change that lets vm reach vcpus / memory_mib (0: unchanged; maximum: the
    VM's maximums, else its current values): refused past the project's quota, which
    counts each VM at what it may grow to; a current value raised within the VM's maximum
    is refused too while the project is over its quota. The change runs in the transaction
    that holds the quota row, so two tunings cannot share the last vCPU."""
    vm = reread(vm)  # the maximums the quota counts, as the host has them now
    reach_cpus = max(vm.vcpus, vm.max_vcpus)
    reach_mib = max(vm.memory_mib, vm.max_memory_mib)
    raised = {"vcpus": vcpus > vm.vcpus, "memory_mib": memory_mib > vm.memory_mib}
    with transaction.atomic():
        if vm.project is not None:
            quotas.reserve(
                vm.project,
                vcpus=max(0, vcpus - reach_cpus),
                memory_mib=max(0, memory_mib - reach_mib),
                growing=() if maximum else tuple(f for f, up in raised.items() if up),
            )
        yield


def guest_memory_limit(vm: VirtualMachine) -> int:
    """Bytes the host's reserve advice leaves for guests (0: unknown)."""
    host = vm.host
    total = host.memory_total
    if not total:
        return 0
    reserved = host.memory_reserved or hypervisor.reserved_memory_bytes(total)
    return max(total - reserved, 0)


def check_reserve(
    vm: VirtualMachine, memory_mib: int, actor: Actor, force: bool, field: str
) -> str:
    """Refuse memory that eats into the host's reserve; admins may force it (a warning back)."""
    limit = guest_memory_limit(vm)
    if not limit:
        return ""
    others = VirtualMachine.objects.filter(
        host=vm.host, state__in=[VMState.RUNNING, VMState.PAUSED]
    ).exclude(pk=vm.pk)
    used = sum(others.values_list("memory_mib", flat=True)) * MIB
    if used + memory_mib * MIB <= limit:
        return ""
    message = (
        f"{memory_mib} MiB for {vm.name} plus {used // MIB} MiB for the other running VMs "
        f"on {vm.host.name} is more than the {limit // MIB} MiB its reserve advice leaves "
        "for guests"
    )
    if force and is_admin(actor.user):
        return f"Warning: {message}; applied anyway as you asked."
    raise ServiceError(
        f"{message}. Give less memory"
        + (", or tick 'override' to apply it anyway." if is_admin(actor.user) else "."),
        field=field,
    )
