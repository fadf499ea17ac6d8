"""Actions on storage pools and volumes; the inventory sync lives here too."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from panel.hypervisor import PoolInfo, VolumeInfo
from panel.models import Host

from .models import StoragePool, Volume


def sync_pools(
    host: Host, pools: Iterable[PoolInfo], volumes: Iterable[VolumeInfo]
) -> dict[str, int]:
    """Make the host's pool and volume rows match what it reports."""
    pools = list(pools)
    volumes = list(volumes)
    now = timezone.now()
    with transaction.atomic():
        by_name: dict[str, StoragePool] = {}
        for info in pools:
            pool, _ = StoragePool.objects.update_or_create(
                host=host,
                name=info.name,
                defaults={
                    "uuid": info.uuid,
                    "type": info.type,
                    "state": info.state,
                    "target_path": info.target_path,
                    "capacity": info.capacity,
                    "allocation": info.allocation,
                    "available": info.available,
                    "autostart": info.autostart,
                    "persistent": info.persistent,
                    "synced": now,
                },
            )
            by_name[info.name] = pool
        StoragePool.objects.filter(host=host).exclude(name__in=by_name).delete()
        for pool_name, pool in by_name.items():
            vols = [v for v in volumes if v.pool == pool_name]
            for v in vols:
                Volume.objects.update_or_create(
                    pool=pool,
                    name=v.name,
                    defaults={
                        "key": v.key,
                        "path": v.path,
                        "format": v.format,
                        "capacity": v.capacity,
                        "allocation": v.allocation,
                        "synced": now,
                    },
                )
            if pool.state == "active":
                # Volumes of an inactive pool can't be listed: keep what we knew.
                Volume.objects.filter(pool=pool).exclude(name__in=[v.name for v in vols]).delete()
    return {"pools": len(pools), "volumes": len(volumes)}
