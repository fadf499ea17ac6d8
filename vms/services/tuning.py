"""Tuning a VM: vCPU and emulator pinning, vCPU count, memory (balloon), disk I/O limits,
NUMA policy; and what the host offers to draw them over. Like virsh vcpupin, emulatorpin,
setvcpus, setmem, blkdeviotune and numatune, each with live and/or persistent scope.

Every change needs "change" on the VM, is validated before libvirt is asked (400 naming
the field, nothing changed), and is audited with what was applied. vCPUs and memory, and
their maximums, stay within the limits of the template the VM was made from (400) and
within the project's quota, which counts what each VM may grow to (403).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from django.db import transaction

from panel import audit, hypervisor, quotas
from panel.exceptions import ConflictError, ServiceError
from panel.permissions import VIEW, is_admin
from vms.choices import VMState
from vms.models import VirtualMachine
from vms.services.common import on_vm_host, require_right, reread
from vms.services.disks import check_scope, commit_disk_change, ready_for_change, scope_words

MIB = 1024 * 1024


def _cpu_list(cpus: tuple[int, ...] | list[int]) -> str:
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


def vm_tuning(vm: VirtualMachine, *, actor: Any) -> dict:
    """The VM's tuning now and the host's CPUs, NUMA cells and huge pages, for the tuning tab."""
    require_right(actor, vm, VIEW, "see the tuning of")
    with on_vm_host(vm):
        info = hypervisor.domain_tuning(vm.host.uri, str(vm.pk))
        host = hypervisor.host_tuning(vm.host.uri)
    data = dataclasses.asdict(info)
    data["vcpu_pins_text"] = [_cpu_list(p) for p in info.vcpu_pins]
    data["emulator_pin_text"] = _cpu_list(info.emulator_pin)
    data["host"] = dataclasses.asdict(host)
    data["host"]["memory_for_guests"] = _guest_memory_limit(vm)
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
    actor: Any,
    source_ip: str | None = None,
) -> hypervisor.TuningInfo:
    """Pin vCPUs to host CPUs ({vcpu: [cpu, ...]}; an empty list: any CPU)."""
    ready_for_change(vm, actor, "tune")
    with audit.refusals_recorded(actor, "vm.vcpupin", vm, project=vm.project, source_ip=source_ip):
        if not pins:
            raise ServiceError("Give at least one vCPU and the host CPUs for it.", field="pins")
        check_scope(vm, live, persistent)
        with on_vm_host(vm):
            current = hypervisor.domain_tuning(vm.host.uri, str(vm.pk))
        bad = sorted(v for v in pins if v < 0 or v >= current.max_vcpus)
        if bad:
            raise ServiceError(
                f"{vm.name} has no vCPU {', '.join(map(str, bad))}: its vCPUs are "
                f"0-{current.max_vcpus - 1}.",
                field="pins",
            )
        _check_cpus(vm, [c for cpus in pins.values() for c in cpus], "pins", current.host_cpus)
        with on_vm_host(vm, f"Pinning the vCPUs of {vm.name}"):
            info = hypervisor.pin_vcpus(
                vm.host.uri,
                str(vm.pk),
                {v: tuple(c) for v, c in pins.items()},
                live=live,
                persistent=persistent,
            )
        detail = "; ".join(
            f"vCPU {v} on {_cpu_list(c) if c else 'any CPU'}" for v, c in sorted(pins.items())
        )
        commit_disk_change(
            vm, None, actor, "vm.vcpupin", f"{detail}; {scope_words(live, persistent)}", source_ip
        )
    return info


def pin_emulator(
    vm: VirtualMachine,
    cpus: list[int],
    *,
    live: bool = True,
    persistent: bool = True,
    actor: Any,
    source_ip: str | None = None,
) -> hypervisor.TuningInfo:
    """Pin qemu's emulator threads to host CPUs (an empty list: any CPU)."""
    ready_for_change(vm, actor, "tune")
    with audit.refusals_recorded(
        actor, "vm.emulatorpin", vm, project=vm.project, source_ip=source_ip
    ):
        check_scope(vm, live, persistent)
        _check_cpus(vm, cpus, "cpus", _host_cpus(vm))
        with on_vm_host(vm, f"Pinning the emulator of {vm.name}"):
            info = hypervisor.pin_emulator(
                vm.host.uri, str(vm.pk), tuple(cpus), live=live, persistent=persistent
            )
        detail = (
            f"emulator on {_cpu_list(cpus) if cpus else 'any CPU'}; {scope_words(live, persistent)}"
        )
        commit_disk_change(vm, None, actor, "vm.emulatorpin", detail, source_ip)
    return info


def _within_template(
    vm: VirtualMachine, field: str, *, vcpus: int = 0, memory_mib: int = 0
) -> None:
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
def _growing(
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


def _guest_memory_limit(vm: VirtualMachine) -> int:
    """Bytes the host's reserve advice leaves for guests (0: unknown)."""
    host = vm.host
    total = host.memory_total
    if not total:
        return 0
    reserved = host.memory_reserved or hypervisor.reserved_memory_bytes(total)
    return max(total - reserved, 0)


def _check_reserve(vm: VirtualMachine, memory_mib: int, actor: Any, force: bool, field: str) -> str:
    """Refuse memory that eats into the host's reserve; admins may force it (a warning back)."""
    limit = _guest_memory_limit(vm)
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
    if force and is_admin(actor):
        return f"Warning: {message}; applied anyway as you asked."
    raise ServiceError(
        f"{message}. Give less memory"
        + (", or tick 'override' to apply it anyway." if is_admin(actor) else "."),
        field=field,
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
        _within_template(vm, "memory_mib", memory_mib=memory_mib)
        warning = _check_reserve(vm, memory_mib, actor, force, "memory_mib")
        with _growing(vm, memory_mib=memory_mib, maximum=False):
            with on_vm_host(vm, f"Setting the memory of {vm.name}"):
                info = hypervisor.set_memory(
                    vm.host.uri, str(vm.pk), memory_mib * 1024, live=live, persistent=persistent
                )
            detail = f"{memory_mib} MiB; {scope_words(live, persistent)}" + (
                f"; {warning}" if warning else ""
            )
            commit_disk_change(vm, None, actor, "vm.memory", detail, source_ip)
    return info, warning


def set_vcpus(
    vm: VirtualMachine,
    vcpus: int,
    *,
    live: bool = True,
    persistent: bool = True,
    actor: Any,
    source_ip: str | None = None,
) -> hypervisor.TuningInfo:
    """Set how many vCPUs the VM has (hotplug when live, up to its maximum)."""
    ready_for_change(vm, actor, "tune")
    with audit.refusals_recorded(actor, "vm.vcpus", vm, project=vm.project, source_ip=source_ip):
        check_scope(vm, live, persistent)
        with on_vm_host(vm):
            current = hypervisor.domain_tuning(vm.host.uri, str(vm.pk))
        if vcpus < 1 or vcpus > current.max_vcpus:
            raise ServiceError(
                f"vCPUs must be between 1 and {current.max_vcpus} (the VM's maximum); raise "
                "the maximum (persistent, VM shut off) to go beyond.",
                field="vcpus",
            )
        _within_template(vm, "vcpus", vcpus=vcpus)
        with _growing(vm, vcpus=vcpus, maximum=False):
            with on_vm_host(vm, f"Setting the vCPUs of {vm.name}"):
                info = hypervisor.set_vcpus(
                    vm.host.uri, str(vm.pk), vcpus, live=live, persistent=persistent
                )
            commit_disk_change(
                vm,
                None,
                actor,
                "vm.vcpus",
                f"{vcpus} vCPUs; {scope_words(live, persistent)}",
                source_ip,
            )
    return info


def set_iotune(
    vm: VirtualMachine,
    target: str,
    limits: dict[str, int],
    *,
    live: bool = True,
    persistent: bool = True,
    actor: Any,
    source_ip: str | None = None,
) -> hypervisor.TuningInfo:
    """Limit a disk's bytes and operations per second (0: no limit), like blkdeviotune."""
    ready_for_change(vm, actor, "tune")
    with audit.refusals_recorded(actor, "vm.iotune", vm, project=vm.project, source_ip=source_ip):
        if not any(d.get("target") == target and d.get("device") == "disk" for d in vm.disks):
            disks = ", ".join(d["target"] for d in vm.disks if d.get("device") == "disk")
            raise ServiceError(
                f"{vm.name} has no disk {target or '(none given)'}"
                + (f": choose one of {disks}." if disks else ": attach a disk first."),
                field="target",
            )
        for kind in ("bytes", "iops"):
            if limits.get(f"total_{kind}_sec") and (
                limits.get(f"read_{kind}_sec") or limits.get(f"write_{kind}_sec")
            ):
                raise ServiceError(
                    f"Set either a total {kind} limit or read/write {kind} limits, not both.",
                    field=f"total_{kind}_sec",
                )
        check_scope(vm, live, persistent)
        iotune = hypervisor.IoTune(**limits)
        with on_vm_host(vm, f"Limiting the I/O of {target}"):
            info = hypervisor.set_block_iotune(
                vm.host.uri, str(vm.pk), target, iotune, live=live, persistent=persistent
            )
        applied = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(iotune).items() if v)
        detail = f"{target}: {applied or 'no limits'}; {scope_words(live, persistent)}"
        commit_disk_change(vm, None, actor, "vm.iotune", detail, source_ip)
    return info


def set_max_vcpus(
    vm: VirtualMachine, max_vcpus: int, *, actor: Any, source_ip: str | None = None
) -> hypervisor.TuningInfo:
    """Set the most vCPUs the VM may have (its definition: from the next boot)."""
    ready_for_change(vm, actor, "tune")
    with audit.refusals_recorded(
        actor, "vm.max_vcpus", vm, project=vm.project, source_ip=source_ip
    ):
        check_scope(vm, False, True)
        if not 1 <= max_vcpus <= 255:
            raise ServiceError("The maximum vCPUs is a number from 1 to 255.", field="max_vcpus")
        _within_template(vm, "max_vcpus", vcpus=max_vcpus)
        with _growing(vm, vcpus=max_vcpus, maximum=True):
            with on_vm_host(vm, f"Setting the maximum vCPUs of {vm.name}"):
                info = hypervisor.set_vcpus(
                    vm.host.uri, str(vm.pk), max_vcpus, live=False, persistent=True, maximum=True
                )
            commit_disk_change(
                vm,
                None,
                actor,
                "vm.max_vcpus",
                f"at most {max_vcpus} vCPUs; persistent",
                source_ip,
            )
    return info


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
        _within_template(vm, "max_memory_mib", memory_mib=max_memory_mib)
        warning = _check_reserve(vm, max_memory_mib, actor, force, "max_memory_mib")
        with _growing(vm, memory_mib=max_memory_mib, maximum=True):
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
    actor: Any,
    source_ip: str | None = None,
) -> hypervisor.TuningInfo:
    """Set where the VM's memory comes from: a NUMA mode and the host cells (like numatune)."""
    ready_for_change(vm, actor, "tune")
    with audit.refusals_recorded(actor, "vm.numatune", vm, project=vm.project, source_ip=source_ip):
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
        with on_vm_host(vm):
            cells = {c.id for c in hypervisor.host_tuning(vm.host.uri).cells}
        missing = sorted(nodes - cells)
        if missing:
            raise ServiceError(
                f"{vm.host.name} has no NUMA cell {', '.join(map(str, missing))}: its cells "
                f"are {', '.join(map(str, sorted(cells))) or 'none'}.",
                field="nodeset",
            )
        with on_vm_host(vm, f"Setting the NUMA policy of {vm.name}"):
            info = hypervisor.set_numatune(
                vm.host.uri, str(vm.pk), mode, nodeset, live=live, persistent=persistent
            )
        detail = f"{mode} on cells {nodeset}; {scope_words(live, persistent)}"
        commit_disk_change(vm, None, actor, "vm.numatune", detail, source_ip)
    return info


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


def set_nic_bandwidth(
    vm: VirtualMachine,
    mac: str,
    inbound_kib: int,
    outbound_kib: int,
    *,
    live: bool = True,
    persistent: bool = True,
    actor: Any,
    source_ip: str | None = None,
) -> dict[str, int]:
    """Limit a NIC's average rate each way in KiB/s (0: no limit), like virsh domiftune."""
    from networking.services import MAX_RATE_KIB

    ready_for_change(vm, actor, "tune")
    with audit.refusals_recorded(
        actor, "vm.nic_bandwidth", vm, project=vm.project, source_ip=source_ip
    ):
        mac = mac.strip().lower().replace("-", ":")
        macs = [n.get("mac", "") for n in vm.nics]
        if mac not in macs:
            raise ServiceError(
                f"{vm.name} has no NIC {mac or '(none given)'}"
                + (f": choose one of {', '.join(macs)}." if macs else ": attach one first."),
                field="mac",
            )
        for field, value in (("inbound_kib", inbound_kib), ("outbound_kib", outbound_kib)):
            if not 0 <= value <= MAX_RATE_KIB:
                raise ServiceError(
                    f"A bandwidth limit is a whole number of KiB/s from 0 (no limit) to "
                    f"{MAX_RATE_KIB}.",
                    field=field,
                )
        check_scope(vm, live, persistent)
        try:
            with on_vm_host(vm, f"Limiting NIC {mac}"):
                inbound, outbound = hypervisor.set_interface_bandwidth(
                    vm.host.uri,
                    str(vm.pk),
                    mac,
                    inbound_kib,
                    outbound_kib,
                    live=live,
                    persistent=persistent,
                )
        except ConflictError as exc:
            if "qdisc" in exc.message:
                raise ConflictError(
                    f"{exc.message} — {vm.host.name}'s kernel lacks the traffic-control "
                    "modules libvirt uses for live bandwidth limits (sch_htb, sch_sfq): set "
                    "the limit persistent only (from the next boot), or load those modules."
                ) from exc
            raise
        detail = f"{mac}: in {inbound} out {outbound} KiB/s; {scope_words(live, persistent)}"
        commit_disk_change(vm, None, actor, "vm.nic_bandwidth", detail, source_ip)
    return {"mac": mac, "inbound_kib": inbound, "outbound_kib": outbound}
