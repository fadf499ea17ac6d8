"""HA: VMs restarted on another host when theirs is lost, never running twice.

The design follows Proxmox's ha-manager, whose nodes reset themselves through a watchdog
once they lose the cluster. A VM is marked HA (vm.ha, and an element in its domain's
metadata the host-side agent recognises); the panel keeps its definition to define it
elsewhere. Each host is fenced explicitly (Host.fencing):

- agent: scripts/panel-ha-agent runs on the host. The HA monitor (`manage.py
  ha_monitor`, vms.services.ha_monitor) renews a lease there every renew interval over
  SSH with the panel's key; when the lease is older than the fence delay by the host's
  own clock, the agent destroys the host's running HA domains. The panel declares the
  host lost only after the fence delay, two renewals and a margin without reaching it.
- manual: an administrator confirms the host is off; only then are its HA VMs restarted.
- none: its HA VMs are never restarted elsewhere.

Then each HA VM of the lost host is restarted, as a job, on the host placement picks
(affinity groups and maintenance kept) among those that see all its disks. The hosts
also take disk leases through virtlockd (lock_manager = "lockd"), so QEMU itself
refuses to start a disk another host still runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction

from panel import audit, hypervisor, rows
from panel.actors import Actor
from panel.choices import HostFencing
from panel.exceptions import GoneError, ServiceError
from panel.models import Host
from panel.permissions import CONFIG_CPU_MEMORY, require_admin
from storage.models import StoragePool
from vms.models import VirtualMachine
from vms.services.common import vm_change
from vms.services.sync import publish_vm


def fence_seconds() -> int:
    """After how long without a renewal the host's agent stops its HA VMs."""
    return int(settings.PANEL_HA_FENCE_SECONDS)


def renew_seconds() -> int:
    """How often the HA monitor renews the agents' leases and looks at the hosts."""
    return int(settings.PANEL_HA_RENEW_SECONDS)


def lost_seconds() -> int:
    """How long a host with agent fencing goes unreached before it is declared lost:
    past the fence delay, two renewals and a margin, so its agent has stopped its VMs."""
    return fence_seconds() + 2 * renew_seconds() + int(settings.PANEL_HA_MARGIN_SECONDS)


def _under(path: str, directory: str) -> bool:
    directory = directory.rstrip("/")
    parent = os.path.dirname(path)
    return bool(directory) and (parent == directory or parent.startswith(directory + "/"))


def _disk_paths(vm: VirtualMachine) -> list[str]:
    return [d["source"] for d in vm.disks if d.get("source")]


def hosts_seeing_disks(vm: VirtualMachine, hosts: Iterable[Host]) -> list[Host]:
    """The hosts among hosts with a running pool at the path of each of vm's disks."""
    paths = _disk_paths(vm)
    pools: dict[int, list[str]] = {}
    for host_id, path in StoragePool.objects.filter(state="active").values_list(
        "host_id", "target_path"
    ):
        pools.setdefault(host_id, []).append(path)
    return [
        host
        for host in hosts
        if all(any(_under(p, d) for d in pools.get(host.pk, [])) for p in paths)
    ]


def ha_refusal(vm: VirtualMachine) -> str:
    """Why vm cannot be HA ("" when it can): only a persistent VM whose disks another
    host sees at the same path can be restarted there."""
    if not vm.persistent:
        return f"{vm.name} is transient: only a defined VM can be restarted on another host."
    others = Host.objects.exclude(pk=vm.host_id)
    if not others.exists():
        return f"{vm.name} cannot be HA: the panel has no other host to restart it on."
    if hosts_seeing_disks(vm, others):
        return ""
    unseen = [p for p in _disk_paths(vm) if not hosts_seeing_disks(_only(vm, p), others)]
    return (
        f"{vm.name} cannot be HA: no other host sees "
        f"{', '.join(unseen) if unseen else 'all its disks'} at the same path. Move its "
        "disks to shared storage (a pool at the same path on another host) first."
    )


def _only(vm: VirtualMachine, path: str) -> VirtualMachine:
    copy = VirtualMachine(pk=vm.pk, host_id=vm.host_id)
    copy.disks = [{"source": path}]
    return copy


def set_vm_ha(vm: VirtualMachine, enabled: bool, *, actor: Actor) -> VirtualMachine:
    """Mark vm HA (or not): its domain carries the mark the host's agent fences by, and
    the panel keeps its definition. Audited as vm.ha; the same value again changes nothing."""
    verb = "change HA of"
    with vm_change(vm, actor, "vm.ha", verb, right=CONFIG_CPU_MEMORY) as change:
        if vm.ha == enabled:
            return vm
        if enabled and (why := ha_refusal(vm)):
            raise ServiceError(why, field="ha")
        with change.claim(verb), change.on_host(f"Marking {vm.name} HA"):
            definition = hypervisor.mark_ha(vm.host.uri, str(vm.pk), enabled)
        with transaction.atomic():
            row = rows.lock(vm)
            if row is None:
                raise GoneError(f"{vm.name} was deleted meanwhile.")
            vm.ha, vm.ha_definition = enabled, definition if enabled else ""
            vm.save(update_fields=["ha", "ha_definition"])
            audit.record(actor, "vm.ha", vm, detail="on" if enabled else "off")
            publish_vm(vm)
    return vm


def why_not_restarted(host: Host) -> str:
    """What the host page says about its HA VMs ("" when they are covered)."""
    if host.fencing == HostFencing.NONE:
        return (
            "This host has no fencing: the panel cannot know it stopped its VMs, so its HA "
            "VMs are never restarted elsewhere. Choose agent or manual fencing."
        )
    if host.fencing == HostFencing.AGENT and not hypervisor.is_ssh(host.uri):
        return "Agent fencing needs a qemu+ssh host: the panel renews the agent's lease over SSH."
    return host.ha_note


def set_fencing(host: Host, fencing: str, *, actor: Actor) -> Host:
    """Choose how host is fenced (admins): audited as host.fencing."""
    require_admin(actor.user, "choose how hosts are fenced")
    with audit.refusals_recorded(actor, "host.fencing", host):
        if fencing not in HostFencing.values:
            raise ServiceError(
                f"'{fencing}' is not a fencing: use agent, manual or '' (none).", field="fencing"
            )
        if fencing == HostFencing.AGENT and not hypervisor.is_ssh(host.uri):
            raise ServiceError(
                f"{host.name} is not reached over qemu+ssh: the panel renews the HA agent's "
                "lease over SSH. Use manual fencing for it.",
                field="fencing",
            )
        if fencing == host.fencing:
            return host
        with transaction.atomic():
            before = host.fencing
            host.fencing, host.ha_reached_at, host.ha_note = fencing, None, ""
            host.save(update_fields=["fencing", "ha_reached_at", "ha_note"])
            audit.record(
                actor, "host.fencing", host, detail=f"{before or 'none'} -> {fencing or 'none'}"
            )
    return host
