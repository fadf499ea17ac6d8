"""A VM's memory: the balloon's size, its maximum, and whether huge pages back it. Memory
past what the host's reserve advice leaves for guests is refused, or forced by an admin
with a warning."""

from __future__ import annotations

from typing import Any

from panel import audit, hypervisor
from panel.exceptions import ServiceError
from panel.permissions import is_admin
from vms.models import VirtualMachine
from vms.services.common import on_vm_host
from vms.services.disks import check_scope, commit_disk_change, ready_for_change, scope_words
from vms.services.tuning.limits import (
    MIB,
    check_reserve,
    growing,
    within_template,
)


def set_memory(
    vm: VirtualMachine,
    memory_mib: int,
    *,
    live: bool = True,
    persistent: bool = True,
    force: bool = False,
    actor: Any,
    source_ip: str | None = None,
) -> tuple[hypervisor.TuningInfo, str]:
    """Set the VM's current memory: live it inflates or deflates the balloon."""
    ready_for_change(vm, actor, "tune")
    with audit.refusals_recorded(actor, "vm.memory", vm, project=vm.project, source_ip=source_ip):
        check_scope(vm, live, persistent)
        with on_vm_host(vm):
            current = hypervisor.domain_tuning(vm.host.uri, str(vm.pk))
        maximum = current.max_memory_kib // 1024
        if memory_mib < 16 or memory_mib > maximum:
            raise ServiceError(
                f"Memory must be between 16 and {maximum} MiB (the VM's maximum); "
                "raise the maximum first (persistent, VM shut off) to give more.",
                field="memory_mib",
            )
        within_template(vm, "memory_mib", memory_mib=memory_mib)
        warning = check_reserve(vm, memory_mib, actor, force, "memory_mib")
        with growing(vm, memory_mib=memory_mib, maximum=False):
            with on_vm_host(vm, f"Setting the memory of {vm.name}"):
                info = hypervisor.set_memory(
                    vm.host.uri, str(vm.pk), memory_mib * 1024, live=live, persistent=persistent
                )
            detail = f"{memory_mib} MiB; {scope_words(live, persistent)}" + (
                f"; {warning}" if warning else ""
            )
            commit_disk_change(vm, None, actor, "vm.memory", detail, source_ip)
    return info, warning


def set_max_memory(
    vm: VirtualMachine,
    max_memory_mib: int,
    *,
    force: bool = False,
    actor: Any,
    source_ip: str | None = None,
) -> tuple[hypervisor.TuningInfo, str]:
    """Set the most memory the VM may have (its definition); the balloon moves below it."""
    ready_for_change(vm, actor, "tune")
    with audit.refusals_recorded(
        actor, "vm.max_memory", vm, project=vm.project, source_ip=source_ip
    ):
        check_scope(vm, False, True)
        if max_memory_mib < 16:
            raise ServiceError("The maximum memory is at least 16 MiB.", field="max_memory_mib")
        within_template(vm, "max_memory_mib", memory_mib=max_memory_mib)
        warning = check_reserve(vm, max_memory_mib, actor, force, "max_memory_mib")
        with growing(vm, memory_mib=max_memory_mib, maximum=True):
            with on_vm_host(vm, f"Setting the maximum memory of {vm.name}"):
                info = hypervisor.set_memory(
                    vm.host.uri,
                    str(vm.pk),
                    max_memory_mib * 1024,
                    live=False,
                    persistent=True,
                    maximum=True,
                )
            detail = f"at most {max_memory_mib} MiB; persistent" + (
                f"; {warning}" if warning else ""
            )
            commit_disk_change(vm, None, actor, "vm.max_memory", detail, source_ip)
    return info, warning


def set_hugepages(
    vm: VirtualMachine,
    enabled: bool,
    *,
    force: bool = False,
    actor: Any,
    source_ip: str | None = None,
) -> tuple[hypervisor.TuningInfo, str]:
    """Back the VM's memory with the host's huge pages from its next boot (or stop doing so).

    Refused when the host's free huge pages cannot hold the VM's memory (it would not
    start); admins may define it anyway, warned.
    """
    ready_for_change(vm, actor, "tune")
    with audit.refusals_recorded(
        actor, "vm.hugepages", vm, project=vm.project, source_ip=source_ip
    ):
        check_scope(vm, False, True)
        warning = ""
        if enabled:
            with on_vm_host(vm):
                host = hypervisor.host_tuning(vm.host.uri)
                current = hypervisor.domain_tuning(vm.host.uri, str(vm.pk))
            free = sum(size * 1024 * free for cell in host.cells for size, _t, free in cell.pages)
            need = current.max_memory_kib * 1024
            if free < need:
                message = (
                    f"{vm.host.name} has {free // MIB} MiB of free huge pages and {vm.name} "
                    f"needs {need // MIB} MiB: it would not start"
                )
                if not (force and is_admin(actor)):
                    raise ServiceError(
                        f"{message}. Reserve huge pages on the host first (sysctl "
                        "vm.nr_hugepages)"
                        + (", or tick 'override' to define it anyway." if is_admin(actor) else "."),
                        field="enabled",
                    )
                warning = f"Warning: {message} until huge pages are reserved."
        with on_vm_host(vm, f"Changing the memory backing of {vm.name}"):
            info = hypervisor.set_hugepages(vm.host.uri, str(vm.pk), enabled)
        detail = f"huge pages {'on' if enabled else 'off'}; persistent" + (
            f"; {warning}" if warning else ""
        )
        commit_disk_change(vm, None, actor, "vm.hugepages", detail, source_ip)
    return info, warning
