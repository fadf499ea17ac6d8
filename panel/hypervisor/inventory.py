"""Bulk reads of a host's pools, volumes and networks, for reconciling the database."""

from __future__ import annotations

import contextlib

import libvirt

from . import xml
from .connection import session
from .domains import list_domains
from .networks.virtual import list_networks
from .specs import Inventory, PoolInfo, VolumeInfo

POOL_STATES = {
    libvirt.VIR_STORAGE_POOL_INACTIVE: "inactive",
    libvirt.VIR_STORAGE_POOL_BUILDING: "building",
    libvirt.VIR_STORAGE_POOL_RUNNING: "active",
    libvirt.VIR_STORAGE_POOL_DEGRADED: "degraded",
    libvirt.VIR_STORAGE_POOL_INACCESSIBLE: "inaccessible",
}


def pool_info(pool: libvirt.virStoragePool) -> PoolInfo:
    state, capacity, allocation, available = pool.info()
    pool_type, target = xml.parse_pool(pool.XMLDesc(0))
    return PoolInfo(
        uuid=pool.UUIDString(),
        name=pool.name(),
        type=pool_type,
        state=POOL_STATES.get(state, "inactive"),
        target_path=target,
        capacity=capacity,
        allocation=allocation,
        available=available,
        autostart=bool(pool.autostart()),
        persistent=bool(pool.isPersistent()),
    )


def volume_info(pool: libvirt.virStoragePool, vol: libvirt.virStorageVol) -> VolumeInfo:
    _type, capacity, allocation = vol.info()
    document = vol.XMLDesc(0)
    return VolumeInfo(
        pool=pool.name(),
        name=vol.name(),
        key=vol.key(),
        path=vol.path(),
        format=xml.parse_volume_format(document),
        capacity=capacity,
        allocation=allocation,
        backing=xml.parse_volume_backing(document),
        physical=xml.parse_volume_physical(document),
    )


def _volumes(pool: libvirt.virStoragePool) -> list[VolumeInfo]:
    result: list[VolumeInfo] = []
    if not pool.isActive():
        return result
    for vol in pool.listAllVolumes(0):
        with contextlib.suppress(libvirt.libvirtError):
            result.append(volume_info(pool, vol))
    return result


def list_pools(uri: str) -> list[PoolInfo]:
    """Every storage pool on the host."""
    with session(uri) as conn:
        return [pool_info(p) for p in conn.listAllStoragePools(0)]


def read_inventory(uri: str) -> Inventory:
    """Domains, pools (with their volumes) and networks of one host, in one pass."""
    domains = list_domains(uri)
    with session(uri) as conn:
        pools = []
        volumes: list[VolumeInfo] = []
        for pool in conn.listAllStoragePools(0):
            with contextlib.suppress(libvirt.libvirtError):
                pools.append(pool_info(pool))
                volumes.extend(_volumes(pool))
    networks = list_networks(uri)
    return Inventory(
        domains=tuple(domains), pools=tuple(pools), volumes=tuple(volumes), networks=tuple(networks)
    )
