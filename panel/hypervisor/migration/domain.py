"""What the migration modules read from a domain and its hosts: its disks and passthrough
devices, a host's identity, volumes by path, a domain by UUID and the target's pool.
"""

from __future__ import annotations

import contextlib
import os

import libvirt
from lxml import etree

from panel.hypervisor import xml
from panel.hypervisor.errors import Conflict


def domain_disks(root: etree._Element) -> list[tuple[etree._Element, str, str, str, bool]]:
    """(element, target dev, source path, device, read-only) of each disk with a source."""
    found = []
    for disk in root.iterfind("./devices/disk"):
        source = disk.find("source")
        if source is None:
            continue
        path = source.get("file") or source.get("dev") or ""
        if not path:
            continue
        target = disk.find("target")
        found.append(
            (
                disk,
                target.get("dev", "") if target is not None else "",
                path,
                disk.get("device", "disk"),
                disk.find("readonly") is not None or disk.get("device") == "cdrom",
            )
        )
    return found


def passthrough_devices(root: etree._Element) -> list[str]:
    """Devices that tie the domain to its host's hardware."""
    found = []
    for dev in root.iterfind("./devices/hostdev"):
        kind = dev.get("type", "")
        model = dev.get("model", "")
        if kind == "mdev":
            found.append(f"mediated device (vGPU{', ' + model if model else ''})")
        elif kind == "pci":
            addr = dev.find("./source/address")
            where = (
                ":".join(
                    (addr.get(k, "") or "").replace("0x", "")
                    for k in ("domain", "bus", "slot", "function")
                )
                if addr is not None
                else ""
            )
            found.append(f"PCI passthrough {where}".strip())
        else:
            found.append(f"{kind.upper()} passthrough device")
    for iface in root.iterfind("./devices/interface[@type='hostdev']"):
        mac = iface.find("mac")
        found.append(
            "SR-IOV network interface" + (f" {mac.get('address')}" if mac is not None else "")
        )
    return found


def host_uuid(conn: libvirt.virConnect) -> str:
    """The host's UUID from its capabilities: tells two URIs of one host apart from two hosts."""
    return etree.fromstring(conn.getCapabilities().encode()).findtext("./host/uuid") or ""


def volume_at(conn: libvirt.virConnect, path: str) -> libvirt.virStorageVol | None:
    """The pool volume at path on the host, or None when no running pool holds it."""
    try:
        return conn.storageVolLookupByPath(path)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return None
        raise


def volume_seen_at(conn: libvirt.virConnect, path: str) -> libvirt.virStorageVol | None:
    """volume_at(), after refreshing the host's running pools of path's directory: on
    shared storage, a volume another host made is there before this host's pool lists it."""
    vol = volume_at(conn, path)
    if vol is not None:
        return vol
    folder = os.path.dirname(path)
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        with contextlib.suppress(libvirt.libvirtError):
            if xml.parse_pool(pool.XMLDesc(0))[1].rstrip("/") == folder:
                pool.refresh(0)
                return volume_at(conn, path)
    return None


def disk_capacity(dom: libvirt.virDomain, conn: libvirt.virConnect, target: str, path: str) -> int:
    """The disk's size in bytes: as the running domain sees it, else its volume's capacity."""
    if dom.isActive():
        with contextlib.suppress(libvirt.libvirtError):
            return int(dom.blockInfo(target, 0)[0])
    vol = volume_at(conn, path)
    return int(vol.info()[1]) if vol is not None else 0


def domain_by_uuid(conn: libvirt.virConnect, uuid: str) -> libvirt.virDomain | None:
    """The host's domain with this UUID, or None when it has none."""
    try:
        return conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def running_pool(conn: libvirt.virConnect, name: str) -> libvirt.virStoragePool:
    """The target's pool by name; Conflict when it has none or it is not running."""
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as exc:
        raise Conflict(f"The target host has no storage pool '{name}'.") from exc
    if not pool.isActive():
        raise Conflict(f"Pool '{name}' on the target host is not running: start it first.")
    return pool


def delete_paths(conn: libvirt.virConnect, paths: list[str]) -> list[str]:
    """Delete the volumes at these paths (those that exist); the paths deleted."""
    removed = []
    for path in paths:
        with contextlib.suppress(libvirt.libvirtError):
            vol = volume_at(conn, path)
            if vol is not None:
                vol.delete(0)
                removed.append(path)
    return removed
