"""A VM's memory: the balloon's size, its maximum, and whether huge pages back it. Memory
past what the host's reserve advice leaves for guests is refused, or forced by an admin
with a warning."""

from __future__ import annotations

from panel import hypervisor
from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.permissions import CONFIG_CPU_MEMORY, is_admin
from vms.models import VirtualMachine
from vms.services.common import vm_change
from vms.services.disks import check_scope, scope_words
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
    actor: Actor,
) -> tuple[hypervisor.TuningInfo, str]:
    """Set the VM's current memory: live it inflates or deflates the balloon."""
    with vm_change(vm, actor, "vm.memory", "tune", right=CONFIG_CPU_MEMORY) as change:
        check_scope(vm, live, persistent)
        with change.on_host():
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
            with change.on_host(f"Setting the memory of {vm.name}"):
                info = hypervisor.set_memory(
                    vm.host.uri, str(vm.pk), memory_mib * 1024, live=live, persistent=persistent
                )
            detail = f"{memory_mib} MiB; {scope_words(live, persistent)}" + (
                f"; {warning}" if warning else ""
            )
            change.done(None, detail)
    return info, warning


def set_max_memory(
    vm: VirtualMachine,
    max_memory_mib: int,
    *,
    force: bool = False,
    actor: Actor,
) -> tuple[hypervisor.TuningInfo, str]:
    """Set the most memory the VM may have (its definition); the balloon moves below it."""
    with vm_change(vm, actor, "vm.max_memory", "tune", right=CONFIG_CPU_MEMORY) as change:
        check_scope(vm, False, True)
        if max_memory_mib < 16:
            raise ServiceError("The maximum memory is at least 16 MiB.", field="max_memory_mib")
        within_template(vm, "max_memory_mib", memory_mib=max_memory_mib)
        warning = check_reserve(vm, max_memory_mib, actor, force, "max_memory_mib")
        with growing(vm, memory_mib=max_memory_mib, maximum=True):
            with change.on_host(f"Setting the maximum memory of {vm.name}"):
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
            change.done(None, detail)
    return info, warning


def set_hugepages(
    vm: VirtualMachine,
    enabled: bool,
    *,
    force: bool = False,
    actor: Actor,
) -> tuple[hypervisor.TuningInfo, str]:
    """Back the VM's memory with the host's huge pages from its next boot (or stop doing so).

    Refused when the host's free huge pages cannot hold the VM's memory (it would not
    start); admins may define it anyway, warned.
    """
    with vm_change(vm, actor, "vm.hugepages", "tune", right=CONFIG_CPU_MEMORY) as change:
        check_scope(vm, False, True)
        warning = ""
        if enabled:
            with change.on_host():
                host = hypervisor.host_tuning(vm.host.uri)
                current = hypervisor.domain_tuning(vm.host.uri, str(vm.pk))
            free = sum(size * 1024 * free for cell in host.cells for size, _t, free in cell.pages)
            need = current.max_memory_kib * 1024
            if free < need:
                message = (
                    f"{vm.host.name} has {free // MIB} MiB of free huge pages and {vm.name} "
                    f"needs {need // MIB} MiB: it would not start"
                )
                if not (force and is_admin(actor.user)):
                    raise ServiceError(
                        f"{message}. Reserve huge pages on the host first (sysctl "
                        "vm.nr_hugepages)"
                        + (
                            ", or tick 'override' to define it anyway."
                            if is_admin(actor.user)
                            else "."
                        ),
                        field="enabled",
                    )
                warning = f"Warning: {message} until huge pages are reserved."
        with change.on_host(f"Changing the memory backing of {vm.name}"):
            info = hypervisor.set_hugepages(vm.host.uri, str(vm.pk), enabled)
        detail = f"huge pages {'on' if enabled else 'off'}; persistent" + (
            f"; {warning}" if warning else ""
        )
        change.done(None, detail)
    return info, warning
