"""Running a migration: the disks it copies, the flags and parameters it is given, the
virDomainMigrate3 call in its own thread while this one reads its progress (and may
abort it), the offline copy of volumes through streams, and the result.

The migration is managed from the caller's process (virDomainMigrate3 with both
connections open here), so it works between any two hosts the panel reaches,
whichever way round, and needs no host to reach the other's libvirtd. The memory
and disk streams still go directly between the two QEMUs, to the migration URI.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable

import libvirt
from lxml import etree

from panel.hypervisor import xml
from panel.hypervisor.backups.checkpoints import drop_checkpoints
from panel.hypervisor.connection import connect, session, translate
from panel.hypervisor.domains import domain_info
from panel.hypervisor.errors import Conflict, HypervisorError
from panel.hypervisor.migration.domain import (
    delete_paths,
    disk_capacity,
    domain_by_uuid,
    domain_disks,
    running_pool,
    volume_at,
)
from panel.hypervisor.migration.values import (
    ABORT_WAIT_SECONDS,
    CHUNK,
    COPY_MODES,
    POLL_SECONDS,
    DiskCopy,
    MigrationOptions,
    MigrationProgress,
    MigrationResult,
    Progress,
    under_shared_paths,
)
from panel.hypervisor.specs import VolumeSpec


def _stats(dom: libvirt.virDomain) -> MigrationProgress | None:
    try:
        stats = dom.jobStats(0)
    except libvirt.libvirtError:
        return None
    if not stats or stats.get("type") in (None, libvirt.VIR_DOMAIN_JOB_NONE):
        return None
    return MigrationProgress(
        data_total=int(stats.get("data_total", 0)),
        data_processed=int(stats.get("data_processed", 0)),
        data_remaining=int(stats.get("data_remaining", 0)),
        memory_total=int(stats.get("memory_total", 0)),
        memory_processed=int(stats.get("memory_processed", 0)),
        memory_remaining=int(stats.get("memory_remaining", 0)),
        disk_total=int(stats.get("disk_total", 0)),
        disk_processed=int(stats.get("disk_processed", 0)),
        disk_remaining=int(stats.get("disk_remaining", 0)),
        memory_iteration=int(stats.get("memory_iteration", 0)),
        elapsed_ms=int(stats.get("time_elapsed", 0)),
        post_copy=bool(stats.get("memory_postcopy_requests", 0)),
    )


def _plan_copies(
    src: libvirt.virConnect,
    dst: libvirt.virConnect,
    dom: libvirt.virDomain,
    root: etree._Element,
    options: MigrationOptions,
) -> list[DiskCopy]:
    if not options.copy_storage:
        return []
    pool = running_pool(dst, options.target_pool) if options.target_pool else None
    target_dir = xml.parse_pool(pool.XMLDesc(0))[1] if pool is not None else ""
    copies = []
    for disk, target, path, device, readonly in domain_disks(root):
        if readonly or device != "disk" or volume_at(dst, path) is not None:
            continue
        if pool is None:
            raise Conflict(f"{path} must be copied: choose a pool on the target for it.")
        driver = disk.find("driver")
        fmt = (driver.get("type") if driver is not None else "") or "raw"
        dest = f"{target_dir.rstrip('/')}/{os.path.basename(path)}"
        copies.append(DiskCopy(target, path, dest, fmt, disk_capacity(dom, src, target, path)))
    return copies


def _retarget(xml_text: str, copies: list[DiskCopy]) -> str:
    root = xml.parse(xml_text)
    moved = {c.source: c.dest for c in copies}
    for _el, _target, path, _device, _ro in domain_disks(root):
        if path in moved:
            source = _el.find("source")
            source.set("file", moved[path])
            for attr in ("index",):
                source.attrib.pop(attr, None)
            store = _el.find("backingStore")
            if store is not None and store.find("source") is None:
                _el.remove(store)
    return etree.tostring(root, encoding="unicode")


def _declared_safe(root: etree._Element, copies: list[DiskCopy], options: MigrationOptions) -> bool:
    """Whether every writable disk the migration does not copy sits in storage the admin
    declared shared on both hosts (and there is at least one)."""
    copied = {c.source for c in copies}
    kept = [
        path
        for _el, _target, path, device, readonly in domain_disks(root)
        if not readonly and device == "disk" and path not in copied
    ]
    return bool(kept) and all(under_shared_paths(p, options.shared_paths) for p in kept)


def _flags(options: MigrationOptions, persistent_source: bool, declared_safe: bool) -> int:
    flags = 0
    if options.live and declared_safe:
        # libvirt knows NFS, GFS2, Ceph...; storage the admin declared shared it takes
        # for a local disk and refuses ("Migration without shared storage is unsafe").
        flags |= libvirt.VIR_MIGRATE_UNSAFE
    if options.live:
        flags |= libvirt.VIR_MIGRATE_LIVE
    else:
        flags |= libvirt.VIR_MIGRATE_OFFLINE
    if options.persistent or not options.live:
        flags |= libvirt.VIR_MIGRATE_PERSIST_DEST
    if options.undefine_source and persistent_source:
        flags |= libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    if options.live and options.copy_storage == "all":
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
    elif options.live and options.copy_storage == "incremental":
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_INC
    if options.auto_converge:
        flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
    if options.post_copy:
        flags |= libvirt.VIR_MIGRATE_POSTCOPY
    if options.tls:
        flags |= libvirt.VIR_MIGRATE_TLS
    return flags


def _params(
    dom: libvirt.virDomain,
    live_xml: str,
    copies: list[DiskCopy],
    options: MigrationOptions,
    persistent: bool,
) -> dict[str, object]:
    """virDomainMigrate3's parameters: the migration URI, the bandwidth, the disks to copy
    and the definitions that point them at their copies."""
    params: dict[str, object] = {}
    if options.live and options.migration_uri:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = options.migration_uri
    if options.live and options.listen_address:
        params[libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS] = options.listen_address
    if options.bandwidth_mib:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(options.bandwidth_mib)
    inactive_flags = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_MIGRATABLE
    if copies:
        if options.live:
            params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = [c.target for c in copies]
        params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = _retarget(live_xml, copies)
        if persistent and options.live:
            params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] = _retarget(
                dom.XMLDesc(inactive_flags), copies
            )
    elif not dom.isActive() and persistent:
        params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = dom.XMLDesc(inactive_flags)
    return params


def _create_target_volumes(
    dst: libvirt.virConnect,
    copies: list[DiskCopy],
    options: MigrationOptions,
    on_target_volume: Callable[[str], None] | None,
) -> list[str]:
    """Create each copy's volume in the target pool, telling on_target_volume of each; the
    paths made. When one fails, those made are deleted again."""
    made: list[str] = []
    if not copies:
        return made
    try:
        pool = running_pool(dst, options.target_pool)
        for copy in copies:
            spec = VolumeSpec(
                name=os.path.basename(copy.dest), capacity=copy.capacity, format=copy.format
            )
            vol = pool.createXML(xml.build_volume(spec), 0)
            made.append(vol.path())
            if on_target_volume is not None:
                on_target_volume(vol.path())
    except Exception:
        delete_paths(dst, made)
        raise
    return made


def _start(
    source_uri: str, target_uri: str, uuid: str, params: dict[str, object], flags: int
) -> tuple[threading.Thread, dict[str, object]]:
    """virDomainMigrate3 in a thread of its own; its outcome ("dom" or "error") lands in
    the dict returned with the thread."""
    outcome: dict[str, object] = {}

    def work() -> None:
        # libvirt connections take concurrent calls: the caller reads the job's
        # statistics (and may abort it) on the same connections while this call runs.
        try:
            s, d = connect(source_uri), connect(target_uri)
            outcome["dom"] = s.lookupByUUIDString(uuid).migrate3(d, params, flags)
        except libvirt.libvirtError as exc:
            outcome["error"] = exc
        except HypervisorError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=work, name=f"migrate-{uuid}", daemon=True)
    thread.start()
    return thread, outcome


def _watch(
    source_uri: str,
    uuid: str,
    thread: threading.Thread,
    options: MigrationOptions,
    progress: Progress | None,
) -> None:
    """Read the migration job's statistics until the thread running it ends, telling
    progress; with post-copy, switch to it once a full pass of memory is sent."""
    switched = False
    with session(source_uri) as src:
        dom = src.lookupByUUIDString(uuid)
        while thread.is_alive():
            thread.join(POLL_SECONDS)
            if not thread.is_alive():
                break
            stats = _stats(dom)
            if stats is None:
                continue
            if (
                options.post_copy
                and not switched
                and stats.memory_iteration >= 2
                and stats.data_remaining > 0
            ):
                # One full pass of memory sent: let the target run and pull the rest.
                with contextlib.suppress(libvirt.libvirtError):
                    dom.migrateStartPostCopy(0)
                    switched = True
            if progress is not None:
                progress(stats)


def migrate_domain(
    source_uri: str,
    target_uri: str,
    uuid: str,
    options: MigrationOptions,
    progress: Progress | None = None,
    *,
    remove_source_disks: bool = False,
    on_target_volume: Callable[[str], None] | None = None,
) -> MigrationResult:
    """Migrate the domain to the target, calling progress(stats) about twice a second.

    Disks to copy get their volumes created in options.target_pool first, each path told
    to on_target_volume as soon as it exists. If progress
    raises, the migration is aborted, the volumes made on the target are deleted, the
    domain is checked to run on the source still, and the exception goes on. On any
    failure nothing stays on the target. With remove_source_disks, the copied disks'
    volumes on the source are deleted once the domain runs on the target.
    """
    if options.copy_storage not in COPY_MODES:
        raise HypervisorError(f"Unknown storage copy '{options.copy_storage}'.")
    with session(source_uri) as src, session(target_uri) as dst:
        dom = src.lookupByUUIDString(uuid)
        # Checkpoints stay behind (libvirt keeps them per host): the next backup is full.
        drop_checkpoints(dom)
        persistent = bool(dom.isPersistent())
        live_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
        copies = _plan_copies(src, dst, dom, xml.parse(live_xml), options)
        params = _params(dom, live_xml, copies, options, persistent)
        flags = _flags(options, persistent, _declared_safe(xml.parse(live_xml), copies, options))
        made = _create_target_volumes(dst, copies, options, on_target_volume)

    if copies and not options.live:
        # libvirt moves only the definition offline: the panel streams the volumes first.
        try:
            _stream_copies(source_uri, target_uri, copies, progress)
        except BaseException:
            with session(target_uri) as dst:
                delete_paths(dst, made)
            raise

    thread, outcome = _start(source_uri, target_uri, uuid, params, flags)
    try:
        _watch(source_uri, uuid, thread, options, progress)
    except BaseException:
        _abort(source_uri, target_uri, uuid, thread, made, outcome)
        if "dom" in outcome:
            # Too late: the domain already runs on the target. Report the migration done.
            return _finish(source_uri, target_uri, uuid, copies, remove_source_disks)
        raise
    if "error" in outcome:
        with session(target_uri) as dst:
            delete_paths(dst, made)
        exc = outcome["error"]
        if isinstance(exc, libvirt.libvirtError):
            raise translate(exc) from exc
        assert isinstance(exc, HypervisorError)
        raise exc
    return _finish(source_uri, target_uri, uuid, copies, remove_source_disks)


def _stream_copies(
    source_uri: str, target_uri: str, copies: list[DiskCopy], progress: Progress | None
) -> None:
    """Copy each volume's bytes from the source to its precreated volume on the target,
    through libvirt streams; progress counts the bytes of all of them."""
    with session(source_uri) as src, session(target_uri) as dst:
        sources = [src.storageVolLookupByPath(c.source) for c in copies]
        sizes = [int(v.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2]) for v in sources]
        total, sent = sum(sizes), 0
        started = time.monotonic()
        for copy, vol in zip(copies, sources, strict=True):
            down, up = src.newStream(0), dst.newStream(0)
            vol.download(down, 0, 0, 0)
            dst.storageVolLookupByPath(copy.dest).upload(up, 0, 0, 0)
            try:
                while True:
                    data = down.recv(CHUNK)
                    if isinstance(data, int):
                        if data == -2:
                            time.sleep(0.01)
                            continue
                        raise HypervisorError(f"The source aborted the copy of {copy.source}.")
                    if not data:
                        break
                    view = memoryview(data)
                    while view:
                        n = up.send(bytes(view))
                        if n < 0:
                            raise HypervisorError(f"The target refused the copy of {copy.dest}.")
                        view = view[n:]
                    sent += len(data)
                    if progress is not None:
                        progress(
                            MigrationProgress(
                                data_total=total,
                                data_processed=sent,
                                data_remaining=max(total - sent, 0),
                                disk_total=total,
                                disk_processed=sent,
                                disk_remaining=max(total - sent, 0),
                                elapsed_ms=int(1000 * (time.monotonic() - started)),
                            )
                        )
                down.finish()
                up.finish()
            except BaseException:
                with contextlib.suppress(libvirt.libvirtError):
                    down.abort()
                with contextlib.suppress(libvirt.libvirtError):
                    up.abort()
                raise


def _finish(
    source_uri: str, target_uri: str, uuid: str, copies: list[DiskCopy], remove: bool
) -> MigrationResult:
    with session(target_uri) as dst:
        info = domain_info(dst.lookupByUUIDString(uuid))
    removed: list[str] = []
    if remove and copies:
        with session(source_uri) as src:
            if domain_by_uuid(src, uuid) is None:
                removed = delete_paths(src, [c.source for c in copies])
    return MigrationResult(info=info, copied=tuple(copies), removed_source=tuple(removed))


def _abort(
    source_uri: str,
    target_uri: str,
    uuid: str,
    thread: threading.Thread,
    made: list[str],
    outcome: dict[str, object],
) -> None:
    """Stop a running migration and wait until it has unwound; the volumes made on the
    target are deleted unless the domain made it there after all."""
    with session(source_uri) as src:
        dom = domain_by_uuid(src, uuid)
        if dom is not None:
            with contextlib.suppress(libvirt.libvirtError):
                dom.abortJob()
    thread.join(ABORT_WAIT_SECONDS)
    if thread.is_alive():
        raise HypervisorError(
            "The migration did not stop within a minute of being aborted; check both hosts."
        )
    if "dom" not in outcome:
        with session(target_uri) as dst:
            delete_paths(dst, made)
