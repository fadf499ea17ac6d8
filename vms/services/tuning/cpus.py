"""A VM's CPUs: the tuning tab's reading, vCPU and emulator pinning over the host's CPUs,
the vCPU count and its maximum, and the NUMA policy of its memory."""

from __future__ import annotations

import dataclasses

from panel import hypervisor
from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.permissions import CONFIG_CPU_MEMORY, VIEW
from vms.models import VirtualMachine
from vms.services.common import on_vm_host, require_right, vm_change
from vms.services.disks import check_scope, scope_words
from vms.services.tuning.limits import (
    cpu_list,
    growing,
    guest_memory_limit,
    within_template,
)


def vm_tuning(vm: VirtualMachine, *, actor: Actor) -> dict:
    """The VM's tuning now and the host's CPUs, NUMA cells and huge pages, for the tuning tab."""
    require_right(actor, vm, VIEW, "see the tuning of")
    with on_vm_host(vm):
        info = hypervisor.domain_tuning(vm.host.uri, str(vm.pk))
        host = hypervisor.host_tuning(vm.host.uri)
    data = dataclasses.asdict(info)
    data["vcpu_pins_text"] = [cpu_list(p) for p in info.vcpu_pins]
    data["emulator_pin_text"] = cpu_list(info.emulator_pin)
    data["host"] = dataclasses.asdict(host)
    data["host"]["memory_for_guests"] = guest_memory_limit(vm)
    return data


def _host_cpus(vm: VirtualMachine) -> int:
    with on_vm_host(vm):
        return len(hypervisor.host_tuning(vm.host.uri).cpus)


def _check_cpus(vm: VirtualMachine, cpus: list[int], field: str, host_cpus: int) -> None:
    missing = sorted({c for c in cpus if c < 0 or c >= host_cpus})
    if missing:
        raise ServiceError(
            f"{vm.host.name} has no CPU {', '.join(map(str, missing))}: it has CPUs "
            f"0-{host_cpus - 1}. Pick CPUs from that range.",
            field=field,
        )


def pin_vcpus(
    vm: VirtualMachine,
    pins: dict[int, list[int]],
    *,
    live: bool = True,
    persistent: bool = True,
    actor: Actor,
) -> hypervisor.TuningInfo:
    """Pin vCPUs to host CPUs ({vcpu: [cpu, ...]}; an empty list: any CPU)."""
    with vm_change(vm, actor, "vm.vcpupin", "tune", right=CONFIG_CPU_MEMORY) as change:
        if not pins:
            raise ServiceError("Give at least one vCPU and the host CPUs for it.", field="pins")
        check_scope(vm, live, persistent)
        with change.on_host():
            current = hypervisor.domain_tuning(vm.host.uri, str(vm.pk))
        bad = sorted(v for v in pins if v < 0 or v >= current.max_vcpus)
        if bad:
            raise ServiceError(
                f"{vm.name} has no vCPU {', '.join(map(str, bad))}: its vCPUs are "
                f"0-{current.max_vcpus - 1}.",
                field="pins",
            )
        _check_cpus(vm, [c for cpus in pins.values() for c in cpus], "pins", current.host_cpus)
        with change.on_host(f"Pinning the vCPUs of {vm.name}"):
            info = hypervisor.pin_vcpus(
                vm.host.uri,
                str(vm.pk),
                {v: tuple(c) for v, c in pins.items()},
                live=live,
                persistent=persistent,
            )
        detail = "; ".join(
            f"vCPU {v} on {cpu_list(c) if c else 'any CPU'}" for v, c in sorted(pins.items())
        )
        change.done(None, f"{detail}; {scope_words(live, persistent)}")
    return info


def pin_emulator(
    vm: VirtualMachine,
    cpus: list[int],
    *,
    live: bool = True,
    persistent: bool = True,
    actor: Actor,
) -> hypervisor.TuningInfo:
    """Pin qemu's emulator threads to host CPUs (an empty list: any CPU)."""
    with vm_change(vm, actor, "vm.emulatorpin", "tune", right=CONFIG_CPU_MEMORY) as change:
        check_scope(vm, live, persistent)
        _check_cpus(vm, cpus, "cpus", _host_cpus(vm))
        with change.on_host(f"Pinning the emulator of {vm.name}"):
            info = hypervisor.pin_emulator(
                vm.host.uri, str(vm.pk), tuple(cpus), live=live, persistent=persistent
            )
        detail = (
            f"emulator on {cpu_list(cpus) if cpus else 'any CPU'}; {scope_words(live, persistent)}"
        )
        change.done(None, detail)
    return info


def set_vcpus(
    vm: VirtualMachine,
    vcpus: int,
    *,
    live: bool = True,
    persistent: bool = True,
    actor: Actor,
) -> hypervisor.TuningInfo:
    """Set how many vCPUs the VM has (hotplug when live, up to its maximum)."""
    with vm_change(vm, actor, "vm.vcpus", "tune", right=CONFIG_CPU_MEMORY) as change:
        check_scope(vm, live, persistent)
        with change.on_host():
            current = hypervisor.domain_tuning(vm.host.uri, str(vm.pk))
        if vcpus < 1 or vcpus > current.max_vcpus:
            raise ServiceError(
                f"vCPUs must be between 1 and {current.max_vcpus} (the VM's maximum); raise "
                "the maximum (persistent, VM shut off) to go beyond.",
                field="vcpus",
            )
        within_template(vm, "vcpus", vcpus=vcpus)
        with growing(vm, vcpus=vcpus, maximum=False):
            with change.on_host(f"Setting the vCPUs of {vm.name}"):
                info = hypervisor.set_vcpus(
                    vm.host.uri, str(vm.pk), vcpus, live=live, persistent=persistent
                )
            change.done(None, f"{vcpus} vCPUs; {scope_words(live, persistent)}")
    return info


def set_max_vcpus(vm: VirtualMachine, max_vcpus: int, *, actor: Actor) -> hypervisor.TuningInfo:
    """Set the most vCPUs the VM may have (its definition: from the next boot)."""
    with vm_change(vm, actor, "vm.max_vcpus", "tune", right=CONFIG_CPU_MEMORY) as change:
        check_scope(vm, False, True)
        if not 1 <= max_vcpus <= 255:
            raise ServiceError("The maximum vCPUs is a number from 1 to 255.", field="max_vcpus")
        within_template(vm, "max_vcpus", vcpus=max_vcpus)
        with growing(vm, vcpus=max_vcpus, maximum=True):
            with change.on_host(f"Setting the maximum vCPUs of {vm.name}"):
                info = hypervisor.set_vcpus(
                    vm.host.uri, str(vm.pk), max_vcpus, live=False, persistent=True, maximum=True
                )
            change.done(None, f"at most {max_vcpus} vCPUs; persistent")
    return info


def _nodes(nodeset: str) -> set[int]:
    """'0-2,5' as {0, 1, 2, 5}; ValueError when it is not that notation."""
    nodes: set[int] = set()
    for part in nodeset.split(","):
        first, _, last = part.strip().partition("-")
        start, end = int(first), int(last or first)
        if start > end:
            raise ValueError(part)
        nodes |= set(range(start, end + 1))
    return nodes


def set_numatune(
    vm: VirtualMachine,
    mode: str,
    nodeset: str,
    *,
    live: bool = False,
    persistent: bool = True,
    actor: Actor,
) -> hypervisor.TuningInfo:
    """Set where the VM's memory comes from: a NUMA mode and the host cells (like numatune)."""
    with vm_change(vm, actor, "vm.numatune", "tune", right=CONFIG_CPU_MEMORY) as change:
        if mode not in hypervisor.NUMA_MODES:
            raise ServiceError(
                f"Unknown NUMA mode '{mode}': use {', '.join(hypervisor.NUMA_MODES)}.",
                field="mode",
            )
        try:
            nodes = _nodes(nodeset)
        except ValueError:
            raise ServiceError(
                f"'{nodeset}' is not a list of NUMA cells: write it like 0 or 0-1 or 0,2.",
                field="nodeset",
            ) from None
        check_scope(vm, live, persistent)
        with change.on_host():
            cells = {c.id for c in hypervisor.host_tuning(vm.host.uri).cells}
        missing = sorted(nodes - cells)
        if missing:
            raise ServiceError(
                f"{vm.host.name} has no NUMA cell {', '.join(map(str, missing))}: its cells "
                f"are {', '.join(map(str, sorted(cells))) or 'none'}.",
                field="nodeset",
            )
        with change.on_host(f"Setting the NUMA policy of {vm.name}"):
            info = hypervisor.set_numatune(
                vm.host.uri, str(vm.pk), mode, nodeset, live=live, persistent=persistent
            )
        detail = f"{mode} on cells {nodeset}; {scope_words(live, persistent)}"
        change.done(None, detail)
    return info
