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
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import libvirt
from lxml import etree

from . import xml
from .blockjobs import wait_for_block_job
from .connection import session
from .domains import claim_volume_name
from .errors import Conflict, HypervisorError
from .qemu_img import PinnedImage
from .specs import BackingInfo
from .storage.copies import copy_image, recorded_capacity

Progress = Callable[[int, int], None]
BACKUP_METHODS = ("offline", "push", "snapshot")
POLL = 0.3


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


@dataclass(frozen=True)
class BackupResult:
    """What a backup made: the method used, the domain's definition and the disk copies."""

    method: str
    xml: str
    disks: tuple[BackupDisk, ...]
    consistent_at: float
    skipped: tuple[str, ...] = ()


def _noop(_done: int, _total: int) -> None:
    return None


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


def _disks(dom: libvirt.virDomain, flags: int = 0) -> tuple[list[tuple[str, str]], list[str]]:
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


def _pool(conn: libvirt.virConnect, name: str) -> tuple[libvirt.virStoragePool, str]:
    pool = conn.storagePoolLookupByName(name)
    if not pool.isActive():
        raise Conflict(f"The backup pool '{name}' is not running: start it first.")
    pool.refresh(0)
    path = etree.fromstring(pool.XMLDesc(0).encode()).findtext("./target/path") or ""
    return pool, path


def _volume(conn: libvirt.virConnect, path: str) -> libvirt.virStorageVol:
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


def _copy(
    conn: libvirt.virConnect,
    src: libvirt.virStorageVol,
    dest: libvirt.virStoragePool,
    name: str,
    progress: Progress,
    source: PinnedImage,
) -> libvirt.virStorageVol:
    """A flattened qcow2 copy of src (read as source: recorded format and chain) as volume
    name in dest."""
    uri = conn.getURI()
    return copy_image(
        conn,
        uri,
        src,
        dest,
        name,
        source=source,
        format="qcow2",
        capacity=recorded_capacity(src, source.format),
        progress=progress,
    )


def _backup_copy(path: str) -> PinnedImage:
    """A backup file: a flattened qcow2 the panel wrote, with no backing file."""
    return PinnedImage(path, "qcow2", ())


def _record(target: str, source: str, vol: libvirt.virStorageVol) -> BackupDisk:
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


def backup_domain(
    uri: str,
    uuid: str,
    pool: str,
    prefix: str,
    *,
    method: str = "",
    progress: Progress = _noop,
    recorded: Mapping[str, tuple[BackingInfo, ...]] | None = None,
) -> BackupResult:
    """Copy every file-backed disk of the domain into pool as `<prefix>-<target>.qcow2`,
    consistently (see the module docstring); method forces one way ('' chooses). The copies
    made are deleted again when the backup fails. Each disk is read as the format its
    definition gives; recorded: the backing chain the panel recorded for a disk whose
    definition gives none."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        dest, directory = _pool(conn, pool)
        active = bool(dom.isActive())
        if not method:
            method = "offline" if not active else "push" if _supported(conn, dom) else "snapshot"
        if method not in BACKUP_METHODS:
            raise HypervisorError(f"Unknown backup method '{method}'.")
        if (method == "offline") == active:
            state = "running" if active else "shut off"
            raise Conflict(f"A {method} backup cannot be taken while the domain is {state}.")
        definition = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        disks, skipped = _disks(dom)
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
                at, copies = _offline(conn, dest, disks, names, made, progress, sources)
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


def _offline(
    conn: libvirt.virConnect,
    dest: libvirt.virStoragePool,
    disks: list[tuple[str, str]],
    names: dict[str, str],
    made: list[str],
    progress: Progress,
    sources: dict[str, PinnedImage],
) -> tuple[float, list[BackupDisk]]:
    at = time.time()
    copies = []
    for index, (target, source) in enumerate(disks):
        made.append(names[target])
        vol = _copy(
            conn,
            _volume(conn, source),
            dest,
            names[target],
            _part(progress, index, len(disks)),
            sources[source],
        )
        copies.append(_record(target, source, vol))
    return at, copies


def _part(progress: Progress, index: int, count: int) -> Progress:
    """Progress of one disk out of count, as a share of the whole (in thousandths)."""

    def report(done: int, total: int) -> None:
        share = done / total if total else 0.0
        progress(int(1000 * (index + share) / count), 1000)

    return report


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
        copies.append(_record(target, source, dest.storageVolLookupByName(names[target])))
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
    copies = []
    try:
        for index, (target, source) in enumerate(disks):
            made.append(names[target])
            vol = _copy(
                conn,
                _volume(conn, source),
                dest,
                names[target],
                _part(progress, index, len(disks)),
                sources[source],
            )
            copies.append(_record(target, source, vol))
    finally:
        # Whatever happened to the copies, the guest goes back onto its own images.
        for target, _source in disks:
            dom.blockCommit(target, None, None, 0, libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE)
            wait_for_block_job(dom, target, _noop, pivot=True)
            with contextlib.suppress(libvirt.libvirtError, HypervisorError):
                _volume(conn, overlays[target]).delete(0)
    return at, copies


def _point_disks(root: etree._Element, paths: dict[str, str]) -> None:
    """Set each listed disk's source to its new standalone qcow2 file."""
    for disk in root.iterfind("./devices/disk[@device='disk']"):
        target = disk.find("target")
        if target is None or target.get("dev") not in paths:
            continue
        disk.set("type", "file")
        source = disk.find("source")
        if source is None:
            source = etree.SubElement(disk, "source")
        for key in list(source.attrib):
            del source.attrib[key]
        source.set("file", paths[target.get("dev", "")])
        driver = disk.find("driver")
        if driver is None:
            driver = etree.SubElement(disk, "driver", name="qemu")
        driver.set("type", "qcow2")
        for store in disk.findall("backingStore"):
            disk.remove(store)
        # A standalone copy: qemu follows no backing file its header might name.
        etree.SubElement(disk, "backingStore")


def restore_as_new(
    uri: str,
    definition: str,
    copies: dict[str, str],
    pool: str,
    new_name: str,
    *,
    progress: Progress = _noop,
    on_volume: Callable[[str, str], None] | None = None,
) -> tuple[str, list[str]]:
    """Define a new domain from a backup: its definition with a new name, UUID and MACs, and
    each backed-up disk (target -> backup file) copied into pool. Returns the new domain's
    UUID and the files made; undone on failure. on_volume(pool, name) hears of each new
    volume before it is made."""
    with session(uri) as conn:
        with contextlib.suppress(libvirt.libvirtError):
            conn.lookupByName(new_name)
            raise Conflict(f"A domain named '{new_name}' already exists on this host.")
        dest, _directory = _pool(conn, pool)
        root = etree.fromstring(definition.encode())
        root.find("name").text = new_name
        for tag in ("uuid", "./os/nvram"):
            for el in root.findall(tag):
                el.getparent().remove(el)
        for mac in root.iterfind("./devices/interface/mac"):
            mac.getparent().remove(mac)
        made: list[libvirt.virStorageVol] = []
        try:
            paths = {}
            for index, (target, path) in enumerate(sorted(copies.items())):
                name = f"{new_name}-{target}.qcow2"
                claim_volume_name(dest, name, on_volume)
                vol = _copy(
                    conn,
                    _volume(conn, path),
                    dest,
                    name,
                    _part(progress, index, len(copies)),
                    _backup_copy(path),
                )
                made.append(vol)
                paths[target] = vol.path()
            _point_disks(root, paths)
            dom = conn.defineXML(etree.tostring(root, encoding="unicode"))
            return dom.UUIDString(), [v.path() for v in made]
        except BaseException:
            for vol in made:
                with contextlib.suppress(libvirt.libvirtError):
                    vol.delete(0)
            raise


def restore_in_place(
    uri: str,
    uuid: str,
    copies: dict[str, str],
    *,
    progress: Progress = _noop,
    on_volume: Callable[[str, str], None] | None = None,
) -> list[str]:
    """Put a shut-off domain's disks back to a backup: each backed-up disk gets a fresh copy
    of its backup beside its current image, the domain is redefined on the copies, and the
    images it used before are deleted unless a snapshot still needs them. Its definition is
    otherwise kept as it is now. Returns what was done; undone on failure. on_volume(pool,
    name) hears of each new volume before it is made."""
    done: list[str] = []
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        if dom.isActive():
            raise Conflict(f"'{dom.name()}' is running: shut it down before restoring it.")
        root = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
        current = dict(_disks(dom, libvirt.VIR_DOMAIN_XML_INACTIVE)[0])
        if missing := sorted(set(copies) - set(current)):
            raise Conflict(
                f"The domain no longer has the disk(s) {', '.join(missing)} the backup holds: "
                "restore it as a new VM instead."
            )
        stamp = time.strftime("%Y%m%d%H%M%S")
        made: list[libvirt.virStorageVol] = []
        try:
            paths = {}
            for index, (target, path) in enumerate(sorted(copies.items())):
                old = _volume(conn, current[target])
                stem = os.path.splitext(old.name())[0]
                dest = old.storagePoolLookupByVolume()
                name = f"{stem}.restored-{stamp}.qcow2"
                claim_volume_name(dest, name, on_volume)
                vol = _copy(
                    conn,
                    _volume(conn, path),
                    dest,
                    name,
                    _part(progress, index, len(copies)),
                    _backup_copy(path),
                )
                made.append(vol)
                paths[target] = vol.path()
                done.append(f"{target}: {path} copied to {vol.path()}")
            _point_disks(root, paths)
            conn.defineXML(etree.tostring(root, encoding="unicode"))
        except BaseException:
            for vol in made:
                with contextlib.suppress(libvirt.libvirtError):
                    vol.delete(0)
            raise
        needed = set()
        for snap in dom.listAllSnapshots(0):
            snap_root = etree.fromstring(snap.getXMLDesc(0).encode())
            needed |= {s.get("file", "") for s in snap_root.iter("source")}
        for target in paths:
            old_path = current[target]
            if old_path in needed:
                done.append(f"{target}: kept {old_path} (a snapshot needs it)")
                continue
            with contextlib.suppress(libvirt.libvirtError, HypervisorError):
                _volume(conn, old_path).delete(0)
                done.append(f"{target}: deleted the replaced image {old_path}")
    return done


@dataclass(frozen=True)
class Abandoned:
    """What was cleaned up after a backup whose process died."""

    deleted: tuple[str, ...]  # its copies, in the backup pool
    merged: tuple[str, ...]  # overlays of the snapshot method, committed back and removed


def _overlay_stamp(path: str) -> bool:
    """Whether path is an overlay the snapshot method made (`<image>.backup-<14 digits>`)."""
    _head, _dot, tail = path.rpartition(".backup-")
    return bool(_dot) and len(tail) == 14 and tail.isdigit()


def _merge_back(conn: libvirt.virConnect, dom: libvirt.virDomain) -> list[str]:
    """The running domain's disks left on a snapshot-method overlay: committed back into
    their own images (a commit already under way is finished) and the overlays deleted."""
    merged = []
    disks, _skipped = _disks(dom)
    for target, source in disks:
        if not _overlay_stamp(source):
            continue
        if not dom.blockJobInfo(target, 0):
            dom.blockCommit(target, None, None, 0, libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE)
        wait_for_block_job(dom, target, _noop, pivot=True)
        with contextlib.suppress(libvirt.libvirtError, HypervisorError):
            _volume(conn, source).delete(0)
        merged.append(source)
    return merged


def abandon_backup(uri: str, uuid: str, pool: str, prefix: str) -> Abandoned:
    """After the process taking a backup died: stop its backup job on the domain, delete
    the copies it started (`<prefix>-*` in pool), and put a domain the snapshot method left
    on overlays back onto its own images."""
    from .storage.volumes import delete_volume

    deleted: list[str] = []
    with session(uri) as conn:
        with contextlib.suppress(libvirt.libvirtError):
            dom = conn.lookupByUUIDString(uuid)
            if dom.isActive() and dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
                dom.abortJob()
        dest = conn.storagePoolLookupByName(pool)
        # Refused while libvirtd still writes a copy the dead process started; the copies
        # made through libvirt are listed without a refresh.
        with contextlib.suppress(libvirt.libvirtError):
            dest.refresh(0)
        names = [n for n in dest.listVolumes() if n.startswith(f"{prefix}-")]
    # The copies first: libvirtd finishes writing one (reading the frozen image) before
    # it can be deleted, and only then may the overlay be committed into that image.
    for name in names:
        with contextlib.suppress(HypervisorError):
            delete_volume(uri, pool, name, wait=600)
            deleted.append(name)
    merged: list[str] = []
    with session(uri) as conn:
        with contextlib.suppress(libvirt.libvirtError):
            dom = conn.lookupByUUIDString(uuid)
            if dom.isActive():
                merged = _merge_back(conn, dom)
    return Abandoned(deleted=tuple(deleted), merged=tuple(merged))
