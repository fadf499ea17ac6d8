"""Full, consistent backups of a domain's disks into a storage pool, and restores from them.

Three ways to a consistent copy, chosen by the domain's state and the host:
- offline: the domain is shut off, so nothing writes; each disk (its whole backing chain,
  flattened) is copied into the pool as qcow2 (storage.copy_image: qemu-img convert told
  the disk's format and chain, or libvirt's createXMLFrom on a remote host when its
  reading of the file agrees; nothing in an image's header is followed);
- push: the domain runs and libvirt offers its backup API (domain capabilities say
  `<backup supported='yes'/>`, libvirt >= 7.2 with a QEMU that has blockdev): one
  virDomainBackupBegin writes every disk as of the same instant into qcow2 files in the pool
  while the guest keeps running;
- snapshot: the domain runs but the host has no backup API: an external disk-only snapshot
  (atomic, no metadata) freezes every disk at one instant, the frozen images are copied, and
  the overlays are committed back (active block commit with pivot) and deleted.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import libvirt
from lxml import etree

from panel.hypervisor import xml
from panel.hypervisor.backups.common import (
    BackupDisk,
    backup_pool,
    file_disks,
    flat_copy,
    part_progress,
    record_copy,
    volume_at_path,
)
from panel.hypervisor.blockjobs import wait_for_block_job
from panel.hypervisor.connection import session
from panel.hypervisor.errors import Conflict, HypervisorError
from panel.hypervisor.qemu_img import PinnedImage
from panel.hypervisor.specs import BackingInfo
from panel.hypervisor.storage.streams import Progress, no_progress

BACKUP_METHODS = ("offline", "push", "snapshot")
POLL = 0.3


@dataclass(frozen=True)
class BackupResult:
    """What a backup made: the method used, the domain's definition and the disk copies."""

    method: str
    xml: str
    disks: tuple[BackupDisk, ...]
    consistent_at: float
    skipped: tuple[str, ...] = ()


def backup_api_supported(uri: str, uuid: str) -> bool:
    """Whether the host's libvirt and QEMU offer the backup API for this domain's type."""
    with session(uri) as conn:
        return _supported(conn, conn.lookupByUUIDString(uuid))


def _supported(conn: libvirt.virConnect, dom: libvirt.virDomain) -> bool:
    root = etree.fromstring(dom.XMLDesc(0).encode())
    try:
        caps = conn.getDomainCapabilities(None, None, None, root.get("type"), 0)
    except libvirt.libvirtError:
        return False
    backup = etree.fromstring(caps.encode()).find("./features/backup")
    return backup is not None and backup.get("supported") == "yes" and hasattr(dom, "backupBegin")


def _sources(
    dom: libvirt.virDomain, flags: int, recorded: Mapping[str, tuple[BackingInfo, ...]]
) -> dict[str, PinnedImage]:
    """Each file-backed disk as qemu must read it for a copy: the format the domain gives
    it, and the chain its definition gives (else the one the panel recorded, else none).
    Nothing comes from the image's header."""
    root = etree.fromstring(dom.XMLDesc(flags).encode())
    sources = {}
    for disk in root.iterfind("./devices/disk[@device='disk']"):
        source = disk.find("source")
        if disk.get("type") != "file" or source is None or not source.get("file"):
            continue
        path = source.get("file", "")
        driver = disk.find("driver")
        fmt = (driver.get("type", "") if driver is not None else "") or "raw"
        chain = xml.disk_chain(disk)
        if chain is None:
            chain = recorded.get(path, ())
        sources[path] = PinnedImage(path, fmt, chain)
    return sources


def backup_domain(
    uri: str,
    uuid: str,
    pool: str,
    prefix: str,
    *,
    method: str = "",
    progress: Progress = no_progress,
    recorded: Mapping[str, tuple[BackingInfo, ...]] | None = None,
) -> BackupResult:
    """Copy every file-backed disk of the domain into pool as `<prefix>-<target>.qcow2`,
    consistently (see the module docstring); method forces one way ('' chooses). The copies
    made are deleted again when the backup fails. Each disk is read as the format its
    definition gives; recorded: the backing chain the panel recorded for a disk whose
    definition gives none."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        dest, directory = backup_pool(conn, pool)
        active = bool(dom.isActive())
        if not method:
            method = "offline" if not active else "push" if _supported(conn, dom) else "snapshot"
        if method not in BACKUP_METHODS:
            raise HypervisorError(f"Unknown backup method '{method}'.")
        if (method == "offline") == active:
            state = "running" if active else "shut off"
            raise Conflict(f"A {method} backup cannot be taken while the domain is {state}.")
        definition = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        disks, skipped = file_disks(dom)
        if not disks:
            raise Conflict("The domain has no file-backed disk to back up.")
        sources = _sources(dom, 0, recorded or {})
        names = {target: f"{prefix}-{target}.qcow2" for target, _ in disks}
        for name in names.values():
            with contextlib.suppress(libvirt.libvirtError):
                dest.storageVolLookupByName(name)
                raise Conflict(f"A volume named '{name}' already exists in pool '{pool}'.")
        made: list[str] = []
        try:
            if method == "push":
                at, copies = _push(conn, dom, dest, directory, disks, names, made, progress)
            elif method == "offline":
                at = time.time()
                copies = _copy_disks(conn, dest, disks, names, made, progress, sources)
            else:
                at, copies = _via_snapshot(conn, dom, dest, disks, names, made, progress, sources)
        except BaseException:
            for name in made:
                with contextlib.suppress(libvirt.libvirtError):
                    dest.refresh(0)
                    dest.storageVolLookupByName(name).delete(0)
            raise
        return BackupResult(
            method=method,
            xml=definition,
            disks=tuple(copies),
            consistent_at=at,
            skipped=tuple(skipped),
        )


def _copy_disks(
    conn: libvirt.virConnect,
    dest: libvirt.virStoragePool,
    disks: list[tuple[str, str]],
    names: dict[str, str],
    made: list[str],
    progress: Progress,
    sources: dict[str, PinnedImage],
) -> list[BackupDisk]:
    """Each disk flattened into its own volume of dest (named in made before it is
    started, so that a failure removes it), progress shared out between them."""
    copies = []
    for index, (target, source) in enumerate(disks):
        made.append(names[target])
        vol = flat_copy(
            conn,
            volume_at_path(conn, source),
            dest,
            names[target],
            part_progress(progress, index, len(disks)),
            sources[source],
        )
        copies.append(record_copy(target, source, vol))
    return copies


def _push(
    conn: libvirt.virConnect,
    dom: libvirt.virDomain,
    dest: libvirt.virStoragePool,
    directory: str,
    disks: list[tuple[str, str]],
    names: dict[str, str],
    made: list[str],
    progress: Progress,
) -> tuple[float, list[BackupDisk]]:
    root = etree.Element("domainbackup", mode="push")
    listed = etree.SubElement(root, "disks")
    for target, _source in disks:
        disk = etree.SubElement(listed, "disk", name=target, backup="yes", type="file")
        etree.SubElement(disk, "target", file=os.path.join(directory, names[target]))
        etree.SubElement(disk, "driver", type="qcow2")
    made.extend(names.values())
    at = time.time()
    try:
        dom.backupBegin(etree.tostring(root, encoding="unicode"), None, 0)
    except libvirt.libvirtError as exc:
        raise HypervisorError(f"libvirt refused the backup: {exc.get_error_message()}") from exc
    try:
        while True:
            stats = dom.jobStats(0)
            if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
                break
            total = int(stats.get("disk_total", 0) or 0)
            progress(int(stats.get("disk_processed", 0) or 0), total or 1)
            time.sleep(POLL)
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            dom.abortJob()
        raise
    done = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    if done.get("type") != libvirt.VIR_DOMAIN_JOB_COMPLETED:
        error = done.get("errmsg") or "the backup job did not complete"
        raise HypervisorError(f"The backup job failed: {error}.")
    dest.refresh(0)
    copies = []
    for target, source in disks:
        copies.append(record_copy(target, source, dest.storageVolLookupByName(names[target])))
    return at, copies


def _via_snapshot(
    conn: libvirt.virConnect,
    dom: libvirt.virDomain,
    dest: libvirt.virStoragePool,
    disks: list[tuple[str, str]],
    names: dict[str, str],
    made: list[str],
    progress: Progress,
    sources: dict[str, PinnedImage],
) -> tuple[float, list[BackupDisk]]:
    stamp = time.strftime("%Y%m%d%H%M%S")
    root = etree.Element("domainsnapshot")
    etree.SubElement(root, "name").text = f"backup-{stamp}"
    etree.SubElement(root, "memory", snapshot="no")
    listed = etree.SubElement(root, "disks")
    overlays = {}
    for target, source in disks:
        overlays[target] = f"{os.path.splitext(source)[0]}.backup-{stamp}"
        disk = etree.SubElement(listed, "disk", name=target, snapshot="external")
        etree.SubElement(disk, "source", file=overlays[target])
    flags = (
        libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
        | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
        | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
    )
    at = time.time()
    dom.snapshotCreateXML(etree.tostring(root, encoding="unicode"), flags)
    try:
        copies = _copy_disks(conn, dest, disks, names, made, progress, sources)
    finally:
        # Whatever happened to the copies, the guest goes back onto its own images.
        for target, _source in disks:
            dom.blockCommit(target, None, None, 0, libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE)
            wait_for_block_job(dom, target, no_progress, pivot=True)
            with contextlib.suppress(libvirt.libvirtError, HypervisorError):
                volume_at_path(conn, overlays[target]).delete(0)
    return at, copies
