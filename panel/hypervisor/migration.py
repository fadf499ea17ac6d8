"""Moving a domain to another host: the pre-check, the migration itself, its progress
and its cancellation.

The migration is managed from the caller's process (virDomainMigrate3 with both
connections open here), so it works between any two hosts the panel reaches,
whichever way round, and needs no host to reach the other's libvirtd. The memory
and disk streams still go directly between the two QEMUs, to the migration URI.

The values crossing the boundary (options, progress, result) live here rather
than in specs.py: nothing but migration uses them.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import libvirt
from lxml import etree

from . import xml
from .connection import connect, session, translate
from .domains import domain_info
from .errors import Conflict, HostUnavailable, HypervisorError
from .host import reserved_memory_bytes
from .specs import Check, DomainInfo, VolumeSpec

COPY_MODES = ("", "all", "incremental")
POLL_SECONDS = 0.5
CHUNK = 1024 * 1024
# In a disk check's detail: the disk would migrate with storage copy chosen.
NEEDS_COPY = "not on storage the target sees"
# How long an aborted migration may take to unwind before we call it stuck.
ABORT_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class MigrationOptions:
    """How to migrate. copy_storage: "" (shared storage), "all" or "incremental";
    target_pool: the pool on the target where copied disks are created first.
    bandwidth_mib: MiB/s, 0 for no limit. migration_uri: where the target's QEMU
    listens (tcp://address[:port]); empty lets libvirt use the target's hostname."""

    live: bool = True
    persistent: bool = True
    undefine_source: bool = True
    copy_storage: str = ""
    target_pool: str = ""
    auto_converge: bool = False
    post_copy: bool = False
    bandwidth_mib: int = 0
    migration_uri: str = ""


@dataclass(frozen=True)
class MigrationProgress:
    """One reading of the migration job's statistics, in bytes and milliseconds."""

    data_total: int = 0
    data_processed: int = 0
    data_remaining: int = 0
    memory_total: int = 0
    memory_processed: int = 0
    memory_remaining: int = 0
    disk_total: int = 0
    disk_processed: int = 0
    disk_remaining: int = 0
    memory_iteration: int = 0
    elapsed_ms: int = 0
    post_copy: bool = False

    @property
    def percent(self) -> int:
        """Share of the data sent so far, 0-99 (100 only once the domain runs on the target)."""
        total = self.data_processed + self.data_remaining
        if total <= 0:
            return 0
        return min(99, int(100 * self.data_processed / total))


@dataclass(frozen=True)
class DiskCopy:
    """A disk copied to the target: its device, path on each side, format and size."""

    target: str
    source: str
    dest: str
    format: str
    capacity: int


@dataclass(frozen=True)
class MigrationResult:
    """The domain as the target now runs it, and the disks copied there."""

    info: DomainInfo
    copied: tuple[DiskCopy, ...] = ()
    removed_source: tuple[str, ...] = ()


Progress = Callable[[MigrationProgress], None]


def default_migration_uri(source_uri: str, target_uri: str) -> str:
    """tcp://<target address>, where the target's address is its URI's host; for a local
    target, the loopback address when the source is on this machine too. The port is left
    to the target's libvirtd, which takes a free one from its migration port range."""
    target = urlsplit(target_uri).hostname
    if target:
        return f"tcp://{target}" if ":" not in target else f"tcp://[{target}]"
    source = urlsplit(source_uri).hostname
    if source in (None, "127.0.0.1", "localhost", "::1"):
        return "tcp://127.0.0.1"
    return ""


# --- reading the domain ---


def _disks(root: etree._Element) -> list[tuple[etree._Element, str, str, str, bool]]:
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


def _passthrough(root: etree._Element) -> list[str]:
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


def _host_uuid(conn: libvirt.virConnect) -> str:
    return etree.fromstring(conn.getCapabilities().encode()).findtext("./host/uuid") or ""


def _lookup_path(conn: libvirt.virConnect, path: str) -> libvirt.virStorageVol | None:
    try:
        return conn.storageVolLookupByPath(path)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return None
        raise


def _capacity(dom: libvirt.virDomain, conn: libvirt.virConnect, target: str, path: str) -> int:
    if dom.isActive():
        with contextlib.suppress(libvirt.libvirtError):
            return int(dom.blockInfo(target, 0)[0])
    vol = _lookup_path(conn, path)
    return int(vol.info()[1]) if vol is not None else 0


def _domain_by_uuid(conn: libvirt.virConnect, uuid: str) -> libvirt.virDomain | None:
    try:
        return conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def _target_pool(conn: libvirt.virConnect, name: str) -> libvirt.virStoragePool:
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as exc:
        raise Conflict(f"The target host has no storage pool '{name}'.") from exc
    if not pool.isActive():
        raise Conflict(f"Pool '{name}' on the target host is not running: start it first.")
    return pool


# --- pre-check ---


def _cpu_check(
    src: libvirt.virConnect, dst: libvirt.virConnect, root: etree._Element, arch: str
) -> Check:
    cpu = root.find("cpu")
    mode = cpu.get("mode", "custom") if cpu is not None else ""
    if cpu is None or (mode == "custom" and cpu.find("model") is None):
        return Check("CPU", "pass", "The guest uses the hypervisor's default CPU model.")
    try:
        if mode == "host-passthrough":
            host_cpu = etree.fromstring(src.getCapabilities().encode()).find("./host/cpu")
            result = dst.compareCPU(etree.tostring(host_cpu, encoding="unicode"), 0)
            what = "the source host's CPU (host-passthrough)"
        else:
            os_type = root.find("./os/type")
            machine = os_type.get("machine") if os_type is not None else None
            cpu_xml = etree.tostring(cpu, encoding="unicode")
            # No emulator path: the target's own default for the architecture.
            result = dst.compareHypervisorCPU(
                None, arch, machine, root.get("type", "kvm"), cpu_xml, 0
            )
            what = f"CPU model {cpu.findtext('model') or mode}"
    except libvirt.libvirtError as exc:
        return Check(
            "CPU",
            "warn",
            f"The target could not compare CPUs ({exc.get_error_message()}); "
            "libvirt checks again when the migration starts.",
        )
    if result == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
        return Check(
            "CPU",
            "fail",
            f"The target's CPU cannot run {what}. Give the guest a baseline CPU model both "
            "hosts support (e.g. a named model, or qemu64), then migrate.",
        )
    return Check("CPU", "pass", f"The target runs {what}.")


def _memory_checks(
    dst: libvirt.virConnect, dom: libvirt.virDomain, live: bool, reserved_bytes: int | None
) -> list[Check]:
    need = int(dom.info()[1]) * 1024  # the maximum memory: what QEMU maps on the target
    mib = need // (1024 * 1024)
    if not live:
        return [Check("memory", "pass", "An offline migration needs no memory on the target.")]
    free = int(dst.getFreeMemory())
    total = int(dst.getInfo()[1]) * 1024 * 1024
    if reserved_bytes is None:
        reserved_bytes = reserved_memory_bytes(total)
    committed = 0
    for other in dst.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        with contextlib.suppress(libvirt.libvirtError):
            committed += int(other.info()[1]) * 1024
    budget = total - reserved_bytes
    if free < need:
        return [
            Check(
                "memory",
                "fail",
                f"The target has {free // 2**20} MiB free; the guest needs {mib} MiB. "
                "Free memory there or choose another host.",
            )
        ]
    if committed + need > budget:
        return [
            Check(
                "memory",
                "fail",
                f"Not enough memory for guests on the target: its guests hold "
                f"{committed // 2**20} MiB of the {max(budget, 0) // 2**20} MiB it keeps for "
                f"guests (after {reserved_bytes // 2**20} MiB for the host); this guest needs "
                f"{mib} MiB. Stop a guest there or choose another host.",
            )
        ]
    return [Check("memory", "pass", f"{free // 2**20} MiB free on the target; {mib} MiB needed.")]


def _disk_checks(
    src: libvirt.virConnect,
    dst: libvirt.virConnect,
    dom: libvirt.virDomain,
    root: etree._Element,
    options: MigrationOptions,
) -> list[Check]:
    checks: list[Check] = []
    to_copy: list[tuple[str, str, int]] = []
    for _el, target, path, device, readonly in _disks(root):
        if _lookup_path(dst, path) is not None:
            checks.append(Check(f"disk {target}", "pass", f"{path} is reachable on the target."))
        elif readonly or device != "disk":
            checks.append(
                Check(
                    f"disk {target}",
                    "fail",
                    f"The {device} {target} ({path}) is not on storage the target sees. "
                    "Eject it or put it on shared storage.",
                )
            )
        elif not options.copy_storage:
            checks.append(
                Check(
                    f"disk {target}",
                    "fail",
                    f"{path} is {NEEDS_COPY}. Choose storage copy "
                    "(all or incremental) and a target pool, or move it to shared storage.",
                )
            )
        elif not options.live and _lookup_path(src, path) is None:
            checks.append(
                Check(
                    f"disk {target}",
                    "fail",
                    f"{path} is not a volume of a running pool on the source: offline, the panel "
                    "copies volumes only. Start its pool (or define one for its directory).",
                )
            )
        else:
            to_copy.append((target, path, _capacity(dom, src, target, path)))
    if not to_copy:
        return checks
    if not options.target_pool:
        checks.append(
            Check("target pool", "fail", "Storage copy needs a pool on the target: choose one.")
        )
        return checks
    try:
        pool = _target_pool(dst, options.target_pool)
    except Conflict as exc:
        checks.append(Check("target pool", "fail", str(exc)))
        return checks
    names = set(pool.listVolumes())
    clash = [os.path.basename(p) for _t, p, _c in to_copy if os.path.basename(p) in names]
    if clash:
        checks.append(
            Check(
                "target pool",
                "fail",
                f"Pool '{options.target_pool}' on the target already has {', '.join(clash)}. "
                "Remove or rename it there, or choose another pool.",
            )
        )
        return checks
    need = sum(c for _t, _p, c in to_copy)
    available = int(pool.info()[3])
    if need > available:
        checks.append(
            Check(
                "target pool",
                "fail",
                f"Pool '{options.target_pool}' has {available // 2**20} MiB available; the "
                f"copied disks need up to {need // 2**20} MiB. Choose another pool.",
            )
        )
        return checks
    for target, path, _capacity_bytes in to_copy:
        checks.append(
            Check(
                f"disk {target}",
                "pass",
                f"{path} will be copied to pool '{options.target_pool}' on the target.",
            )
        )
    return checks


def migration_checks(
    source_uri: str,
    target_uri: str,
    uuid: str,
    options: MigrationOptions,
    *,
    reserved_bytes: int | None = None,
) -> tuple[Check, ...]:
    """Whether the domain can migrate to the target with these options: one Check per
    condition (target up, state, architecture, CPU, memory, devices, disks).

    reserved_bytes: memory the target keeps for itself (None: the handbook's rule)."""
    try:
        with session(target_uri) as dst:
            dst.getVersion()
    except HostUnavailable as exc:
        return (
            Check(
                "target host",
                "fail",
                f"The target host cannot be reached ({exc}). Bring it up or choose another.",
            ),
        )
    checks = [Check("target host", "pass", "The target host answers.")]
    with session(source_uri) as src, session(target_uri) as dst:
        if _host_uuid(src) == _host_uuid(dst):
            return (Check("target host", "fail", "The VM is already on this host."),)
        dom = src.lookupByUUIDString(uuid)
        name = dom.name()
        active = bool(dom.isActive())
        if options.live and not active:
            checks.append(
                Check(
                    "state",
                    "fail",
                    f"{name} is not running: live migration moves a running VM. "
                    "Start it, or choose offline migration.",
                )
            )
        elif not options.live and active:
            checks.append(
                Check(
                    "state",
                    "fail",
                    f"{name} is running: offline migration moves a shut-off VM. "
                    "Shut it down, or choose live migration.",
                )
            )
        else:
            checks.append(
                Check("state", "pass", f"{name} is {'running' if active else 'shut off'}.")
            )
        if _domain_by_uuid(dst, uuid) is not None:
            checks.append(
                Check("name", "fail", f"The target already has this VM ({name}); remove it there.")
            )
        else:
            try:
                dst.lookupByName(name)
            except libvirt.libvirtError:
                checks.append(Check("name", "pass", f"No domain named {name} on the target."))
            else:
                checks.append(
                    Check(
                        "name",
                        "fail",
                        f"The target already has a domain named {name}. Rename one of them.",
                    )
                )
        root = xml.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE if active else 0))
        os_type = root.find("./os/type")
        arch = os_type.get("arch", "") if os_type is not None else ""
        domain_type = root.get("type", "")
        caps = etree.fromstring(dst.getCapabilities().encode())
        supported = caps.xpath("./guest[arch/@name=$arch]/arch/domain/@type", arch=arch)
        if domain_type not in supported:
            checks.append(
                Check(
                    "architecture",
                    "fail",
                    f"The target cannot run {arch} guests of type {domain_type}. "
                    "Choose a host of the same architecture.",
                )
            )
        else:
            checks.append(Check("architecture", "pass", f"The target runs {arch} ({domain_type})."))
            checks.append(_cpu_check(src, dst, root, arch))
        checks.extend(_memory_checks(dst, dom, options.live, reserved_bytes))
        devices = _passthrough(root)
        if devices:
            checks.append(
                Check(
                    "devices",
                    "fail",
                    f"{name} uses {', '.join(devices)}: such devices are tied to this host and "
                    "cannot migrate. Detach them first.",
                )
            )
        else:
            checks.append(Check("devices", "pass", "No passthrough, SR-IOV or vGPU device."))
        if options.post_copy and not options.live:
            checks.append(Check("options", "fail", "Post-copy applies to live migration only."))
        if options.copy_storage == "incremental" and not options.live:
            checks.append(
                Check(
                    "options",
                    "fail",
                    "Incremental storage copy needs a live migration; offline, choose all.",
                )
            )
        checks.extend(_disk_checks(src, dst, dom, root, options))
    return tuple(checks)


# --- the migration ---


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
    pool = _target_pool(dst, options.target_pool) if options.target_pool else None
    target_dir = xml.parse_pool(pool.XMLDesc(0))[1] if pool is not None else ""
    copies = []
    for disk, target, path, device, readonly in _disks(root):
        if readonly or device != "disk" or _lookup_path(dst, path) is not None:
            continue
        if pool is None:
            raise Conflict(f"{path} must be copied: choose a pool on the target for it.")
        driver = disk.find("driver")
        fmt = (driver.get("type") if driver is not None else "") or "raw"
        dest = f"{target_dir.rstrip('/')}/{os.path.basename(path)}"
        copies.append(DiskCopy(target, path, dest, fmt, _capacity(dom, src, target, path)))
    return copies


def _retarget(xml_text: str, copies: list[DiskCopy]) -> str:
    root = xml.parse(xml_text)
    moved = {c.source: c.dest for c in copies}
    for _el, _target, path, _device, _ro in _disks(root):
        if path in moved:
            source = _el.find("source")
            source.set("file", moved[path])
            for attr in ("index",):
                source.attrib.pop(attr, None)
            store = _el.find("backingStore")
            if store is not None and store.find("source") is None:
                _el.remove(store)
    return etree.tostring(root, encoding="unicode")


def _flags(options: MigrationOptions, persistent_source: bool) -> int:
    flags = 0
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
    return flags


def _delete_paths(conn: libvirt.virConnect, paths: list[str]) -> list[str]:
    removed = []
    for path in paths:
        with contextlib.suppress(libvirt.libvirtError):
            vol = _lookup_path(conn, path)
            if vol is not None:
                vol.delete(0)
                removed.append(path)
    return removed


def delete_volumes(uri: str, paths: list[str]) -> list[str]:
    """Delete the volumes at these paths on the host at uri (those that exist); the paths
    deleted."""
    with session(uri) as conn:
        return _delete_paths(conn, paths)


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
        persistent = bool(dom.isPersistent())
        active = bool(dom.isActive())
        live_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
        copies = _plan_copies(src, dst, dom, xml.parse(live_xml), options)
        params: dict[str, object] = {}
        if options.live and options.migration_uri:
            params[libvirt.VIR_MIGRATE_PARAM_URI] = options.migration_uri
        if options.bandwidth_mib:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(options.bandwidth_mib)
        if copies:
            if options.live:
                params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = [c.target for c in copies]
            params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = _retarget(live_xml, copies)
            if persistent and options.live:
                params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] = _retarget(
                    dom.XMLDesc(
                        libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_MIGRATABLE
                    ),
                    copies,
                )
        elif not active and persistent:
            params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = dom.XMLDesc(
                libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_MIGRATABLE
            )
        flags = _flags(options, persistent)

        made: list[str] = []
        try:
            pool = _target_pool(dst, options.target_pool) if copies else None
            for copy in copies:
                spec = VolumeSpec(
                    name=os.path.basename(copy.dest), capacity=copy.capacity, format=copy.format
                )
                assert pool is not None
                vol = pool.createXML(xml.build_volume(spec), 0)
                made.append(vol.path())
                if on_target_volume is not None:
                    on_target_volume(vol.path())
        except Exception:
            _delete_paths(dst, made)
            raise

    if copies and not options.live:
        # libvirt moves only the definition offline: the panel streams the volumes first.
        try:
            _stream_copies(source_uri, target_uri, copies, progress)
        except BaseException:
            with session(target_uri) as dst:
                _delete_paths(dst, made)
            raise

    outcome: dict[str, object] = {}

    def work() -> None:
        # libvirt connections take concurrent calls: the loop below reads the job's
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
    switched = False
    try:
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
    except BaseException:
        _abort(source_uri, target_uri, uuid, thread, made, outcome)
        if "dom" in outcome:
            # Too late: the domain already runs on the target. Report the migration done.
            return _finish(source_uri, target_uri, uuid, copies, remove_source_disks)
        raise
    if "error" in outcome:
        with session(target_uri) as dst:
            _delete_paths(dst, made)
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
            if _domain_by_uuid(src, uuid) is None:
                removed = _delete_paths(src, [c.source for c in copies])
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
        dom = _domain_by_uuid(src, uuid)
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
            _delete_paths(dst, made)


def domain_location(source_uri: str, target_uri: str, uuid: str) -> tuple[str, str]:
    """(state on the source, state on the target), "absent" where the host has no such
    domain: what to check after a migration that failed or was cancelled."""
    from .domains import STATES

    states = []
    for uri in (source_uri, target_uri):
        with session(uri) as conn:
            dom = _domain_by_uuid(conn, uuid)
            states.append("absent" if dom is None else STATES.get(dom.state()[0], "running"))
    return states[0], states[1]


@dataclass(frozen=True)
class Settled:
    """Where a domain ended after a migration whose driver went away: "source", "target"
    or "" (on neither), with its state there and what was done to get there."""

    host: str
    info: DomainInfo | None
    done: tuple[str, ...]


def _job_active(dom: libvirt.virDomain) -> bool:
    try:
        return dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE
    except libvirt.libvirtError:
        return False


def settle_migration(source_uri: str, target_uri: str, uuid: str) -> Settled:
    """After the process driving a migration died mid-way, leave the domain on one host.

    A migration still running is aborted. The domain stays on the target only if it runs
    there and no longer runs on the source (the hand-over happened); otherwise the
    target's incoming copy is destroyed and undefined, and a source left paused by the
    migration resumes.
    """
    done: list[str] = []
    with session(source_uri) as src, session(target_uri) as dst:
        s = _domain_by_uuid(src, uuid)
        if s is not None and _job_active(s):
            with contextlib.suppress(libvirt.libvirtError):
                s.abortJob()
                done.append("aborted the migration")
            deadline = time.monotonic() + ABORT_WAIT_SECONDS
            while _job_active(s) and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
        d = _domain_by_uuid(dst, uuid)
        s_active = s is not None and bool(s.isActive())
        d_state = d.state()[0] if d is not None else None
        if d is not None and not s_active and d_state == libvirt.VIR_DOMAIN_RUNNING:
            return Settled("target", domain_info(d), tuple(done))
        if d is not None and s is None:
            # The source let go of it: the target's copy is the only one; let it run.
            if d_state == libvirt.VIR_DOMAIN_PAUSED:
                d.resume()
                done.append("resumed it on the target")
            return Settled("target", domain_info(d), tuple(done))
        if d is not None:
            if d.isActive():
                d.destroy()
            if d.isPersistent():
                d.undefine()
            done.append("removed the incomplete copy on the target")
        if s is None:
            return Settled("", None, tuple(done))
        state, reason = s.state()
        if state == libvirt.VIR_DOMAIN_PAUSED and reason in (
            libvirt.VIR_DOMAIN_PAUSED_MIGRATION,
            libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED,
            libvirt.VIR_DOMAIN_PAUSED_UNKNOWN,
        ):
            s.resume()
            done.append("resumed it on the source")
        return Settled("source", domain_info(s), tuple(done))
