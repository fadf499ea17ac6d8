"""Full, consistent backups of a domain's disks into a storage pool, and restores from them.

Three ways to a consistent copy, chosen by the domain's state and the host:
- offline: the domain is shut off, so nothing writes; each disk (its whole backing chain,
  flattened) is copied into the pool as qcow2 (storage.copy_image: qemu-img convert told
  the disk's format and chain, or libvirt's createXMLFrom on a remote host when its
  reading of the file agrees; nothing in an image's header is followed);
- push: the domain runs and libvirt offers its backup API (domain capabilities say
  `<backup supported='yes'/>`, libvirt >= 7.2 with a QEMU that has blockdev): one
  virDomainBackupBegin writes every disk as of the same instant into qcow2 files in the pool
  while the guest keeps running. Given a Chain, it also makes a checkpoint (see
  checkpoints.py), and starting from an earlier one it writes only the clusters changed
  since: an incremental copy, whose header then names the copy it builds on;
- snapshot: the domain runs but the host has no backup API: an external disk-only snapshot
  (atomic, no metadata) freezes every disk at one instant, the frozen images are copied, and
  the overlays are committed back (active block commit with pivot) and deleted.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import libvirt
from lxml import etree

from panel.hypervisor import xml
from panel.hypervisor.backups.checkpoints import checkpoint_xml, has_checkpoint
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
from panel.hypervisor.host import is_local
from panel.hypervisor.qemu_img import PinnedImage, set_backing
from panel.hypervisor.specs import BackingInfo
from panel.hypervisor.storage.streams import Progress, no_progress, read_head

BACKUP_METHODS = ("offline", "push", "snapshot")
POLL = 0.3


@dataclass(frozen=True)
class Chain:
    """What makes a push backup part of an incremental chain: the checkpoint it makes, and
    the checkpoint it starts from with, for each disk (target), the copy made there
    (parents) and the file the disk was then (sources); no since: a full copy that starts
    a chain."""

    checkpoint: str
    since: str = ""
    parents: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BackupResult:
    """What a backup made: the method used, the domain's definition and the disk copies;
    for a push backup with a chain, the checkpoint it made, whether it copied only what
    changed since the chain's last point, and why not when that was asked for."""

    method: str
    xml: str
    disks: tuple[BackupDisk, ...]
    consistent_at: float
    skipped: tuple[str, ...] = ()
    checkpoint: str = ""
    incremental: bool = False
    note: str = ""


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
    chain: Chain | None = None,
) -> BackupResult:
    """Copy every file-backed disk of the domain into pool as `<prefix>-<target>.qcow2`,
    consistently (see the module docstring); method forces one way ('' chooses). The copies
    made are deleted again when the backup fails. Each disk is read as the format its
    definition gives; recorded: the backing chain the panel recorded for a disk whose
    definition gives none. chain: for a push backup, the checkpoint to make and where an
    incremental copy starts (a full copy when it cannot, the result's note says why)."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        dest, directory = backup_pool(conn, pool)
        method = _pick_method(conn, dom, method)
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
        note, chain = "", chain if method == "push" else None
        try:
            if method == "push":
                chain, note = _usable_chain(uri, conn, disks, sources, chain, dom)
                push = _Push(dom, dest, directory, disks, names, made, progress)
                at, copies, chain, note = _push_chained(uri, push, chain, note)
            elif method == "offline":
                at = time.time()
                copies = _copy_disks(conn, dest, disks, names, made, progress, sources)
            else:
                at, copies = _via_snapshot(conn, dom, dest, disks, names, made, progress, sources)
        except BaseException:
            _delete_made(dest, made)
            if chain is not None and has_checkpoint(dom, chain.checkpoint):
                with contextlib.suppress(libvirt.libvirtError):
                    dom.checkpointLookupByName(chain.checkpoint, 0).delete(0)
            raise
        return BackupResult(
            method=method,
            xml=definition,
            disks=tuple(copies),
            consistent_at=at,
            skipped=tuple(skipped),
            checkpoint=chain.checkpoint if chain else "",
            incremental=bool(chain and chain.since),
            note=note,
        )


def _pick_method(conn: libvirt.virConnect, dom: libvirt.virDomain, method: str) -> str:
    """The method asked for ('' chooses by the domain's state and the host), if it fits."""
    active = bool(dom.isActive())
    if not method:
        method = "offline" if not active else "push" if _supported(conn, dom) else "snapshot"
    if method not in BACKUP_METHODS:
        raise HypervisorError(f"Unknown backup method '{method}'.")
    if (method == "offline") == active:
        state = "running" if active else "shut off"
        raise Conflict(f"A {method} backup cannot be taken while the domain is {state}.")
    return method


@dataclass(frozen=True)
class _Push:
    """What a push backup works with: the domain, the backup pool and its directory, the
    disks (target, file) and their copies' names, the copies made so far, and progress."""

    dom: libvirt.virDomain
    dest: libvirt.virStoragePool
    directory: str
    disks: list[tuple[str, str]]
    names: dict[str, str]
    made: list[str]
    progress: Progress


def _push_chained(
    uri: str, push: _Push, chain: Chain | None, note: str
) -> tuple[float, list[BackupDisk], Chain | None, str]:
    """A push backup in its chain: an incremental one that libvirt refuses (a bitmap qemu
    found inconsistent after a crash, say) is taken again as a full copy, and one whose
    checkpoint libvirt cannot make, again without one; the note says why. The copies' time
    and records, the chain used, the note."""
    while True:
        try:
            at, copies = _push(push, chain)
        except HypervisorError as exc:
            if chain is None:
                raise
            _delete_made(push.dest, push.made)
            if has_checkpoint(push.dom, chain.checkpoint):
                push.dom.checkpointLookupByName(chain.checkpoint, 0).delete(0)
            if chain.since:
                note = f"the incremental backup was refused ({exc}): this is a full copy"
                chain = Chain(chain.checkpoint)
            else:
                note = (
                    f"libvirt could not make a checkpoint ({exc}): this full copy starts no chain"
                )
                chain = None
            continue
        _link(uri, copies, chain)
        return at, copies, chain, note


def _delete_made(dest: libvirt.virStoragePool, made: list[str]) -> None:
    for name in made:
        with contextlib.suppress(libvirt.libvirtError):
            dest.refresh(0)
            dest.storageVolLookupByName(name).delete(0)
    made.clear()


def _usable_chain(
    uri: str,
    conn: libvirt.virConnect,
    disks: list[tuple[str, str]],
    sources: Mapping[str, PinnedImage],
    chain: Chain | None,
    dom: libvirt.virDomain,
) -> tuple[Chain | None, str]:
    """The chain as it can be used here, and why not as asked ('' when it can): bitmaps
    live in qcow2 version 3 disks only, the incremental must start from a checkpoint the
    domain still has, on the same disks, and its copy is chained with qemu-img on the
    panel's host."""
    if chain is None:
        return None, ""
    if raw := [target for target, path in disks if sources[path].format != "qcow2"]:
        return None, (
            f"incremental backups need qcow2 disks and {', '.join(raw)} is not: this is a "
            "full copy, and the next one will be too"
        )
    if old := [target for target, path in disks if _qcow2_v2(conn, path)]:
        return None, (
            f"{', '.join(old)} is a qcow2 version 2 image (compat 0.10), which cannot keep "
            "the bitmaps incremental backups need: this is a full copy. Shut the VM down and "
            "upgrade it (qemu-img amend -o compat=1.1) for the next backup to start a chain"
        )
    if not chain.since:
        return chain, ""
    full = Chain(chain.checkpoint)
    if not has_checkpoint(dom, chain.since):
        return full, (
            f"the domain no longer has the checkpoint {chain.since} the last backup made (it "
            "was redefined, reverted, restored or moved since): this full copy starts a new "
            "chain"
        )
    if dict(chain.sources) != dict(disks) or set(chain.parents) != set(chain.sources):
        return (
            full,
            "the VM's disks changed since the last backup: this full copy starts a new chain",
        )
    if not is_local(uri):
        return None, (
            "incremental copies are chained with qemu-img, which runs on the panel's own "
            "host only: this is a full copy"
        )
    return chain, ""


def _qcow2_v2(conn: libvirt.virConnect, path: str) -> bool:
    """Whether the qcow2 image at path is version 2, read from its header now (libvirt's
    own reading of it may be older than the last `qemu-img amend`)."""
    try:
        head = read_head(conn, volume_at_path(conn, path), 8)
    except (libvirt.libvirtError, HypervisorError):
        return False
    return head[:4] == b"QFI\xfb" and int.from_bytes(head[4:8], "big") == 2


def _link(uri: str, copies: list[BackupDisk], chain: Chain | None) -> None:
    """Each incremental copy's header made to name the copy it builds on, as recorded (libvirt
    writes the disk it copied from there)."""
    if chain is None or not chain.since:
        return
    for copy in copies:
        set_backing(uri, copy.path, BackingInfo(chain.parents[copy.target], "qcow2"))


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


def _push(push: _Push, chain: Chain | None) -> tuple[float, list[BackupDisk]]:
    """One backupBegin writing every disk as of one instant into its copy (with chain, a
    checkpoint made at that instant, and only what changed since chain.since copied)."""
    dom, dest, directory = push.dom, push.dest, push.directory
    disks, names, made, progress = push.disks, push.names, push.made, push.progress
    root = etree.Element("domainbackup", mode="push")
    if chain is not None and chain.since:
        etree.SubElement(root, "incremental").text = chain.since
    listed = etree.SubElement(root, "disks")
    for target, _source in disks:
        disk = etree.SubElement(listed, "disk", name=target, backup="yes", type="file")
        etree.SubElement(disk, "target", file=os.path.join(directory, names[target]))
        etree.SubElement(disk, "driver", type="qcow2")
    made.extend(names.values())
    checkpoint = checkpoint_xml(chain.checkpoint, [t for t, _ in disks]) if chain else None
    at = time.time()
    try:
        dom.backupBegin(etree.tostring(root, encoding="unicode"), checkpoint, 0)
    except libvirt.libvirtError as exc:
        raise HypervisorError(f"libvirt refused the backup: {exc.get_error_message()}") from exc
    try:
        # Polled often at first: an incremental copy of a few MiB ends in tens of ms.
        wait = 0.01
        while True:
            stats = dom.jobStats(0)
            if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
                break
            total = int(stats.get("disk_total", 0) or 0)
            progress(int(stats.get("disk_processed", 0) or 0), total or 1)
            time.sleep(wait)
            wait = min(POLL, wait * 2)
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
