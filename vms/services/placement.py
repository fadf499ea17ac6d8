"""Placement: which host a VM goes to when nobody names one (create, drain).

A host is a candidate when it is up, not in maintenance, visible to the actor, holds
every object the request names (its pools, volumes, networks), has the vCPUs and the
free memory, and keeps the VM's affinity group: an "apart" group never puts two of its
VMs on one host, a "together" group puts them on the host its other VMs run on. Among
the candidates the policy (settings.PANEL_PLACEMENT) picks: spread (the most free
memory, then the fewest VMs) or pack (the least free memory that still fits). A refusal
says why each host was left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Count, Q

from panel.exceptions import ConflictError
from panel.models import Host
from panel.permissions import restrict
from vms.choices import VMState
from vms.models import AffinityGroup, VirtualMachine

if TYPE_CHECKING:
    from panel.permissions import Person

MIB = 1024 * 1024


@dataclass(frozen=True)
class Holding:
    """An object the request names, which only its host holds ("pool 'images'")."""

    what: str
    host_id: int


@dataclass(frozen=True)
class Need:
    """What a VM asks of its host. vm: the VM being moved (None for a new one); planned:
    where other VMs are about to go (a drain's earlier steps), by VM id."""

    memory_mib: int
    vcpus: int
    holdings: tuple[Holding, ...] = ()
    groups: tuple[AffinityGroup, ...] = ()
    vm: str | None = None
    exclude: frozenset[int] = frozenset()
    planned: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Placement:
    """The host picked (None: none fits) and why each other host was left out."""

    host: Host | None
    left_out: dict[str, str]

    def refusal(self) -> str:
        """Why no host fits, one clause per host."""
        why = "; ".join(f"host {name}: {reason}" for name, reason in sorted(self.left_out.items()))
        return f"No host can take it ({why})." if why else "No host you may use is up."


def policy() -> str:
    """spread or pack (settings.PANEL_PLACEMENT)."""
    return str(getattr(settings, "PANEL_PLACEMENT", "spread"))


def _where(vm_ids: Iterable[str], planned: Mapping[str, int]) -> dict[str, int]:
    """The host of each VM, its planned one first."""
    found = dict(
        VirtualMachine.objects.filter(pk__in=list(vm_ids))
        .exclude(state=VMState.MISSING)
        .values_list("pk", "host_id")
    )
    return {str(pk): planned.get(str(pk), host_id) for pk, host_id in found.items()}


def _group_refusal(host: Host, need: Need) -> str:
    """Why an affinity group of the VM keeps it off host ("" when none does)."""
    for group in need.groups:
        others = {
            vm: host_id
            for vm, host_id in _where(
                (str(pk) for pk in group.vms.values_list("pk", flat=True)), need.planned
            ).items()
            if vm != need.vm
        }
        if group.kind == AffinityGroup.APART and host.pk in others.values():
            names = VirtualMachine.objects.filter(
                pk__in=[vm for vm, h in others.items() if h == host.pk]
            ).values_list("name", flat=True)
            return f"runs {', '.join(sorted(names))} of group '{group.name}' (kept apart)"
        if group.kind == AffinityGroup.TOGETHER and others and host.pk not in others.values():
            return f"group '{group.name}' keeps its VMs together on another host"
    return ""


def _load(planned: Mapping[str, int]) -> dict[int, int]:
    """Memory (bytes) each host is about to take from planned moves."""
    load: dict[int, int] = {}
    sizes = VirtualMachine.objects.filter(pk__in=list(planned)).values_list("pk", "memory_mib")
    for pk, memory_mib in sizes:
        host_id = planned[str(pk)]
        load[host_id] = load.get(host_id, 0) + memory_mib * MIB
    return load


def free_memory(host: Host, load: Mapping[int, int]) -> int | None:
    """Free memory the host last reported, less what is planned for it (None: unknown)."""
    if "memory_free_bytes" not in host.facts:
        return None
    return host.memory_free - load.get(host.pk, 0)


def _why_not(host: Host, need: Need, free: int | None) -> str:
    """Why host cannot take the VM ("" when it can)."""
    if host.maintenance:
        return "in maintenance"
    if host.state != "up":
        return f"{host.state}"
    if host.pk in need.exclude:
        return "the VM's own host"
    missing = [h.what for h in need.holdings if h.host_id != host.pk]
    if missing:
        return f"no {', '.join(dict.fromkeys(missing))}"
    cpus = int(host.facts.get("cpus") or 0)
    if cpus and need.vcpus > cpus:
        return f"{cpus} CPUs, {need.vcpus} vCPUs asked"
    if free is not None and need.memory_mib * MIB > free:
        return f"{max(free, 0) // MIB} MiB free, {need.memory_mib} MiB needed"
    return _group_refusal(host, need)


def place(user: Person, need: Need, hosts: Iterable[Host] | None = None) -> Placement:
    """The host need goes to among those user sees (or hosts), by the policy."""
    if hosts is None:
        hosts = restrict(Host.objects.all(), user).annotate(
            vm_count=Count("vms", filter=~Q(vms__state=VMState.MISSING))
        )
    load = _load(need.planned)
    fits: list[tuple[Host, int]] = []
    left_out: dict[str, str] = {}
    for host in hosts:
        free = free_memory(host, load)
        reason = _why_not(host, need, free)
        if reason:
            left_out[host.name] = reason
        else:
            fits.append((host, free or 0))
    if not fits:
        return Placement(None, left_out)
    if policy() == "pack":
        best = min(fits, key=lambda f: (f[1], f[0].name))
    else:
        best = min(fits, key=lambda f: (-f[1], getattr(f[0], "vm_count", 0), f[0].name))
    return Placement(best[0], left_out)


def place_or_refuse(user: Person, need: Need, what: str) -> Host:
    """The host need goes to; a ConflictError saying why each host was left out if none."""
    placement = place(user, need)
    if placement.host is None:
        raise ConflictError(f"{what}: {placement.refusal()}")
    return placement.host


def refuse_maintenance(host: Host, what: str) -> None:
    """A refusal of new VMs on a host in maintenance."""
    if host.maintenance:
        raise ConflictError(
            f"{host.name} is in maintenance and takes no new VMs: {what} another host, or "
            "ask an admin to make it active again."
        )
