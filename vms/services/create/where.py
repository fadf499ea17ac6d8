"""Where a new VM goes: the host the request names (up, not in maintenance), or the one
placement picks among the hosts that hold what the request names (its disks' pools and
volumes, its boot media, its networks), keeping its affinity group's rule."""

from __future__ import annotations

from dataclasses import replace

from networking.models import Network
from panel.actors import Actor
from panel.choices import HostState
from panel.exceptions import ConflictError
from panel.models import Host, Project
from panel.permissions import VIEW, restrict
from storage.models import LibraryImage, StoragePool, Volume
from vms.models import AffinityGroup
from vms.services import placement
from vms.services.create.spec import (
    DEFAULT_MEMORY_MIB,
    DEFAULT_VCPUS,
    CloudImageInstall,
    CreateRequest,
    ExistingDisk,
    ImportInstall,
    IsoInstall,
    NewDisk,
    field_error,
)


def affinity_group(actor: Actor, project: Project, pk: int | None) -> AffinityGroup | None:
    """The affinity group the request names: one of the VM's project that actor sees."""
    if pk is None:
        return None
    group = (
        restrict(AffinityGroup.objects.filter(project=project), actor.user, VIEW)
        .filter(pk=pk)
        .first()
    )
    if group is None:
        raise field_error(
            f"No affinity group with id {pk} in {project.name}: name one of the project's "
            "groups (GET /api/v1/affinity-groups/).",
            "affinity_group",
        )
    return group


def _ids(request: CreateRequest) -> tuple[set[int], set[int], set[int], set[int]]:
    """The pools, volumes, library images and networks the request names, by id."""
    pools = {d.pool for d in request.disks if isinstance(d, NewDisk) and d.pool is not None}
    volumes = {d.volume for d in request.disks if isinstance(d, ExistingDisk)}
    images: set[int] = set()
    install = request.install
    if isinstance(install, IsoInstall | CloudImageInstall):
        volume = install.iso_volume if isinstance(install, IsoInstall) else install.image_volume
        if volume is not None:
            volumes.add(volume)
        if install.library_image is not None:
            images.add(install.library_image)
    if isinstance(install, ImportInstall) and install.volume is not None:
        volumes.add(install.volume)
    if request.easy is not None and request.easy.pool is not None:
        pools.add(request.easy.pool)
    return pools, volumes, images, {n for n in request.networks if n is not None}


def holdings(actor: Actor, request: CreateRequest) -> tuple[placement.Holding, ...]:
    """The objects the request names that actor sees, each with the host that holds it
    (those actor does not see are refused by the checks, on whatever host)."""
    pools, volumes, images, networks = _ids(request)
    user = actor.user
    found = [
        (f"pool '{name}'", host)
        for name, host in restrict(StoragePool.objects.filter(pk__in=pools), user, VIEW)
        .values_list("name", "host_id")
        .order_by("name")
    ]
    found += [
        (f"volume '{name}' (pool '{pool}')", host)
        for name, pool, host in restrict(Volume.objects.filter(pk__in=volumes), user, VIEW)
        .values_list("name", "pool__name", "pool__host_id")
        .order_by("name")
    ]
    found += [
        (f"library image '{name}' (pool '{pool}')", host)
        for name, pool, host in restrict(LibraryImage.objects.filter(pk__in=images), user, VIEW)
        .values_list("name", "pool__name", "pool__host_id")
        .order_by("name")
    ]
    found += [
        (f"network '{name}'", host)
        for name, host in restrict(Network.objects.filter(pk__in=networks), user, VIEW)
        .values_list("name", "host_id")
        .order_by("name")
    ]
    return tuple(placement.Holding(what, host) for what, host in found)


def choose_host(actor: Actor, request: CreateRequest, group: AffinityGroup | None) -> Host:
    """The host asked for, or the one placement picks for the request."""
    if request.host is not None:
        host = restrict(Host.objects.all(), actor.user, VIEW).filter(pk=request.host).first()
        if host is None:
            raise field_error(f"No host with id {request.host} that you can use.", "host")
        placement.refuse_maintenance(host, "choose")
        if host.state != HostState.UP:
            raise ConflictError(f"{host.name} is {host.state}: pick a host that is up.")
        if group is not None:
            need = placement.Need(0, 0, groups=(group,))
            placed = placement.place(actor.user, need, [host])
            if placed.host is None:
                reason = placed.left_out.get(host.name, "")
                raise ConflictError(f"{request.name} cannot go to {host.name}: {reason}.")
        return host
    need = placement.Need(
        memory_mib=request.memory_mib or DEFAULT_MEMORY_MIB,
        vcpus=request.vcpus or DEFAULT_VCPUS,
        holdings=holdings(actor, request),
        groups=(group,) if group is not None else (),
    )
    placed = placement.place(actor.user, need)
    if placed.host is None:
        unsized = placement.place(actor.user, replace(need, memory_mib=0, vcpus=0))
        raise NowhereToGo(f"{request.name} has nowhere to go: {placed.refusal()}", unsized.host)
    return placed.host


class NowhereToGo(ConflictError):
    """No host can take the VM now. unsized: the host placement would pick if size did
    not count, on which a size no host has is refused as bad input (400) instead."""

    def __init__(self, message: str, unsized: Host | None) -> None:
        super().__init__(message)
        self.unsized = unsized
