"""Storage pools on a host: their types and capabilities, defining, starting, stopping
and deleting them, and looking up a pool or a volume of a running pool by name.
"""

from __future__ import annotations

import contextlib

import libvirt
from lxml import etree

from panel.hypervisor import xml
from panel.hypervisor.connection import session
from panel.hypervisor.errors import Conflict
from panel.hypervisor.inventory import pool_info
from panel.hypervisor.specs import PoolInfo, PoolSpec

POOL_TYPES = (
    "dir",
    "fs",
    "netfs",
    "logical",
    "disk",
    "iscsi",
    "iscsi-direct",
    "scsi",
    "mpath",
    "rbd",
    "gluster",
    "zfs",
)


def pool_by_name(conn: libvirt.virConnect, name: str) -> libvirt.virStoragePool:
    """The host's pool by name, running or not."""
    return conn.storagePoolLookupByName(name)


def running_volume(conn: libvirt.virConnect, pool: str, name: str) -> libvirt.virStorageVol:
    """The volume by name in a running pool; Conflict when the pool is stopped."""
    p = pool_by_name(conn, pool)
    if not p.isActive():
        raise Conflict(f"Pool '{pool}' is not running: start it first.")
    return p.storageVolLookupByName(name)


def volume_exists(p: libvirt.virStoragePool, name: str) -> bool:
    """Whether the pool holds a volume by this name."""
    try:
        p.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return False
        raise
    return True


def pool_capabilities(uri: str) -> dict[str, bool]:
    """{pool type: supported} as the host's libvirt reports; empty when it cannot say."""
    with session(uri) as conn:
        try:
            caps = conn.getStoragePoolCapabilities(0)
        except libvirt.libvirtError:
            return {}
    root = etree.fromstring(caps.encode())
    return {p.get("type", ""): p.get("supported") == "yes" for p in root.iterfind("pool")}


def get_pool(uri: str, name: str) -> PoolInfo:
    with session(uri) as conn:
        return pool_info(pool_by_name(conn, name))


def pool_xml(uri: str, name: str) -> str:
    with session(uri) as conn:
        return pool_by_name(conn, name).XMLDesc(0)


def define_pool(
    uri: str,
    spec: PoolSpec,
    *,
    persistent: bool = True,
    build: bool = False,
    start: bool = True,
    autostart: bool = False,
) -> PoolInfo:
    """Define (or, not persistent, create) a pool, build and start it; undone on failure."""
    document = xml.build_pool(spec)
    with session(uri) as conn:
        with contextlib.suppress(libvirt.libvirtError):
            pool_by_name(conn, spec.name)
            raise Conflict(f"A storage pool named '{spec.name}' already exists on this host.")
        if not persistent:
            flags = libvirt.VIR_STORAGE_POOL_CREATE_WITH_BUILD if build else 0
            return pool_info(conn.storagePoolCreateXML(document, flags))
        pool = conn.storagePoolDefineXML(document, 0)
        try:
            if build:
                pool.build(0)
            if start:
                pool.create(0)
            if autostart:
                pool.setAutostart(1)
            return pool_info(pool)
        except Exception:
            with contextlib.suppress(libvirt.libvirtError):
                if pool.isActive():
                    pool.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                pool.undefine()
            raise


def pool_action(uri: str, name: str, action: str) -> PoolInfo:
    """build, start, stop or refresh a pool."""
    with session(uri) as conn:
        pool = pool_by_name(conn, name)
        persistent = bool(pool.isPersistent())
        if action == "build":
            if pool.isActive():
                raise Conflict(f"Pool '{name}' is running: stop it before building it.")
            pool.build(0)
        elif action == "start":
            if pool.isActive():
                raise Conflict(f"Pool '{name}' is already running.")
            pool.create(0)
        elif action == "stop":
            if not pool.isActive():
                raise Conflict(f"Pool '{name}' is not running.")
            pool.destroy()
        elif action == "refresh":
            if not pool.isActive():
                raise Conflict(f"Pool '{name}' is not running: start it to refresh it.")
            pool.refresh(0)
        else:
            raise ValueError(f"unknown pool action {action!r}")
        if not persistent and action == "stop":
            # A transient pool is gone once stopped.
            return PoolInfo("", name, "", "gone", "", 0, 0, 0, False, False)
        return pool_info(pool)


def set_pool_autostart(uri: str, name: str, on: bool) -> PoolInfo:
    with session(uri) as conn:
        pool = pool_by_name(conn, name)
        if not pool.isPersistent():
            raise Conflict(f"Pool '{name}' is transient: only persistent pools can autostart.")
        pool.setAutostart(1 if on else 0)
        return pool_info(pool)


def refresh_pool(uri: str, pool: str) -> None:
    with session(uri) as conn:
        pool_by_name(conn, pool).refresh(0)


def delete_pool(uri: str, name: str, *, delete_target: bool = False) -> None:
    """Stop and undefine a pool; with delete_target, remove its directory (or VG) too."""
    with session(uri) as conn:
        pool = pool_by_name(conn, name)
        persistent = pool.isPersistent()
        if pool.isActive():
            pool.destroy()
        if not persistent:
            return
        if delete_target:
            pool.delete(libvirt.VIR_STORAGE_POOL_DELETE_NORMAL)
        pool.undefine()
