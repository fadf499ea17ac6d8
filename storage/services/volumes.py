"""Volume actions: create, resize and delete at once; clone, convert and wipe as jobs."""

from __future__ import annotations

import math
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction

from panel import audit, hypervisor, quotas
from panel.actors import Actor
from panel.choices import JobKind
from panel.exceptions import ConflictError, ServiceError
from panel.hostcalls import changing, on_host
from panel.hypervisor import storage as hv
from panel.models import Job, Project
from panel.permissions import ALLOCATE_SPACE, VOLUME_READ, allowed
from storage.models import StoragePool, Volume
from storage.services.common import (
    VolumeChange,
    may_create_in,
    placeholder,
    queue_volume_job,
    require_right,
    require_usable_pool,
    vms_using,
    volume_change,
)
from storage.services.sync import save_volume, touch_pool
from storage.services.trust import check_content, pinned, require_trusted
from storage.services.validation import (
    FORMATS,
    GIB,
    PREALLOCATION,
    as_gib,
    capacity_bytes,
    validate_name,
)

# Quick enough to answer in the request; the others run as jobs.
QUICK_PREALLOCATION = {"off", "metadata", "falloc"}


def create_volume(
    pool: StoragePool,
    *,
    name: str,
    format: str = "qcow2",
    capacity_gib: Any = None,
    preallocation: str = "off",
    backing_volume: Volume | None = None,
    project: Project | None = None,
    actor: Actor,
) -> Volume | Job:
    """Create a volume: at once, or as a job for full preallocation (it writes every byte)."""
    may_create_in(actor, project)
    with audit.refusals_recorded(actor, "volume.create", pool, project=project):
        name = validate_name(name, "volume")
        require_usable_pool(pool, actor)
        _check_format(format, preallocation)
        chain: list[dict[str, str]] = []
        if backing_volume is not None:
            chain = _backing_chain(backing_volume, pool, format, actor=actor)
            capacity = _overlay_capacity(backing_volume, capacity_gib)
        else:
            capacity = capacity_bytes(capacity_gib)
        _check_room(pool, capacity, preallocation)
        spec = hypervisor.VolumeSpec(
            name=name,
            capacity=capacity,
            format=format,
            preallocation=preallocation,
            backing_path=chain[0]["path"] if chain else "",
            backing_format=chain[0]["format"] if chain else "",
        )
        with transaction.atomic():
            volume = placeholder(pool, name, format, capacity, actor=actor, project=project)
            if chain:
                volume.backing = chain
                volume.save(update_fields=["backing"])
            if preallocation not in QUICK_PREALLOCATION:
                return queue_volume_job(
                    volume,
                    JobKind.VOLUME_CREATE,
                    {"spec": _spec_dict(spec)},
                    actor=actor,
                    action="volume.create",
                    detail=_spec_detail(spec),
                )
            volume = _create_now(volume, spec, actor=actor)
    touch_pool(pool)
    return volume


def _check_format(format: str, preallocation: str) -> None:
    """ServiceError unless qemu-img can create format with that preallocation."""
    if format not in FORMATS:
        raise ServiceError(
            f"'{format}' is not a format qemu-img can create: use {', '.join(FORMATS)}.",
            field="format",
        )
    if preallocation not in PREALLOCATION:
        raise ServiceError(
            f"Unknown preallocation '{preallocation}': use {', '.join(PREALLOCATION)}.",
            field="preallocation",
        )
    if preallocation == "metadata" and format != "qcow2":
        raise ServiceError(
            "Metadata preallocation applies to qcow2 only: choose off, falloc or full.",
            field="preallocation",
        )


def _backing_chain(
    backing_volume: Volume, pool: StoragePool, format: str, *, actor: Actor
) -> list[dict[str, str]]:
    """The chain an overlay on backing_volume records: the backing volume, then its own."""
    # An overlay reads its backing volume whole: one the actor may change, or an
    # image an admin published as shared.
    if not backing_volume.shared and not allowed(actor.user, backing_volume, VOLUME_READ):
        raise PermissionDenied(
            f"Your role does not allow you to read {backing_volume.name}: an overlay "
            "needs a backing volume you may change, or a shared image."
        )
    if format != "qcow2":
        raise ServiceError("Only qcow2 volumes can have a backing volume.", field="format")
    if backing_volume.pool.host_id != pool.host_id:
        raise ServiceError("The backing volume must be on the same host.", field="backing_volume")
    # Its header names the backing volume with its format; the chain below is the
    # one the panel recorded and checked, pinned wherever the overlay is opened.
    below = check_content(backing_volume, "the backing volume of an overlay")
    return [{"path": backing_volume.path, "format": backing_volume.format or "raw"}, *below]


def _overlay_capacity(backing_volume: Volume, capacity_gib: Any) -> int:
    """The overlay's size: the backing volume's unless given, and never smaller."""
    if capacity_gib in (None, ""):
        capacity = backing_volume.capacity
    else:
        capacity = capacity_bytes(capacity_gib)
    if capacity < backing_volume.capacity:
        raise ServiceError(
            f"An overlay cannot be smaller than its backing volume ({as_gib(backing_volume.capacity)}).",
            field="capacity_gib",
        )
    return capacity


def _check_room(pool: StoragePool, capacity: int, preallocation: str) -> None:
    """ServiceError when the pool cannot hold the volume (or, preallocated, has no room now)."""
    if capacity > pool.capacity > 0:
        raise ServiceError(
            f"{as_gib(capacity)} is more than pool {pool.name} holds ({as_gib(pool.capacity)}).",
            field="capacity_gib",
        )
    if preallocation != "off" and capacity > pool.available:
        raise ServiceError(
            f"Pool {pool.name} has {as_gib(pool.available)} free: a preallocated "
            f"{as_gib(capacity)} volume does not fit. Choose a smaller size or thin (off).",
            field="capacity_gib",
        )


def _create_now(volume: Volume, spec: hypervisor.VolumeSpec, *, actor: Actor) -> Volume:
    """The quick create, inside the transaction that holds the row: when the database
    cannot take the write, libvirt is never asked; when libvirt refuses, the row goes
    with the rollback."""
    pool = volume.pool
    with on_host(pool.host, f"Volume {spec.name}"):
        info = hv.create_volume(pool.host.uri, pool.name, spec)
    volume = save_volume(volume, info)
    audit.record(
        actor,
        "volume.create",
        volume,
        detail=_spec_detail(spec)
        + (f" backed by {spec.backing_path}" if spec.backing_path else ""),
    )
    return volume


def _spec_detail(spec: hypervisor.VolumeSpec) -> str:
    """Format, size and preallocation of a new volume, for its audit row."""
    return f"{spec.format} {as_gib(spec.capacity)} {spec.preallocation}"


def _spec_dict(spec: hypervisor.VolumeSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "capacity": spec.capacity,
        "format": spec.format,
        "preallocation": spec.preallocation,
        "backing_path": spec.backing_path,
        "backing_format": spec.backing_format,
    }


def resize_volume(
    volume: Volume,
    capacity_gib: Any,
    *,
    shrink: bool = False,
    actor: Actor,
) -> Volume:
    """Grow a volume; shrinking needs shrink=True, and qcow2 volumes never shrink."""
    with volume_change(volume, actor, "volume.resize", "resize", right=ALLOCATE_SPACE) as change:
        require_trusted(volume, "resized")
        capacity = capacity_bytes(capacity_gib)
        if capacity == volume.capacity:
            raise ServiceError(
                f"{volume.name} is already {as_gib(capacity)}.", field="capacity_gib"
            )
        if capacity < volume.capacity:
            if volume.format != "raw":
                raise ServiceError(
                    f"{volume.name} is {volume.format}: qcow2 and other image formats cannot "
                    "shrink safely here. Only raw volumes can shrink.",
                    field="capacity_gib",
                )
            if not shrink:
                raise ServiceError(
                    f"{as_gib(capacity)} is smaller than {volume.name} ({as_gib(volume.capacity)}): "
                    "shrinking cuts off the end of the disk and the data there is lost. "
                    "Confirm with shrink=true if you mean it.",
                    field="shrink",
                )
        with transaction.atomic():
            if capacity > volume.capacity and volume.project is not None:
                quotas.reserve(
                    volume.project,
                    disk_gib=math.ceil(capacity / GIB) - math.ceil(volume.capacity / GIB),
                )
            with change.on_host():
                info = hv.resize_volume(
                    volume.pool.host.uri,
                    volume.pool.name,
                    volume.name,
                    capacity,
                    shrink=shrink,
                    source=pinned(volume),
                )
            volume = save_volume(volume, info)
            change.done(as_gib(capacity))
    touch_pool(volume.pool)
    return volume


def delete_volume(volume: Volume, *, actor: Actor) -> None:
    """Delete a volume no VM and no overlay uses: its row, then the volume on the host."""
    with volume_change(volume, actor, "volume.delete", "delete", right=ALLOCATE_SPACE) as change:
        users = vms_using(volume.pool.host, [volume.path])
        if users:
            raise ConflictError(
                f"{volume.name} is a disk of {', '.join(sorted(users))}: detach it first."
            )
        dependants = _overlays_of(volume)
        if dependants:
            raise ConflictError(
                f"{volume.name} is the backing file of {', '.join(sorted(dependants))}: "
                "delete those overlays first."
            )
        # Row and audit first, in the transaction the host call runs in: a database that
        # cannot take the write leaves the volume where it is.
        with transaction.atomic():
            change.done()
            volume.delete()
            with change.on_host():
                try:
                    hv.delete_volume(volume.pool.host.uri, volume.pool.name, volume.name)
                except hypervisor.NotFound:
                    pass  # already gone on the host: drop the row
    touch_pool(volume.pool)


def _overlays_of(volume: Volume) -> list[str]:
    names = []
    for name, backing in Volume.objects.filter(pool__host=volume.pool.host).values_list(
        "name", "backing"
    ):
        if any(b.get("path") == volume.path for b in backing or []):
            names.append(name)
    return names


def may_copy(actor: Actor, volume: Volume, *, convert: bool) -> None:
    """PermissionDenied unless actor may clone or convert volume: a copy reads the whole
    disk, so it takes VOLUME_READ on the volume (seeing it is not enough), and to
    create volumes in its project: what no request body can change."""
    verb = "convert" if convert else "clone"
    require_right(actor, volume, VOLUME_READ, verb)
    may_create_in(actor, volume.project)


def copy_volume(
    volume: Volume,
    *,
    name: str,
    format: str | None = None,
    target_pool: StoragePool | None = None,
    actor: Actor,
) -> Job:
    """Clone a volume (same format) or convert it (another format) into a new volume, as a job."""
    verb = "convert" if format and format != volume.format else "clone"
    may_copy(actor, volume, convert=verb == "convert")
    project = volume.project
    with changing(VolumeChange.of(volume, actor, f"volume.{verb}")) as change:
        name = validate_name(name, "volume")
        dest = target_pool or volume.pool
        if dest.host_id != volume.pool.host_id:
            raise ServiceError("Copies stay on the same host: pick a pool there.", field="pool")
        require_usable_pool(dest, actor)
        if format is not None and format not in FORMATS:
            raise ServiceError(
                f"'{format}' is not a format qemu-img can write: use {', '.join(FORMATS)}.",
                field="format",
            )
        if volume.allocation > dest.available:
            raise ServiceError(
                f"Pool {dest.name} has {as_gib(dest.available)} free; the copy needs up to "
                f"{as_gib(volume.allocation)}.",
                field="pool",
            )
        fmt = format or volume.format or "raw"
        check_content(volume, "copied")
        with transaction.atomic():
            copy = placeholder(dest, name, fmt, volume.capacity, actor=actor, project=project)
            return change.queue(
                JobKind.VOLUME_CONVERT if verb == "convert" else JobKind.VOLUME_CLONE,
                {"copy": copy.pk, "format": fmt, "pool": dest.name},
                f"to {dest.name}/{name} ({fmt})",
            )


def wipe_volume(volume: Volume, *, actor: Actor) -> Job:
    """Erase a volume's data (zeros; qcow2 is recreated empty), as a job."""
    with volume_change(volume, actor, "volume.wipe", "wipe", right=ALLOCATE_SPACE) as change:
        require_trusted(volume, "wiped")
        users = vms_using(volume.pool.host, [volume.path])
        if users:
            raise ConflictError(
                f"{volume.name} is a disk of {', '.join(sorted(users))}: detach it before wiping it."
            )
        return change.queue(JobKind.VOLUME_WIPE, {})
