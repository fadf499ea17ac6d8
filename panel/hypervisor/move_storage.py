"""Moving one of a domain's disks to another pool of the same host ("Move storage").

A shut-off domain's volume is copied by the storage driver; a running domain's disk
is mirrored by QEMU (block copy) and pivoted, so the guest keeps running. Either way
the definition then names the new volume and the old one is deleted. On failure or
when progress raises, the new volume is deleted and the domain keeps the old one.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import libvirt
from lxml import etree

from . import xml
from .backups.checkpoints import drop_checkpoints
from .connection import session
from .domains import domain_info
from .errors import Conflict, HypervisorError
from .qemu_img import PinnedImage
from .specs import BackingInfo, DomainInfo, VolumeSpec
from .storage.copies import copy_image, recorded_capacity
from .storage.volumes import delete_volume

Progress = Callable[[int, int], None]
POLL_SECONDS = 0.25
PIVOT_TRIES = 40


@dataclass(frozen=True)
class MoveResult:
    """The domain after the move, and the disk's path before and after."""

    info: DomainInfo
    old_path: str
    new_path: str


def _disk(root: etree._Element, target: str) -> etree._Element:
    for disk in root.iterfind("./devices/disk[@device='disk']"):
        dev = disk.find("target")
        if dev is not None and dev.get("dev") == target:
            return disk
    raise Conflict(f"The VM has no disk {target}.")


def _set_source(dom: libvirt.virDomain, conn: libvirt.virConnect, target: str, path: str) -> None:
    """Make the persistent definition name path for the disk (if it does not already)."""
    if not dom.isPersistent():
        return
    root = xml.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE))
    disk = _disk(root, target)
    source = disk.find("source")
    if source is not None and source.get("file") == path:
        return
    source.set("file", path)
    # The moved image is a full copy with no backing file: say so, so nothing in its
    # header is followed.
    for store in disk.findall("backingStore"):
        disk.remove(store)
    etree.SubElement(disk, "backingStore")
    conn.defineXML(etree.tostring(root, encoding="unicode"))


def _mirror(
    dom: libvirt.virDomain, target: str, dest_path: str, fmt: str, progress: Progress
) -> None:
    """Block-copy the running disk onto dest_path (already created) and switch to it."""
    disk = etree.Element("disk", type="file")
    etree.SubElement(disk, "driver", type=fmt)
    etree.SubElement(disk, "source", file=dest_path)
    flags = libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT | libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB
    dom.blockCopy(target, etree.tostring(disk, encoding="unicode"), None, flags)
    try:
        tries = 0
        while True:
            info = dom.blockJobInfo(target, 0) or {}
            cur, end = int(info.get("cur", 0)), int(info.get("end", 0))
            progress(cur, end)
            if end and cur == end:
                try:
                    dom.blockJobAbort(target, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
                    return
                except libvirt.libvirtError:
                    # Not ready yet: the mirror has to be in sync once before a pivot.
                    tries += 1
                    if tries > PIVOT_TRIES:
                        raise
            time.sleep(POLL_SECONDS)
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            dom.blockJobAbort(target, 0)
        raise


def _move_plan(
    conn: libvirt.virConnect, disk: etree._Element, target: str, pool: str
) -> tuple[str, libvirt.virStorageVol, libvirt.virStoragePool, str]:
    """(path, volume, destination pool, volume name) of a disk to move; Conflict when it
    cannot move there."""
    source = disk.find("source")
    path = source.get("file", "") if source is not None else ""
    if not path:
        raise Conflict(f"Disk {target} is not a file: only file volumes can be moved.")
    try:
        old = conn.storageVolLookupByPath(path)
    except libvirt.libvirtError as exc:
        raise Conflict(f"{path} is not a volume of a running pool: start its pool first.") from exc
    dest_pool = conn.storagePoolLookupByName(pool)
    if not dest_pool.isActive():
        raise Conflict(f"Pool '{pool}' is not running: start it first.")
    if old.storagePoolLookupByVolume().UUIDString() == dest_pool.UUIDString():
        raise Conflict(f"{path} is already in pool '{pool}'.")
    name = os.path.basename(path)
    if name in dest_pool.listVolumes():
        raise Conflict(f"Pool '{pool}' already has a volume named '{name}'.")
    return path, old, dest_pool, name


def _copy_and_switch(
    conn: libvirt.virConnect,
    uri: str,
    dom: libvirt.virDomain,
    disk: etree._Element,
    plan: tuple[str, libvirt.virStorageVol, libvirt.virStoragePool, str],
    target: str,
    recorded: tuple[BackingInfo, ...],
    report: Progress,
) -> libvirt.virStorageVol:
    """The disk's new volume, the domain switched onto it: mirrored while the domain runs,
    copied while it is shut off; deleted again when either fails."""
    path, old, dest_pool, name = plan
    driver = disk.find("driver")
    fmt = (driver.get("type") if driver is not None else "") or "raw"
    chain = xml.disk_chain(disk)
    image = PinnedImage(path, fmt, chain if chain is not None else recorded)
    capacity = recorded_capacity(old, fmt)
    document = xml.build_volume(VolumeSpec(name=name, capacity=capacity, format=fmt))
    if dom.isActive():
        new = dest_pool.createXML(document, 0)
        try:
            _mirror(dom, target, new.path(), fmt, report)
            _set_source(dom, conn, target, new.path())
        except BaseException:
            with contextlib.suppress(libvirt.libvirtError):
                new.delete(0)
            raise
        return new
    new = copy_image(
        conn,
        uri,
        old,
        dest_pool,
        name,
        source=image,
        format=fmt,
        capacity=capacity,
        progress=report,
    )
    try:
        _set_source(dom, conn, target, new.path())
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            new.delete(0)
        raise
    return new


def move_disk(
    uri: str,
    uuid: str,
    target: str,
    pool: str,
    progress: Progress | None = None,
    recorded: tuple[BackingInfo, ...] = (),
) -> MoveResult:
    """Move the domain's disk `target` (vda, ...) into pool on the same host, read as the
    format its definition gives (recorded: the chain the panel recorded, for a definition
    that gives none)."""
    report = progress or (lambda _done, _total: None)
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        root = xml.parse(dom.XMLDesc(0))
        disk = _disk(root, target)
        plan = _move_plan(conn, disk, target, pool)
        # The disk moves to a new image: the backup chain starts again with a full copy.
        drop_checkpoints(dom)
        new = _copy_and_switch(conn, uri, dom, disk, plan, target, recorded, report)
        path, old, _dest_pool, _name = plan
        new_path = new.path()
        try:
            old.delete(0)
        except libvirt.libvirtError as exc:
            raise HypervisorError(
                f"{target} now uses {new_path}, but {path} could not be deleted: "
                f"{exc.get_error_message()}. Delete it by hand."
            ) from exc
        return MoveResult(info=domain_info(dom), old_path=path, new_path=new_path)


def settle_move(uri: str, uuid: str, target: str, old_path: str, pool: str) -> str:
    """After the process moving disk `target` died: finish or undo the move, whichever is
    consistent with what the domain uses now; returns what was done.

    A mirror still running is cancelled (the disk stays on old_path) and the copy in pool
    is deleted, once libvirt has finished writing it; a disk that already points at the
    copy keeps it and the old volume is deleted, as the move would have done."""
    name = os.path.basename(old_path)
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        with contextlib.suppress(libvirt.libvirtError):
            if dom.blockJobInfo(target, 0):
                dom.blockJobAbort(target, 0)
        source = _disk(xml.parse(dom.XMLDesc(0)), target).find("source")
        current = source.get("file", "") if source is not None else ""
        if current != old_path:
            with contextlib.suppress(libvirt.libvirtError):
                conn.storageVolLookupByPath(old_path).delete(0)
            return f"the move had finished: {target} uses {current}; {old_path} was deleted"
    with contextlib.suppress(HypervisorError):
        delete_volume(uri, pool, name, wait=600)
    return f"the move was undone: {target} stays on {old_path}"
