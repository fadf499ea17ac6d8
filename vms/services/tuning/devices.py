"""Limits on a VM's devices: a disk's I/O rates (like blkdeviotune) and a NIC's bandwidth
(like domiftune)."""

from __future__ import annotations

import dataclasses
from typing import Any

from panel import hypervisor
from panel.actors import Actor
from panel.exceptions import ConflictError, ServiceError
from panel.permissions import CONFIG_CPU_MEMORY
from vms.models import VirtualMachine
from vms.services.common import vm_change
from vms.services.disks import check_scope, scope_words
from vms.services.nics import MAX_RATE_KIB


def set_iotune(
    vm: VirtualMachine,
    target: str,
    limits: dict[str, int],
    *,
    live: bool = True,
    persistent: bool = True,
    actor: Actor,
) -> hypervisor.TuningInfo:
    """Limit a disk's bytes and operations per second (0: no limit), like blkdeviotune."""
    with vm_change(vm, actor, "vm.iotune", "tune", right=CONFIG_CPU_MEMORY) as change:
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
        with change.on_host(f"Limiting the I/O of {target}"):
            info = hypervisor.set_block_iotune(
                vm.host.uri, str(vm.pk), target, iotune, live=live, persistent=persistent
            )
        applied = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(iotune).items() if v)
        detail = f"{target}: {applied or 'no limits'}; {scope_words(live, persistent)}"
        change.done(None, detail)
    return info


def set_nic_bandwidth(
    vm: VirtualMachine,
    mac: str,
    inbound_kib: int,
    outbound_kib: int,
    *,
    live: bool = True,
    persistent: bool = True,
    actor: Actor,
) -> dict[str, Any]:
    """Limit a NIC's average rate each way in KiB/s (0: no limit), like virsh domiftune."""
    with vm_change(vm, actor, "vm.nic_bandwidth", "tune", right=CONFIG_CPU_MEMORY) as change:
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
            with change.on_host(f"Limiting NIC {mac}"):
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
        change.done(None, detail)
    return {"mac": mac, "inbound_kib": inbound, "outbound_kib": outbound}
