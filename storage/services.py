"""Storage pools and volumes: validate, act on the host, keep the rows in step.

Pools are infrastructure (admins only). Volumes belong to a project and count
against its disk quota; operators act on all of their project's volumes,
members on their own. Quick actions answer at once; copies, conversions,
wipes, preallocated creates and uploads report through a Job.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from panel import audit, hypervisor, jobs, locks, quotas, rows
from panel.choices import JobKind, JobState
from panel.exceptions import ConflictError, GoneError, ServiceError, UnavailableError
from panel.hostcalls import on_host
from panel.hypervisor import images, qemu_img
from panel.hypervisor import storage as hv
from panel.hypervisor.qemu_img import PinnedImage
from panel.models import Host, Job, Project
from panel.permissions import CHANGE, DELETE, VIEW, allowed, is_admin, require_admin, role_in

from .models import FormatSource, StoragePool, Volume

log = logging.getLogger(__name__)

GIB = 1024**3
MIB = 1024**2
MAX_CAPACITY_GIB = 64 * 1024  # 64 TiB: anything larger is a typo
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
NAME_MAX = 100

FORMATS = qemu_img.FORMATS
PREALLOCATION = {
    "off": "Thin: nothing is allocated up front; the file grows as the guest writes (default).",
    "metadata": "Thin, with qcow2's metadata allocated up front (qcow2 only): faster first writes.",
    "falloc": "Thick, lazily zeroed: the space is reserved but not written.",
    "full": "Thick, zeroed: every byte is allocated and written with zeros; slowest to create.",
}
REPORT_SECONDS = 0.5
# Quick enough to answer in the request; the others run as jobs.
QUICK_PREALLOCATION = {"off", "metadata", "falloc"}

POOL_TYPES: dict[str, dict[str, Any]] = {
    "dir": {
        "label": "Directory",
        "help": "A directory on the host holds the image files (the usual choice).",
        "fields": ["target_path"],
        "required": ["target_path"],
    },
    "fs": {
        "label": "Filesystem (block device)",
        "help": "A block device with a filesystem, mounted on the target directory.",
        "fields": ["source_devices", "source_format", "target_path"],
        "required": ["source_devices", "target_path"],
    },
    "netfs": {
        "label": "Network filesystem (NFS)",
        "help": "An NFS (or CIFS/GlusterFS) export, mounted on the target directory.",
        "fields": ["source_host", "source_path", "source_format", "target_path"],
        "required": ["source_host", "source_path", "target_path"],
    },
    "logical": {
        "label": "LVM volume group",
        "help": "Volumes are logical volumes of a volume group; build creates the group.",
        "fields": ["source_name", "source_devices"],
        "required": ["source_name"],
    },
    "disk": {
        "label": "Physical disk",
        "help": "Volumes are partitions of a whole disk; build writes its partition table.",
        "fields": ["source_devices", "source_format", "target_path"],
        "required": ["source_devices"],
    },
    "iscsi": {
        "label": "iSCSI target",
        "help": "The LUNs of an iSCSI target, logged in through the host's initiator.",
        "fields": ["source_host", "source_port", "source_path", "target_path"],
        "required": ["source_host", "source_path"],
    },
    "iscsi-direct": {
        "label": "iSCSI direct (libiscsi)",
        "help": "LUNs reached by qemu itself, without the host's initiator.",
        "fields": ["source_host", "source_port", "source_path", "initiator"],
        "required": ["source_host", "source_path", "initiator"],
    },
    "scsi": {
        "label": "SCSI host adapter",
        "help": "The LUNs a SCSI (or Fibre Channel) host adapter sees.",
        "fields": ["adapter", "target_path"],
        "required": ["adapter"],
    },
    "mpath": {
        "label": "Multipath devices",
        "help": "The host's device-mapper multipath devices (read-only pool).",
        "fields": ["target_path"],
        "required": [],
    },
    "rbd": {
        "label": "Ceph RBD",
        "help": "Images in a Ceph RADOS pool, reached over the network by qemu.",
        "fields": ["source_host", "source_port", "source_name"],
        "required": ["source_host", "source_name"],
    },
    "gluster": {
        "label": "GlusterFS",
        "help": "A Gluster volume reached by qemu's native client.",
        "fields": ["source_host", "source_name", "source_path"],
        "required": ["source_host", "source_name"],
    },
    "zfs": {
        "label": "ZFS pool",
        "help": "Volumes are zvols of a ZFS pool; build creates it from the devices.",
        "fields": ["source_name", "source_devices"],
        "required": ["source_name"],
    },
}
SOURCE_FORMATS = {
    "fs": ["auto", "ext4", "ext3", "xfs", "btrfs", "vfat"],
    "netfs": ["nfs", "glusterfs", "cifs"],
    "disk": ["gpt", "dos"],
}
FIELD_LABELS = {
    "target_path": "Target path",
    "source_host": "Server",
    "source_port": "Port",
    "source_path": "Export / directory / target IQN",
    "source_devices": "Devices",
    "source_name": "Name (VG, RBD pool, Gluster volume, ZFS pool)",
    "source_format": "Format",
    "adapter": "SCSI adapter",
    "initiator": "Initiator IQN",
}


# --- validation ---


def validate_name(name: str, what: str, field: str = "name") -> str:
    name = (name or "").strip()
    if not name:
        raise ServiceError(f"Give the {what} a name.", field=field)
    if len(name) > NAME_MAX:
        raise ServiceError(f"The {what} name is longer than {NAME_MAX} characters.", field=field)
    if "\x00" in name or "/" in name or ".." in name or not NAME_RE.match(name):
        raise ServiceError(
            f"'{name[:40]}' is not a valid {what} name: use letters, digits, '.', '_', '+' "
            "and '-', start with a letter or digit, no '/' and no '..'.",
            field=field,
        )
    return name


def _clean_path(path: str, field: str) -> str:
    path = (path or "").strip()
    if "\x00" in path or not path.startswith("/") or os.path.normpath(path) != path.rstrip("/"):
        raise ServiceError(
            f"'{path[:80]}' is not a clean absolute path (no '..', no '//').", field=field
        )
    return os.path.normpath(path)


def allowed_path(path: str, field: str = "target_path") -> str:
    """A directory under one of the admin-allowed storage roots (PANEL_STORAGE_ROOTS)."""
    path = _clean_path(path, field)
    roots = [os.path.normpath(r) for r in settings.PANEL_STORAGE_ROOTS]
    if not any(path == r or path.startswith(r + "/") for r in roots):
        raise ServiceError(
            f"{path} is outside the directories allowed for storage ({', '.join(roots)}). "
            "Pick a path under one of them, or ask an admin to add a root "
            "(PANEL_STORAGE_ROOTS).",
            field=field,
        )
    return path


def _device(path: str, field: str) -> str:
    path = _clean_path(path, field)
    if not path.startswith("/dev/"):
        raise ServiceError(f"{path} is not a device path: use /dev/...", field=field)
    return path


def capacity_bytes(value: Any, field: str = "capacity_gib") -> int:
    """GiB (decimals allowed) as bytes rounded up to whole MiB; refuses zero, negative, absurd."""
    try:
        gib = float(value)
    except (TypeError, ValueError):
        raise ServiceError(
            "Give the size as a number of GiB, e.g. 10 or 0.5.", field=field
        ) from None
    if not math.isfinite(gib) or gib <= 0:
        raise ServiceError("The size must be more than 0 GiB.", field=field)
    if gib > MAX_CAPACITY_GIB:
        raise ServiceError(
            f"{gib:g} GiB is more than the {MAX_CAPACITY_GIB} GiB the panel allows for one volume.",
            field=field,
        )
    return math.ceil(gib * GIB / MIB) * MIB


def _gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


def clean_pool_spec(data: dict[str, Any]) -> hypervisor.PoolSpec:
    """A PoolSpec from form or API input, with exactly the fields the type needs."""
    kind = str(data.get("type") or "")
    if kind not in POOL_TYPES:
        raise ServiceError(
            f"Unknown pool type '{kind}': use one of {', '.join(POOL_TYPES)}.", field="type"
        )
    name = validate_name(str(data.get("name") or ""), "pool")
    info = POOL_TYPES[kind]
    source = data.get("source") if isinstance(data.get("source"), dict) else {}
    values: dict[str, Any] = {}
    for key in info["fields"]:
        raw = data.get(key, source.get(key.removeprefix("source_"), source.get(key, "")))
        if key == "source_devices":
            items = (
                raw if isinstance(raw, list | tuple) else str(raw or "").replace(",", " ").split()
            )
            values[key] = tuple(_device(str(d), key) for d in items)
        elif key == "source_port":
            if raw in ("", None):
                continue
            try:
                port = int(raw)
            except (TypeError, ValueError):
                raise ServiceError("The port must be a number.", field=key) from None
            if not 0 < port < 65536:
                raise ServiceError("The port must be between 1 and 65535.", field=key)
            values[key] = port
        else:
            values[key] = str(raw or "").strip()
    for key in info["required"]:
        if not values.get(key):
            raise ServiceError(
                f"A {info['label']} pool needs {FIELD_LABELS[key].lower()}.", field=key
            )
    if values.get("target_path"):
        if kind in ("dir", "fs", "netfs"):
            values["target_path"] = allowed_path(values["target_path"])
        else:
            values["target_path"] = _clean_path(values["target_path"], "target_path")
    fmt = values.get("source_format")
    if fmt and fmt not in SOURCE_FORMATS.get(kind, []):
        raise ServiceError(
            f"'{fmt}' is not a format for a {info['label']} pool: use "
            f"{', '.join(SOURCE_FORMATS.get(kind, []))}.",
            field="source_format",
        )
    for key in ("source_host", "source_name", "source_path", "adapter", "initiator"):
        value = values.get(key, "")
        if value and (len(value) > 255 or any(c in value for c in "<>&\"'\x00 ")):
            raise ServiceError(
                f"{FIELD_LABELS[key]} contains characters that are not allowed.", field=key
            )
    return hypervisor.PoolSpec(name=name, type=kind, **values)


# --- sync ---


def _pool_defaults(info: hypervisor.PoolInfo, now: Any) -> dict[str, Any]:
    return {
        "uuid": info.uuid or None,
        "type": info.type,
        "state": info.state,
        "target_path": info.target_path,
        "capacity": info.capacity,
        "allocation": info.allocation,
        "available": info.available,
        "autostart": info.autostart,
        "persistent": info.persistent,
        "synced": now,
    }


RAW_FORMATS = ("raw", "iso", "")


def observed(v: hypervisor.VolumeInfo, now: Any, fmt: str) -> dict[str, Any]:
    """What the host may tell about a volume whose format is recorded: where it is and
    how large. A raw image is as large as its file; libvirt's capacity would be read
    from a header the content can fake."""
    raw = fmt in RAW_FORMATS
    return {
        "key": v.key,
        "path": v.path,
        "capacity": v.physical if raw and v.physical else v.capacity,
        "allocation": v.allocation,
        "synced": now,
    }


def _volume_defaults(v: hypervisor.VolumeInfo, now: Any) -> dict[str, Any]:
    """A volume found on the host: libvirt's view of it, kept as found (not trusted)."""
    return {
        **observed(v, now, v.format),
        "format": v.format,
        "format_source": FormatSource.FOUND,
        "backing": [{"path": b.path, "format": b.format} for b in v.backing],
    }


def _sync_volume(pool: StoragePool, v: hypervisor.VolumeInfo, now: Any) -> None:
    """A new row is found (untrusted); a known one takes only what the host may tell
    (a found one keeps following libvirt's view until an admin assigns it)."""
    row, created = Volume.objects.get_or_create(
        pool=pool, name=v.name, defaults=_volume_defaults(v, now)
    )
    if created:
        return
    values = (
        _volume_defaults(v, now)
        if row.format_source == FormatSource.FOUND
        else observed(v, now, row.format)
    )
    Volume.objects.filter(pk=row.pk).update(**values)


def sync_pools(
    host: Host, pools: Iterable[hypervisor.PoolInfo], volumes: Iterable[hypervisor.VolumeInfo]
) -> dict[str, int]:
    """Make the host's pool and volume rows match what it reports."""
    pools = list(pools)
    volumes = list(volumes)
    now = timezone.now()
    with transaction.atomic():
        by_name: dict[str, StoragePool] = {}
        for info in pools:
            pool, _ = StoragePool.objects.update_or_create(
                host=host, name=info.name, defaults=_pool_defaults(info, now)
            )
            by_name[info.name] = pool
        StoragePool.objects.filter(host=host).exclude(name__in=by_name).delete()
        for pool_name, pool in by_name.items():
            vols = [v for v in volumes if v.pool == pool_name]
            for v in vols:
                _sync_volume(pool, v, now)
            if pool.state == "active":
                # Volumes of an inactive pool can't be listed: keep what we knew. Rows
                # still being created (never synced) are left to their job.
                Volume.objects.filter(pool=pool, synced__isnull=False).exclude(
                    name__in=[v.name for v in vols]
                ).delete()
    return {"pools": len(pools), "volumes": len(volumes)}


def _save_pool(host: Host, info: hypervisor.PoolInfo) -> StoragePool:
    pool, _ = StoragePool.objects.update_or_create(
        host=host, name=info.name, defaults=_pool_defaults(info, timezone.now())
    )
    return pool


def refresh_pool_row(pool: StoragePool) -> StoragePool:
    """Read the pool and (when running) its volumes from the host into the rows."""
    with on_host(pool.host, f"Pool {pool.name}"):
        info = hv.get_pool(pool.host.uri, pool.name)
        vols = hv.list_volumes(pool.host.uri, pool.name) if info.state == "active" else None
    now = timezone.now()
    with transaction.atomic():
        pool = _save_pool(pool.host, info)
        if vols is not None:
            for v in vols:
                _sync_volume(pool, v, now)
            Volume.objects.filter(pool=pool, synced__isnull=False).exclude(
                name__in=[v.name for v in vols]
            ).delete()
    return pool


def _save_volume(volume: Volume, info: hypervisor.VolumeInfo) -> Volume:
    """The host's sizes and path on a row the panel keeps: format and chain stay as
    recorded."""
    values = observed(info, timezone.now(), volume.format)
    for key, value in values.items():
        setattr(volume, key, value)
    if volume._state.adding:
        volume.save()
    elif not rows.save_if_present(volume, values):
        raise GoneError(f"Volume {volume.name} was deleted meanwhile.")
    return volume


# --- what an image's content may reach ---

# How deep a chain of overlays uploaded onto the project's own volumes may go.
MAX_CHAIN = 8
UNTRUSTED_HELP = (
    "The panel never lets an image's content decide: upload a self-contained image "
    "(qemu-img convert -O qcow2, no backing file, no data file), or base it on a volume "
    "of the same project in the same pool."
)


def trusted(volume: Volume) -> bool:
    """Whether the volume's format and chain were set by the panel, its owner or an admin
    (not guessed from its content on the host)."""
    return volume.format_source != FormatSource.FOUND


def require_trusted(volume: Volume, what: str) -> None:
    """ConflictError for a volume found on a host and never assigned: its format is only
    libvirt's guess from its content."""
    if not trusted(volume):
        raise ConflictError(
            f"{volume.name} was found on {volume.pool.host.name} and has not been assigned: "
            f"it cannot be {what} until an admin assigns it to a project with its format "
            "(the panel then checks its content)."
        )


def recorded_chain(volume: Volume) -> tuple[hypervisor.BackingInfo, ...]:
    """The backing chain the panel recorded for a trusted volume (nearest first)."""
    if not trusted(volume) or volume.format in RAW_FORMATS:
        return ()
    return as_backing(volume.backing)


def as_backing(chain: Iterable[dict[str, str]] | None) -> tuple[hypervisor.BackingInfo, ...]:
    """A recorded chain ([{path, format}]) as the hypervisor takes it."""
    return tuple(
        hypervisor.BackingInfo(path=str(b.get("path", "")), format=str(b.get("format", "")))
        for b in chain or []
        if b.get("path")
    )


def pinned(volume: Volume) -> PinnedImage:
    """The volume as qemu must open it: recorded format and chain, nothing from its header."""
    return PinnedImage(volume.path, volume.format or "raw", recorded_chain(volume))


def record_made(host: Host, path: str, fmt: str, chain: list[dict[str, str]]) -> None:
    """The row of a volume the panel just made at path (a VM's cloned, restored or moved
    disk): its format and chain as made, never as libvirt reads the new file."""
    try:
        info = hv.volume_by_path(host.uri, path)
    except hypervisor.HypervisorError:
        return  # not in a pool: nothing to record
    pool = StoragePool.objects.filter(host=host, name=info.pool).first()
    if pool is None:
        return
    now = timezone.now()
    Volume.objects.update_or_create(
        pool=pool,
        name=info.name,
        defaults={
            **observed(info, now, fmt),
            "format": fmt,
            "format_source": FormatSource.CREATED,
            "backing": chain if fmt not in RAW_FORMATS else [],
        },
    )


def recorded_chains(host: Host, paths: Iterable[str]) -> dict[str, tuple[Any, ...]]:
    """{path: recorded chain} of the trusted volumes at paths on host."""
    rows = Volume.objects.filter(pool__host=host, path__in=list(paths)).select_related("pool")
    return {v.path: recorded_chain(v) for v in rows if trusted(v)}


def check_vm_disks(host: Host, disks: Iterable[dict[str, Any]], what: str) -> None:
    """Before qemu opens a VM's disks (boot, backup): each disk that is a volume the panel
    keeps must be defined as its recorded format, and its header pass check_content."""
    disks = [d for d in disks if d.get("device", "disk") == "disk" and d.get("source")]
    rows = {
        v.path: v
        for v in Volume.objects.filter(
            pool__host=host, path__in=[d["source"] for d in disks]
        ).select_related("pool__host", "project")
    }
    for disk in disks:
        volume = rows.get(disk["source"])
        if volume is None or not trusted(volume):
            continue
        defined = disk.get("format") or "raw"
        recorded = volume.format or "raw"
        same = {defined, recorded} <= {"raw", "iso"} or defined == recorded
        if not same:
            raise ServiceError(
                f"Disk {disk.get('target', '')} is defined as {defined}, but {volume.name} is "
                f"recorded as {recorded}: it cannot be {what} until its definition names the "
                "recorded format (detach it and attach it again).",
                field="disks",
            )
        check_content(volume, what)


def _base_volume(volume: Volume, path: str) -> Volume | None:
    """The trusted volume at path in volume's pool and project, if there is one."""
    if volume.project_id is None:
        return None
    base = Volume.objects.filter(pool=volume.pool, path=path, project=volume.project).first()
    return base if base is not None and trusted(base) and base.pk != volume.pk else None


def _refuse(volume: Volume, what: str, problems: list[str]) -> None:
    raise ServiceError(
        f"{volume.name} cannot be {what}: {'; '.join(problems)}. {UNTRUSTED_HELP}",
        field="volume",
    )


def check_content(
    volume: Volume, what: str, *, declared: str | None = None, depth: int = 0
) -> list[dict[str, str]]:
    """Check the volume's header before qemu reads it: ServiceError (saying why) when its
    content is not its recorded (or declared) format, or names any file (backing file,
    data file, extent) but the panel's recorded chain or a volume of the same project in
    that pool. Returns the chain to record and pin ([{path, format}], nearest first).

    declared: the format an upload or an assignment declares (raw content must then be
    raw, not a disguised image); otherwise the recorded one, and a raw volume needs no
    check (qemu reads it as bytes, whatever a guest wrote into it)."""
    if declared is None:
        require_trusted(volume, what)
    fmt = declared or volume.format or "raw"
    if declared is None and fmt in RAW_FORMATS:
        return []
    if depth > MAX_CHAIN:
        _refuse(volume, what, [f"its backing chain is deeper than {MAX_CHAIN} volumes"])
    host = volume.pool.host
    with on_host(host, f"Volume {volume.name}"):
        facts = hv.inspect_volume(host.uri, volume.pool.name, volume.name, fmt)
    return _judge(volume, facts, what, declared=declared, depth=depth)


def check_head(volume: Volume, head: bytes, *, whole: bool, what: str) -> list[dict[str, str]]:
    """check_content for the first bytes of an upload into volume, before they are
    written: the volume's format is what its owner declared when making it."""
    facts = images.inspect_head(head, volume.format or "raw", whole=whole)
    return _judge(volume, facts, what, declared=volume.format or "raw", depth=0)


def _judge(
    volume: Volume, facts: images.ImageFacts, what: str, *, declared: str | None, depth: int
) -> list[dict[str, str]]:
    problems = list(facts.problems)
    if declared is None:
        # A format the inspector cannot vouch for (QED) is refused when declared; one the
        # panel made itself holds only what qemu wrote.
        problems = [p for p in problems if p != images.CHECKS["banned"]]
    chain: list[dict[str, str]] = []
    if facts.backing_file:
        path = images.backing_path(volume.path, facts.backing_file)
        recorded = [{"path": b.path, "format": b.format} for b in recorded_chain(volume)]
        base = _base_volume(volume, path)
        if declared is None and recorded and recorded[0]["path"] == path:
            chain = recorded
        elif base is not None:
            try:
                below = check_content(base, what, depth=depth + 1)
            except ServiceError as exc:
                problems.append(f"its backing volume {base.name} is refused ({exc.message})")
            else:
                chain = [{"path": base.path, "format": base.format or "raw"}, *below]
        else:
            project = volume.project.name if volume.project else "its project"
            problems.append(
                f"its header names the backing file {path[:200]}, which is not a volume of "
                f"{project} in pool {volume.pool.name}"
            )
    if problems:
        _refuse(volume, what, problems)
    return chain


# --- pools ---


def create_pool(
    host: Host,
    data: dict[str, Any],
    *,
    actor: Any,
    persistent: bool = True,
    build: bool = True,
    start: bool = True,
    autostart: bool = False,
    source_ip: str | None = None,
) -> StoragePool:
    """Define (or create, if transient) a pool on host, optionally build and start it."""
    require_admin(actor, "create storage pools")
    with audit.refusals_recorded(actor, "pool.create", host, source_ip=source_ip):
        spec = clean_pool_spec(data)
        if StoragePool.objects.filter(host=host, name=spec.name).exists():
            raise ServiceError(f"{host.name} already has a pool named {spec.name}.", field="name")
        if spec.target_path and spec.type in ("dir", "fs", "netfs"):
            clash = StoragePool.objects.filter(host=host, target_path=spec.target_path).first()
            if clash is not None:
                raise ServiceError(
                    f"Pool {clash.name} already uses {spec.target_path}.", field="target_path"
                )
        with on_host(host, f"Pool {spec.name}"):
            caps = hv.pool_capabilities(host.uri)
            if caps and not caps.get(spec.type, False):
                raise ServiceError(
                    f"The libvirt on {host.name} cannot run {POOL_TYPES[spec.type]['label']} "
                    "pools (its storage driver for that type is not installed).",
                    field="type",
                )
            info = hv.define_pool(
                host.uri,
                spec,
                persistent=persistent,
                build=build,
                start=start or not persistent,
                autostart=autostart and persistent,
            )
        with transaction.atomic():
            pool = _save_pool(host, info)
            audit.record(
                actor,
                "pool.create",
                pool,
                source_ip=source_ip,
                detail=f"{spec.type} {'persistent' if persistent else 'transient'}"
                + (f" at {spec.target_path}" if spec.target_path else ""),
            )
    if info.state == "active":
        refresh_pool_row(pool)
    return pool


POOL_ACTIONS = ("build", "start", "stop", "refresh")


def pool_action(
    pool: StoragePool, action: str, *, actor: Any, source_ip: str | None = None
) -> StoragePool | None:
    """build, start, stop or refresh; None when a transient pool is gone after stop."""
    require_admin(actor, f"{action} storage pools")
    if action not in POOL_ACTIONS:
        raise ServiceError(f"Unknown pool action '{action}': use {', '.join(POOL_ACTIONS)}.")
    with audit.refusals_recorded(actor, f"pool.{action}", pool, source_ip=source_ip):
        with on_host(pool.host, f"Pool {pool.name}"):
            info = hv.pool_action(pool.host.uri, pool.name, action)
        with transaction.atomic():
            audit.record(actor, f"pool.{action}", pool, source_ip=source_ip)
            if info.state == "gone":
                pool.delete()
                return None
            pool = _save_pool(pool.host, info)
    if info.state == "active":
        pool = refresh_pool_row(pool)
    return pool


def set_pool_autostart(
    pool: StoragePool, on: bool, *, actor: Any, source_ip: str | None = None
) -> StoragePool:
    require_admin(actor, "change storage pools")
    with audit.refusals_recorded(actor, "pool.autostart", pool, source_ip=source_ip):
        with on_host(pool.host, f"Pool {pool.name}"):
            info = hv.set_pool_autostart(pool.host.uri, pool.name, on)
        with transaction.atomic():
            pool = _save_pool(pool.host, info)
            audit.record(
                actor, "pool.autostart", pool, detail="on" if on else "off", source_ip=source_ip
            )
    return pool


def delete_pool(
    pool: StoragePool, *, actor: Any, delete_target: bool = False, source_ip: str | None = None
) -> None:
    """Stop and undefine the pool; its directory (or VG) is removed only when asked."""
    require_admin(actor, "delete storage pools")
    with audit.refusals_recorded(actor, "pool.delete", pool, source_ip=source_ip):
        users = vms_using(pool.host, [v.path for v in pool.volumes.all() if v.path])
        if users:
            raise ConflictError(
                f"Pool {pool.name} holds disks of {', '.join(sorted(users))}: "
                "detach or delete those first."
            )
        if delete_target and pool.volumes.exists():
            raise ConflictError(
                f"Pool {pool.name} still has {pool.volumes.count()} volumes: delete them "
                "before deleting the pool's directory, or keep the directory."
            )
        with on_host(pool.host, f"Pool {pool.name}"):
            hv.delete_pool(pool.host.uri, pool.name, delete_target=delete_target)
        with transaction.atomic():
            audit.record(
                actor,
                "pool.delete",
                pool,
                detail="target deleted" if delete_target else "target kept",
                source_ip=source_ip,
            )
            pool.delete()


# --- volumes ---


def vms_using(host: Host, paths: Iterable[str]) -> dict[str, str]:
    """{VM name: path} for the VMs on host whose disks use one of paths."""
    from vms.models import VirtualMachine

    wanted = set(paths)
    found = {}
    for name, disks in VirtualMachine.objects.filter(host=host).values_list("name", "disks"):
        for disk in disks or []:
            if disk.get("source") in wanted:
                found[name] = disk["source"]
    return found


def _require(actor: Any, volume: Volume, action: str, verb: str) -> None:
    if not allowed(actor, volume, action):
        raise PermissionDenied(f"Your role does not allow you to {verb} {volume.name}.")


def _can_create_in(actor: Any, project: Project | None) -> None:
    if is_admin(actor):
        return
    if project is None:
        raise ServiceError("Choose the project the volume belongs to.", field="project")
    if role_in(actor, project) not in ("operator", "member"):
        raise PermissionDenied(f"Your role does not allow creating volumes in {project.name}.")


def _not_busy(volume: Volume) -> None:
    locks.refuse_if_busy(f"volume:{volume.pk}", volume.name)


def _usable_pool(pool: StoragePool, actor: Any) -> None:
    from panel.permissions import restrict

    if not restrict(StoragePool.objects.filter(pk=pool.pk), actor, VIEW).exists():
        raise ServiceError(f"Your project may not use pool {pool.name}.", field="pool")
    if pool.state != "active":
        raise ConflictError(f"Pool {pool.name} is not running: an admin must start it first.")


def _placeholder(
    pool: StoragePool,
    name: str,
    fmt: str,
    capacity: int,
    *,
    actor: Any,
    project: Project | None,
) -> Volume:
    """The volume's row, taken with its quota in the caller's transaction (synced empty)."""
    if Volume.objects.filter(pool=pool, name=name).exists():
        raise ServiceError(f"Pool {pool.name} already has a volume named {name}.", field="name")
    if project is not None:
        quotas.reserve(project, disk_gib=math.ceil(capacity / GIB))
    owner = actor if getattr(actor, "is_authenticated", False) else None
    return Volume.objects.create(
        pool=pool,
        name=name,
        format=fmt,
        format_source=FormatSource.CREATED,
        capacity=capacity,
        project=project,
        owner=owner,
    )


def create_volume(
    pool: StoragePool,
    *,
    name: str,
    format: str = "qcow2",
    capacity_gib: Any = None,
    preallocation: str = "off",
    backing_volume: Volume | None = None,
    project: Project | None = None,
    actor: Any,
    source_ip: str | None = None,
) -> Volume | Job:
    """Create a volume: at once, or as a job for full preallocation (it writes every byte)."""
    _can_create_in(actor, project)
    with audit.refusals_recorded(
        actor, "volume.create", pool, project=project, source_ip=source_ip
    ):
        name = validate_name(name, "volume")
        _usable_pool(pool, actor)
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
        backing_path = backing_format = ""
        chain: list[dict[str, str]] = []
        if backing_volume is not None:
            # An overlay reads its backing volume whole: one the actor may change, or an
            # image an admin published as shared.
            if not backing_volume.shared and not allowed(actor, backing_volume, CHANGE):
                raise PermissionDenied(
                    f"Your role does not allow you to read {backing_volume.name}: an overlay "
                    "needs a backing volume you may change, or a shared image."
                )
            if format != "qcow2":
                raise ServiceError("Only qcow2 volumes can have a backing volume.", field="format")
            if backing_volume.pool.host_id != pool.host_id:
                raise ServiceError(
                    "The backing volume must be on the same host.", field="backing_volume"
                )
            # Its header names the backing volume with its format; the chain below is the
            # one the panel recorded and checked, pinned wherever the overlay is opened.
            below = check_content(backing_volume, "the backing volume of an overlay")
            chain = [{"path": backing_volume.path, "format": backing_volume.format or "raw"}]
            chain += below
            backing_path, backing_format = backing_volume.path, backing_volume.format or "raw"
            if capacity_gib in (None, ""):
                capacity = backing_volume.capacity
            else:
                capacity = capacity_bytes(capacity_gib)
            if capacity < backing_volume.capacity:
                raise ServiceError(
                    f"An overlay cannot be smaller than its backing volume ({_gib(backing_volume.capacity)}).",
                    field="capacity_gib",
                )
        else:
            capacity = capacity_bytes(capacity_gib)
        if capacity > pool.capacity > 0:
            raise ServiceError(
                f"{_gib(capacity)} is more than pool {pool.name} holds ({_gib(pool.capacity)}).",
                field="capacity_gib",
            )
        if preallocation != "off" and capacity > pool.available:
            raise ServiceError(
                f"Pool {pool.name} has {_gib(pool.available)} free: a preallocated "
                f"{_gib(capacity)} volume does not fit. Choose a smaller size or thin (off).",
                field="capacity_gib",
            )
        spec = hypervisor.VolumeSpec(
            name=name,
            capacity=capacity,
            format=format,
            preallocation=preallocation,
            backing_path=backing_path,
            backing_format=backing_format,
        )
        with transaction.atomic():
            volume = _placeholder(pool, name, format, capacity, actor=actor, project=project)
            if chain:
                volume.backing = chain
                volume.save(update_fields=["backing"])
            if preallocation not in QUICK_PREALLOCATION:
                job = _queue(
                    volume,
                    JobKind.VOLUME_CREATE,
                    {"spec": _spec_dict(spec)},
                    actor=actor,
                    action="volume.create",
                    detail=f"{format} {_gib(capacity)} {preallocation}",
                    source_ip=source_ip,
                )
                return job
            # The quick create runs inside the transaction that holds the row: when the
            # database cannot take the write, libvirt is never asked; when libvirt
            # refuses, the row goes with the rollback.
            with on_host(pool.host, f"Volume {name}"):
                info = hv.create_volume(pool.host.uri, pool.name, spec)
            volume = _save_volume(volume, info)
            audit.record(
                actor,
                "volume.create",
                volume,
                detail=f"{format} {_gib(capacity)} {preallocation}"
                + (f" backed by {backing_path}" if backing_path else ""),
                source_ip=source_ip,
            )
    _touch_pool(pool)
    return volume


# How long the cleanup after a dead worker waits for libvirt to finish writing a volume.
ABANDONED_WAIT_SECONDS = 600


def _spec_dict(spec: hypervisor.VolumeSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "capacity": spec.capacity,
        "format": spec.format,
        "preallocation": spec.preallocation,
        "backing_path": spec.backing_path,
        "backing_format": spec.backing_format,
    }


def _touch_pool(pool: StoragePool) -> None:
    """Pool sizes after a change; a failure here leaves the old figures."""
    try:
        info = hv.get_pool(pool.host.uri, pool.name)
    except hypervisor.HypervisorError:
        return
    _save_pool(pool.host, info)


def _queue(
    volume: Volume,
    kind: str,
    spec: dict[str, Any],
    *,
    actor: Any,
    action: str,
    detail: str,
    source_ip: str | None,
) -> Job:
    from .tasks import volume_job_task

    return jobs.queue(
        kind,
        volume_job_task,
        volume,
        target=f"volume:{volume.pk}",
        spec={"volume": volume.pk, "volume_name": volume.name, **spec},
        actor=actor,
        host=volume.pool.host,
        project=volume.project,
        action=action,
        detail=detail,
        source_ip=source_ip,
    )


def resize_volume(
    volume: Volume,
    capacity_gib: Any,
    *,
    shrink: bool = False,
    actor: Any,
    source_ip: str | None = None,
) -> Volume:
    """Grow a volume; shrinking needs shrink=True, and qcow2 volumes never shrink."""
    _require(actor, volume, CHANGE, "resize")
    with audit.refusals_recorded(actor, "volume.resize", volume, source_ip=source_ip):
        _not_busy(volume)
        require_trusted(volume, "resized")
        capacity = capacity_bytes(capacity_gib)
        if capacity == volume.capacity:
            raise ServiceError(f"{volume.name} is already {_gib(capacity)}.", field="capacity_gib")
        if capacity < volume.capacity:
            if volume.format != "raw":
                raise ServiceError(
                    f"{volume.name} is {volume.format}: qcow2 and other image formats cannot "
                    "shrink safely here. Only raw volumes can shrink.",
                    field="capacity_gib",
                )
            if not shrink:
                raise ServiceError(
                    f"{_gib(capacity)} is smaller than {volume.name} ({_gib(volume.capacity)}): "
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
            with on_host(volume.pool.host, f"Volume {volume.name}"):
                info = hv.resize_volume(
                    volume.pool.host.uri,
                    volume.pool.name,
                    volume.name,
                    capacity,
                    shrink=shrink,
                    source=pinned(volume),
                )
            volume = _save_volume(volume, info)
            audit.record(actor, "volume.resize", volume, detail=_gib(capacity), source_ip=source_ip)
    _touch_pool(volume.pool)
    return volume


def delete_volume(volume: Volume, *, actor: Any, source_ip: str | None = None) -> None:
    _require(actor, volume, DELETE, "delete")
    with audit.refusals_recorded(actor, "volume.delete", volume, source_ip=source_ip):
        _not_busy(volume)
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
            audit.record(
                actor, "volume.delete", volume, project=volume.project, source_ip=source_ip
            )
            volume.delete()
            with on_host(volume.pool.host, f"Volume {volume.name}"):
                try:
                    hv.delete_volume(volume.pool.host.uri, volume.pool.name, volume.name)
                except hypervisor.NotFound:
                    pass  # already gone on the host: drop the row
    _touch_pool(volume.pool)


def _overlays_of(volume: Volume) -> list[str]:
    names = []
    for name, backing in Volume.objects.filter(pool__host=volume.pool.host).values_list(
        "name", "backing"
    ):
        if any(b.get("path") == volume.path for b in backing or []):
            names.append(name)
    return names


def may_copy(actor: Any, volume: Volume, *, convert: bool) -> None:
    """PermissionDenied unless actor may clone or convert volume: a copy reads the whole
    disk, so it takes the right to change the volume (seeing it is not enough), and to
    create volumes in its project: what no request body can change."""
    verb = "convert" if convert else "clone"
    _require(actor, volume, CHANGE, verb)
    _can_create_in(actor, volume.project)


def copy_volume(
    volume: Volume,
    *,
    name: str,
    format: str | None = None,
    target_pool: StoragePool | None = None,
    actor: Any,
    source_ip: str | None = None,
) -> Job:
    """Clone a volume (same format) or convert it (another format) into a new volume, as a job."""
    verb = "convert" if format and format != volume.format else "clone"
    may_copy(actor, volume, convert=verb == "convert")
    project = volume.project
    with audit.refusals_recorded(actor, f"volume.{verb}", volume, source_ip=source_ip):
        name = validate_name(name, "volume")
        dest = target_pool or volume.pool
        if dest.host_id != volume.pool.host_id:
            raise ServiceError("Copies stay on the same host: pick a pool there.", field="pool")
        _usable_pool(dest, actor)
        if format is not None and format not in FORMATS:
            raise ServiceError(
                f"'{format}' is not a format qemu-img can write: use {', '.join(FORMATS)}.",
                field="format",
            )
        if volume.allocation > dest.available:
            raise ServiceError(
                f"Pool {dest.name} has {_gib(dest.available)} free; the copy needs up to "
                f"{_gib(volume.allocation)}.",
                field="pool",
            )
        fmt = format or volume.format or "raw"
        check_content(volume, "copied")
        with transaction.atomic():
            copy = _placeholder(dest, name, fmt, volume.capacity, actor=actor, project=project)
            return _queue(
                volume,
                JobKind.VOLUME_CONVERT if verb == "convert" else JobKind.VOLUME_CLONE,
                {"copy": copy.pk, "format": fmt, "pool": dest.name},
                actor=actor,
                action=f"volume.{verb}",
                detail=f"to {dest.name}/{name} ({fmt})",
                source_ip=source_ip,
            )


def wipe_volume(volume: Volume, *, actor: Any, source_ip: str | None = None) -> Job:
    """Erase a volume's data (zeros; qcow2 is recreated empty), as a job."""
    _require(actor, volume, CHANGE, "wipe")
    with audit.refusals_recorded(actor, "volume.wipe", volume, source_ip=source_ip):
        _not_busy(volume)
        require_trusted(volume, "wiped")
        users = vms_using(volume.pool.host, [volume.path])
        if users:
            raise ConflictError(
                f"{volume.name} is a disk of {', '.join(sorted(users))}: detach it before wiping it."
            )
        with transaction.atomic():
            return _queue(
                volume,
                JobKind.VOLUME_WIPE,
                {},
                actor=actor,
                action="volume.wipe",
                detail="",
                source_ip=source_ip,
            )


def volume_details(volume: Volume) -> Volume:
    """qemu-img's view (local host) or libvirt's (remote), saved on the row."""
    host = volume.pool.host
    with on_host(host, f"Volume {volume.name}"):
        info = hv.get_volume(host.uri, volume.pool.name, volume.name)
        volume = _save_volume(volume, info)
        refused = ""
        if hypervisor.is_local(host.uri) and trusted(volume):
            try:
                check_content(volume, "read by qemu-img")
            except ServiceError as exc:
                refused = exc.message
        if hypervisor.is_local(host.uri) and trusted(volume) and not refused:
            # Opened as recorded (format and chain given), so the header decides nothing.
            chain = qemu_img.info(host.uri, pinned(volume))
            volume.info = {
                "source": "qemu-img",
                "chain": chain,
                "read_at": timezone.now().isoformat(),
            }
        else:
            volume.info = {
                "source": "libvirt",
                "chain": [
                    {
                        "path": info.path,
                        "format": info.format,
                        "virtual_size": info.capacity,
                        "actual_size": info.allocation,
                        "backing_file": info.backing[0].path if info.backing else "",
                        "snapshots": [],
                    }
                ],
                "read_at": timezone.now().isoformat(),
            }
            if refused or not trusted(volume):
                # libvirt's guess from the content: shown as such, never acted on.
                volume.info["untrusted"] = refused or (
                    "Found on the host: the format and backing file above are libvirt's "
                    "guess from the content, not trusted until an admin assigns the volume."
                )
    if not rows.save_if_present(volume, ["info"]):
        raise GoneError(f"Volume {volume.name} was deleted meanwhile.")
    return volume


def check_volume(volume: Volume, *, actor: Any, source_ip: str | None = None) -> Volume:
    """`qemu-img check`, result saved on the row."""
    _require(actor, volume, VIEW, "check")
    with audit.refusals_recorded(actor, "volume.check", volume, source_ip=source_ip):
        # qemu-img opens only what passed the header check, as its recorded format.
        check_content(volume, "checked")
        with on_host(volume.pool.host, f"Volume {volume.name}"):
            result = qemu_img.check(volume.pool.host.uri, volume.path, volume.format or "raw")
        volume.check_result = {**result, "checked_at": timezone.now().isoformat()}
        with transaction.atomic():
            if not rows.save_if_present(volume, ["check_result"]):
                raise GoneError(f"Volume {volume.name} was deleted meanwhile.")
            audit.record(
                actor, "volume.check", volume, detail=str(result["summary"]), source_ip=source_ip
            )
    return volume


DECLARABLE = FORMATS


def assign_volume(
    volume: Volume,
    project: Project | None,
    format: str,
    *,
    actor: Any,
    source_ip: str | None = None,
) -> Volume:
    """An admin takes a volume found on a host into the panel: it joins project (counted
    against its disk quota; None: it stays the admins', e.g. an image to publish) with
    the format the admin declares, once its content is checked as that format (nothing
    its header names outside the project's volumes)."""
    require_admin(actor, "assign volumes found on a host")
    with audit.refusals_recorded(
        actor, "volume.assign", volume, project=project, source_ip=source_ip
    ):
        if format not in DECLARABLE:
            raise ServiceError(
                f"Declare the volume's format: one of {', '.join(DECLARABLE)} ('{format[:20]}' "
                "is not one). The panel does not take the format from the content.",
                field="format",
            )
        if trusted(volume):
            raise ConflictError(
                f"{volume.name} is already assigned ({volume.get_format_source_display()}): "
                "only volumes found on a host are assigned."
            )
        _not_busy(volume)
        volume.project = project  # the chain may reach this project's volumes only
        chain = check_content(volume, "assigned", declared=format)
        host = volume.pool.host
        with on_host(host, f"Volume {volume.name}"):
            info = hv.get_volume(host.uri, volume.pool.name, volume.name)
        with transaction.atomic():
            values = observed(info, timezone.now(), format)
            if project is not None:
                quotas.reserve(project, disk_gib=math.ceil(values["capacity"] / GIB))
            for key, value in values.items():
                setattr(volume, key, value)
            volume.format, volume.format_source, volume.backing = (
                format,
                FormatSource.ASSIGNED,
                chain,
            )
            fields = [*values, "project", "format", "format_source", "backing"]
            if not rows.save_if_present(volume, fields):
                raise GoneError(f"Volume {volume.name} was deleted meanwhile.")
            audit.record(
                actor,
                "volume.assign",
                volume,
                detail=f"to {project.name if project else 'no project'} as {format}"
                + (f" backed by {chain[0]['path']}" if chain else ""),
                source_ip=source_ip,
            )
    return volume


def set_shared(volume: Volume, shared: bool, *, actor: Any, source_ip: str | None = None) -> Volume:
    """Publish a volume (ISO, cloud image) to every project, or withdraw it."""
    require_admin(actor, "publish shared images")
    with transaction.atomic():
        volume.shared = shared
        if not rows.save_if_present(volume, ["shared"]):
            raise GoneError(f"Volume {volume.name} was deleted meanwhile.")
        audit.record(
            actor, "volume.share", volume, detail="on" if shared else "off", source_ip=source_ip
        )
    return volume


# --- upload and download ---


def start_upload(volume: Volume, length: int, *, actor: Any, source_ip: str | None = None) -> Job:
    """Check an upload of length bytes into volume; the returned job reports its progress."""
    _require(actor, volume, CHANGE, "upload into")
    with audit.refusals_recorded(actor, "volume.upload", volume, source_ip=source_ip):
        _not_busy(volume)
        require_trusted(volume, "uploaded into")
        if length <= 0:
            raise ServiceError(
                "The upload is empty: send the file as the request body with its Content-Length."
            )
        if length > volume.capacity:
            raise ServiceError(
                f"The file is {length} bytes but {volume.name} holds {volume.capacity}: create "
                "the volume with the file's size, or resize it first."
            )
        needed = max(0, length - volume.allocation)
        if needed > volume.pool.available:
            raise ServiceError(
                f"Pool {volume.pool.name} has {_gib(volume.pool.available)} free; the upload "
                f"needs {_gib(needed)} more."
            )
        users = vms_using(volume.pool.host, [volume.path])
        if users:
            raise ConflictError(
                f"{volume.name} is a disk of {', '.join(sorted(users))}: detach it before "
                "overwriting it."
            )
        with transaction.atomic():
            job = jobs.create_job(
                JobKind.VOLUME_UPLOAD,
                target=f"volume:{volume.pk}",
                actor=actor,
                host=volume.pool.host,
                project=volume.project,
                label=volume.name,
            )
            job.result = {"volume": volume.pk, "volume_name": volume.name, "length": length}
            job.save(update_fields=["result"])
            audit.record(
                actor,
                "volume.upload",
                volume,
                detail=f"job #{job.pk}; {length} bytes",
                source_ip=source_ip,
            )
    return job


def run_upload(
    job: Job, volume: Volume, chunks: Iterable[bytes], *, remove_on_failure: bool
) -> Volume:
    """Stream chunks into the volume inside the job; on failure the job says why and,
    when the volume was made for this upload, it is deleted."""
    length = int(job.result["length"])
    last = {"at": 0.0}

    def progress(done: int, total: int) -> None:
        # At most twice a second: each report is a database write and a push to browsers.
        now = time.monotonic()
        if now - last["at"] >= REPORT_SECONDS or done == total:
            last["at"] = now
            jobs.report(job.pk, progress=int(99 * done / total), message=f"{done} of {total} bytes")

    refused: ServiceError | None = None
    with jobs.running(job.pk) as running:
        if running is None:
            raise ConflictError(f"Upload job #{job.pk} already ran.")
        try:
            # The first bytes are checked against the format the volume was made with
            # before anything is written: a refused image never reaches the host.
            head, rest = _take_head(chunks, min(length, images.HEAD_BYTES))
            whole = length <= images.HEAD_BYTES
            try:
                with audit.refusals_recorded(job.user, "volume.upload", volume):
                    chain = check_head(volume, head, whole=whole, what="uploaded")
            except ServiceError as exc:
                refused = exc
                raise
            with on_host(volume.pool.host, f"Upload into {volume.name}"):
                info = hv.upload_volume(
                    volume.pool.host.uri,
                    volume.pool.name,
                    volume.name,
                    itertools.chain([head], rest),
                    length,
                    progress=progress,
                )
        except BaseException as exc:
            if remove_on_failure:
                _discard(volume)
                jobs.report(job.pk, log_line=f"removed {volume.name}: the upload did not finish")
            if not isinstance(exc, ServiceError):
                raise ServiceError(f"The upload stopped: {exc}") from exc
            raise
        volume = _save_volume(volume, info)
        volume.format_source, volume.backing = FormatSource.DECLARED, chain
        if not rows.save_if_present(volume, ["format_source", "backing"]):
            raise GoneError(f"Volume {volume.name} was deleted meanwhile.")
        jobs.report(job.pk, progress=100, message=f"Uploaded {length} bytes into {volume.name}.")
    if refused is not None:
        raise refused  # the content was refused (400), not the host
    job.refresh_from_db()
    _touch_pool(volume.pool)
    if job.state != JobState.SUCCEEDED:
        raise ConflictError(job.message or "The upload failed.")
    return volume


def _take_head(chunks: Iterable[bytes], size: int) -> tuple[bytes, Iterator[bytes]]:
    """The first size bytes of chunks, and the rest still to come."""
    it = iter(chunks)
    head = bytearray()
    for chunk in it:
        head += chunk
        if len(head) >= size:
            break
    rest = bytes(head[size:])
    return bytes(head[:size]), itertools.chain([rest] if rest else [], it)


def _discard(volume: Volume) -> None:
    """Delete a volume made for a job that failed: on the host, then its row."""
    try:
        hv.delete_volume(volume.pool.host.uri, volume.pool.name, volume.name)
    except hypervisor.NotFound:
        pass
    except hypervisor.HypervisorError:
        return  # keep the row so the leftover stays visible
    Volume.objects.filter(pk=volume.pk).delete()


def open_download(
    volume: Volume, *, actor: Any, source_ip: str | None = None
) -> tuple[int, Iterator[bytes]]:
    """(size, chunks) of a volume's contents streamed from its host: for those who may
    change the volume (a viewer, or another member, sees it but does not read it)."""
    _require(actor, volume, CHANGE, "download")
    with on_host(volume.pool.host, f"Volume {volume.name}"):
        size, chunks = hv.download_volume(volume.pool.host.uri, volume.pool.name, volume.name)
    audit.record(actor, "volume.download", volume, detail=f"{size} bytes", source_ip=source_ip)
    return size, chunks


# --- jobs ---


def remove_leftovers(host: Host) -> int:
    """Delete the partial copies that jobs left on host when it went away mid-copy."""
    removed = 0
    failed = Job.objects.filter(
        host=host,
        kind__in=[JobKind.VOLUME_CLONE, JobKind.VOLUME_CONVERT],
        state=JobState.FAILED,
        result__has_key="leftover",
    )
    for job in failed:
        leftover = job.result["leftover"]
        pool, name = leftover["pool"], leftover["volume"]
        # A later volume of the same name is someone's real volume: keep it.
        if not Volume.objects.filter(pool__host=host, pool__name=pool, name=name).exists():
            try:
                hv.delete_volume(host.uri, pool, name)
                removed += 1
                log.info("job %s: partial copy %s/%s removed", job.pk, pool, name)
            except hypervisor.NotFound:
                pass
        result = {k: v for k, v in job.result.items() if k != "leftover"}
        Job.objects.filter(pk=job.pk).update(result=result)
    return removed


def run_volume_job(job: Job) -> None:
    """The body of a create (full), clone, convert or wipe job."""
    spec = job.result
    volume = Volume.objects.select_related("pool__host").filter(pk=spec["volume"]).first()
    if volume is None:
        raise ServiceError("The volume of this job was removed.")
    host = volume.pool.host
    kind = job.kind
    if kind == JobKind.VOLUME_CREATE:
        jobs.report(job.pk, progress=5, message=f"Writing {volume.name}", log_line="create started")
        s = spec["spec"]
        try:
            with on_host(host, f"Volume {volume.name}"):
                info = hv.create_volume(host.uri, volume.pool.name, hypervisor.VolumeSpec(**s))
        except BaseException:
            Volume.objects.filter(pk=volume.pk).delete()
            raise
        _save_volume(volume, info)
        jobs.report(job.pk, progress=100, message=f"{volume.name} created.", log_line="created")
    elif kind in (JobKind.VOLUME_CLONE, JobKind.VOLUME_CONVERT):
        copy = Volume.objects.filter(pk=spec["copy"]).first()
        if copy is None:
            raise ServiceError("The new volume's row was removed.")

        def progress(done: int, total: int) -> None:
            jobs.report(
                job.pk, progress=int(95 * done / total), message=f"{done} of {total} bytes copied"
            )

        jobs.report(
            job.pk,
            progress=1,
            log_line=f"copying {volume.name} to {spec['pool']}/{copy.name} ({spec['format']})",
        )
        try:
            # Checked again now the job runs: the copy reads the volume as recorded.
            check_content(volume, "copied")
            with on_host(host, f"Copy of {volume.name}"):
                info = hv.copy_volume(
                    host.uri,
                    volume.pool.name,
                    volume.name,
                    copy.name,
                    source=pinned(volume),
                    format=spec["format"],
                    target_pool=spec["pool"],
                    progress=progress,
                )
        except UnavailableError as exc:
            # The host went away mid-copy: the partial volume cannot be removed now.
            # Remember it; the reconcile that follows the host's return removes it.
            Volume.objects.filter(pk=copy.pk).delete()
            Job.objects.filter(pk=job.pk).update(
                result=spec | {"leftover": {"pool": spec["pool"], "volume": copy.name}}
            )
            raise UnavailableError(
                f"{exc.message} The partial copy {copy.name} is removed when "
                f"{host.name} is back up."
            ) from exc
        except BaseException:
            Volume.objects.filter(pk=copy.pk).delete()
            raise
        _save_volume(copy, info)
        jobs.report(
            job.pk, progress=100, message=f"{copy.name} is ready.", log_line="copy finished"
        )
        _touch_pool(copy.pool)
    elif kind == JobKind.VOLUME_WIPE:
        jobs.report(job.pk, progress=5, message=f"Wiping {volume.name}", log_line="wipe started")
        with on_host(host, f"Volume {volume.name}"):
            info = hv.wipe_volume(host.uri, volume.pool.name, volume.name, source=pinned(volume))
        _save_volume(volume, info)
        jobs.report(job.pk, progress=100, message=f"{volume.name} wiped.", log_line="wiped")
    else:
        raise ServiceError(f"Unknown volume job {kind}.")
    _touch_pool(volume.pool)


def remove_made_volumes(host: Host, made: list[list[str]]) -> tuple[list[str], list[str]]:
    """After a job whose worker died: the volumes it was making ([pool, name] each, see
    jobs.recorder) that no domain on host uses are deleted, once libvirtd has finished
    writing them, with their rows. Returns the names removed and the paths kept (in use:
    the job had got that far)."""
    try:
        in_use = {d.source for dom in hypervisor.list_domains(host.uri) for d in dom.disks}
    except hypervisor.HypervisorError as exc:
        raise ServiceError(f"{host.name} could not be read: {exc}") from exc
    removed: list[str] = []
    kept: list[str] = []
    for pool, name in made:
        try:
            path = hv.get_volume(host.uri, pool, name).path
        except hypervisor.NotFound:
            continue
        if path in in_use:
            kept.append(path)
            continue
        with contextlib.suppress(hypervisor.NotFound):
            hv.delete_volume(host.uri, pool, name, wait=ABANDONED_WAIT_SECONDS)
            removed.append(name)
        Volume.objects.filter(pool__host=host, pool__name=pool, name=name).delete()
    return removed, kept


def undo_abandoned(job: Job) -> str:
    """A volume job whose worker died: the volume it was making removed (host and row);
    what to tell the user."""
    spec = job.result
    if job.kind in (JobKind.VOLUME_CREATE, JobKind.VOLUME_CLONE, JobKind.VOLUME_CONVERT):
        pk = spec.get("volume") if job.kind == JobKind.VOLUME_CREATE else spec.get("copy")
        made = Volume.objects.select_related("pool__host").filter(pk=pk).first()
        if made is None:
            return "it had made nothing that is left"
        host = made.pool.host
        # libvirtd goes on writing a volume after its caller died: wait for it, then delete.
        with contextlib.suppress(hypervisor.NotFound):
            hv.delete_volume(host.uri, made.pool.name, made.name, wait=ABANDONED_WAIT_SECONDS)
        made.delete()
        _touch_pool(made.pool)
        return f"the unfinished volume {made.name} was removed"
    name = spec.get("volume_name", "the volume")
    if job.kind == JobKind.VOLUME_UPLOAD:
        return f"{name} holds part of the upload only: upload the file again"
    return f"{name} may be partly wiped: wipe it again"
