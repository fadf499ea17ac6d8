"""The host's pools and volumes as rows: what a sync or a refresh takes from libvirt,
and what it may not (the format and chain of a volume the panel keeps)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from panel import hypervisor, rows
from panel.exceptions import GoneError
from panel.hostcalls import on_host
from panel.hypervisor import storage as hv
from panel.models import Host
from storage.models import FormatSource, StoragePool, Volume


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


def save_pool(host: Host, info: hypervisor.PoolInfo) -> StoragePool:
    """The pool's row as the host reports it, created if new."""
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
        pool = save_pool(pool.host, info)
        if vols is not None:
            for v in vols:
                _sync_volume(pool, v, now)
            Volume.objects.filter(pool=pool, synced__isnull=False).exclude(
                name__in=[v.name for v in vols]
            ).delete()
    return pool


def save_volume(volume: Volume, info: hypervisor.VolumeInfo) -> Volume:
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


def touch_pool(pool: StoragePool) -> None:
    """Pool sizes after a change; a failure here leaves the old figures."""
    try:
        info = hv.get_pool(pool.host.uri, pool.name)
    except hypervisor.HypervisorError:
        return
    save_pool(pool.host, info)
