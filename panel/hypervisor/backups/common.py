"""What taking, restoring and abandoning backups share: a domain's file-backed disks, the
backup pool, volumes by path, the flattened qcow2 copy and its record, and progress
split over several disks.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import libvirt
from lxml import etree

from panel.hypervisor.errors import Conflict, HypervisorError
from panel.hypervisor.qemu_img import PinnedImage
from panel.hypervisor.storage.copies import copy_image, recorded_capacity
from panel.hypervisor.storage.streams import Progress


@dataclass(frozen=True)
class BackupDisk:
    """One disk's copy: which disk, what it was, and the volume holding the copy."""

    target: str
    source: str
    volume: str
    path: str
    format: str
    capacity: int
    size: int


def file_disks(dom: libvirt.virDomain, flags: int = 0) -> tuple[list[tuple[str, str]], list[str]]:
    """(target, file) of each file-backed disk, and the targets that cannot be copied."""
    root = etree.fromstring(dom.XMLDesc(flags).encode())
    disks, skipped = [], []
    for disk in root.iterfind("./devices/disk[@device='disk']"):
        target = disk.find("target").get("dev", "")
        source = disk.find("source")
        if disk.get("type") == "file" and source is not None and source.get("file"):
            disks.append((target, source.get("file", "")))
        else:
            skipped.append(target)
    return disks, skipped


def backup_pool(conn: libvirt.virConnect, name: str) -> tuple[libvirt.virStoragePool, str]:
    """The running backup pool, refreshed, and its directory; Conflict when it is stopped."""
    pool = conn.storagePoolLookupByName(name)
    if not pool.isActive():
        raise Conflict(f"The backup pool '{name}' is not running: start it first.")
    pool.refresh(0)
    path = etree.fromstring(pool.XMLDesc(0).encode()).findtext("./target/path") or ""
    return pool, path


def volume_at_path(conn: libvirt.virConnect, path: str) -> libvirt.virStorageVol:
    """The volume at path; pools are refreshed first, since overlays appear behind them."""
    with contextlib.suppress(libvirt.libvirtError):
        return conn.storageVolLookupByPath(path)
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        with contextlib.suppress(libvirt.libvirtError):
            pool.refresh(0)
    try:
        return conn.storageVolLookupByPath(path)
    except libvirt.libvirtError as exc:
        raise HypervisorError(
            f"{path} is not in a running storage pool of the host: define a pool for its "
            "directory so the panel can copy it."
        ) from exc


def flat_copy(
    conn: libvirt.virConnect,
    src: libvirt.virStorageVol,
    dest: libvirt.virStoragePool,
    name: str,
    progress: Progress,
    source: PinnedImage,
    format: str = "qcow2",
) -> libvirt.virStorageVol:
    """A flattened copy of src (read as source: recorded format and chain) as volume name
    in dest, in format (qcow2 unless told)."""
    uri = conn.getURI()
    return copy_image(
        conn,
        uri,
        src,
        dest,
        name,
        source=source,
        format=format,
        capacity=recorded_capacity(src, source.format),
        progress=progress,
    )


def part_progress(progress: Progress, index: int, count: int) -> Progress:
    """Progress of one disk out of count, as a share of the whole (in thousandths)."""

    def report(done: int, total: int) -> None:
        share = done / total if total else 0.0
        progress(int(1000 * (index + share) / count), 1000)

    return report


def record_copy(target: str, source: str, vol: libvirt.virStorageVol) -> BackupDisk:
    """The record of a disk's copy: the disk, its source file and the volume holding it."""
    _type, capacity, allocation = vol.info()
    return BackupDisk(
        target=target,
        source=source,
        volume=vol.name(),
        path=vol.path(),
        format="qcow2",
        capacity=capacity,
        size=allocation,
    )
