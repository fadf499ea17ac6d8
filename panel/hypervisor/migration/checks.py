"""The pre-check of a migration: one Check per condition the target must meet (reachable,
state, name, architecture, CPU, memory, devices, options, disks and the pool copying them).
"""

from __future__ import annotations

import contextlib
import os

import libvirt
from lxml import etree

from panel.hypervisor import xml
from panel.hypervisor.connection import session
from panel.hypervisor.errors import Conflict, HostUnavailable
from panel.hypervisor.host import reserved_memory_bytes
from panel.hypervisor.migration.domain import (
    disk_capacity,
    domain_by_uuid,
    domain_disks,
    host_uuid,
    passthrough_devices,
    running_pool,
    volume_at,
    volume_seen_at,
)
from panel.hypervisor.migration.values import NEEDS_COPY, MigrationOptions, under_shared_paths
from panel.hypervisor.specs import Check

# Pool types whose storage libvirt itself knows to be shared between hosts.
LIBVIRT_SHARED_POOLS = ("netfs", "rbd", "gluster", "sheepdog")


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


def _same_path_check(
    target: str, path: str, there: libvirt.virStorageVol, options: MigrationOptions
) -> Check:
    """A writable disk of a live migration that the target has at the same path: shared
    storage libvirt knows by its type, or one the admin declared shared on both hosts."""
    if under_shared_paths(path, options.shared_paths):
        return Check(
            f"disk {target}",
            "pass",
            f"{path} is on storage declared shared on both hosts: it is not copied.",
        )
    pool = there.storagePoolLookupByVolume()
    kind = etree.fromstring(pool.XMLDesc(0).encode()).get("type", "")
    if kind in LIBVIRT_SHARED_POOLS:
        return Check(f"disk {target}", "pass", f"{path} is on {kind} storage both hosts see.")
    return Check(
        f"disk {target}",
        "fail",
        f"{path} is at the same path on the target (pool '{pool.name()}'), but libvirt "
        "cannot tell it is the same storage and refuses to migrate the running VM. If it "
        "is one shared storage (NFS, a cluster file system), declare its pool shared "
        "storage on both hosts; if not, move the disk to a pool the target does not have "
        "and choose storage copy.",
    )


def _disk_check(
    src: libvirt.virConnect,
    dst: libvirt.virConnect,
    disk: tuple[str, str, str, bool],
    options: MigrationOptions,
) -> Check | None:
    """The check of one disk (target, path, device, read-only); None when it is to be copied."""
    target, path, device, readonly = disk
    there = volume_seen_at(dst, path)
    if there is not None:
        if readonly or device != "disk" or not options.live:
            return Check(f"disk {target}", "pass", f"{path} is reachable on the target.")
        return _same_path_check(target, path, there, options)
    if readonly or device != "disk":
        return Check(
            f"disk {target}",
            "fail",
            f"The {device} {target} ({path}) is not on storage the target sees. "
            "Eject it or put it on shared storage.",
        )
    if not options.copy_storage:
        return Check(
            f"disk {target}",
            "fail",
            f"{path} is {NEEDS_COPY}. Choose storage copy "
            "(all or incremental) and a target pool, or move it to shared storage.",
        )
    if not options.live and volume_at(src, path) is None:
        return Check(
            f"disk {target}",
            "fail",
            f"{path} is not a volume of a running pool on the source: offline, the panel "
            "copies volumes only. Start its pool (or define one for its directory).",
        )
    return None


def _pool_checks(
    dst: libvirt.virConnect, to_copy: list[tuple[str, str, int]], options: MigrationOptions
) -> list[Check]:
    """Whether the target pool takes the disks to copy (target, path, capacity): a pass
    for each of them, or the one failure of the pool."""
    if not options.target_pool:
        return [
            Check("target pool", "fail", "Storage copy needs a pool on the target: choose one.")
        ]
    try:
        pool = running_pool(dst, options.target_pool)
    except Conflict as exc:
        return [Check("target pool", "fail", str(exc))]
    names = set(pool.listVolumes())
    clash = [os.path.basename(p) for _t, p, _c in to_copy if os.path.basename(p) in names]
    if clash:
        return [
            Check(
                "target pool",
                "fail",
                f"Pool '{options.target_pool}' on the target already has {', '.join(clash)}. "
                "Remove or rename it there, or choose another pool.",
            )
        ]
    need = sum(c for _t, _p, c in to_copy)
    available = int(pool.info()[3])
    if need > available:
        return [
            Check(
                "target pool",
                "fail",
                f"Pool '{options.target_pool}' has {available // 2**20} MiB available; the "
                f"copied disks need up to {need // 2**20} MiB. Choose another pool.",
            )
        ]
    return [
        Check(
            f"disk {target}",
            "pass",
            f"{path} will be copied to pool '{options.target_pool}' on the target.",
        )
        for target, path, _capacity_bytes in to_copy
    ]


def _disk_checks(
    src: libvirt.virConnect,
    dst: libvirt.virConnect,
    dom: libvirt.virDomain,
    root: etree._Element,
    options: MigrationOptions,
) -> list[Check]:
    checks: list[Check] = []
    to_copy: list[tuple[str, str, int]] = []
    for _el, target, path, device, readonly in domain_disks(root):
        check = _disk_check(src, dst, (target, path, device, readonly), options)
        if check is not None:
            checks.append(check)
        else:
            to_copy.append((target, path, disk_capacity(dom, src, target, path)))
    if to_copy:
        checks.extend(_pool_checks(dst, to_copy, options))
    return checks


def _state_check(name: str, active: bool, live: bool) -> Check:
    if live and not active:
        return Check(
            "state",
            "fail",
            f"{name} is not running: live migration moves a running VM. "
            "Start it, or choose offline migration.",
        )
    if not live and active:
        return Check(
            "state",
            "fail",
            f"{name} is running: offline migration moves a shut-off VM. "
            "Shut it down, or choose live migration.",
        )
    return Check("state", "pass", f"{name} is {'running' if active else 'shut off'}.")


def _name_check(dst: libvirt.virConnect, uuid: str, name: str) -> Check:
    if domain_by_uuid(dst, uuid) is not None:
        return Check("name", "fail", f"The target already has this VM ({name}); remove it there.")
    try:
        dst.lookupByName(name)
    except libvirt.libvirtError:
        return Check("name", "pass", f"No domain named {name} on the target.")
    return Check(
        "name", "fail", f"The target already has a domain named {name}. Rename one of them."
    )


def _architecture_checks(
    src: libvirt.virConnect, dst: libvirt.virConnect, root: etree._Element
) -> list[Check]:
    """Whether the target runs guests of the domain's architecture and type, then its CPU."""
    os_type = root.find("./os/type")
    arch = os_type.get("arch", "") if os_type is not None else ""
    domain_type = root.get("type", "")
    caps = etree.fromstring(dst.getCapabilities().encode())
    supported = caps.xpath("./guest[arch/@name=$arch]/arch/domain/@type", arch=arch)
    if domain_type not in supported:
        return [
            Check(
                "architecture",
                "fail",
                f"The target cannot run {arch} guests of type {domain_type}. "
                "Choose a host of the same architecture.",
            )
        ]
    return [
        Check("architecture", "pass", f"The target runs {arch} ({domain_type})."),
        _cpu_check(src, dst, root, arch),
    ]


def _device_check(name: str, root: etree._Element) -> Check:
    devices = passthrough_devices(root)
    if devices:
        return Check(
            "devices",
            "fail",
            f"{name} uses {', '.join(devices)}: such devices are tied to this host and "
            "cannot migrate. Detach them first.",
        )
    return Check("devices", "pass", "No passthrough, SR-IOV or vGPU device.")


def _option_checks(options: MigrationOptions) -> list[Check]:
    checks = []
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
        if host_uuid(src) == host_uuid(dst):
            return (Check("target host", "fail", "The VM is already on this host."),)
        dom = src.lookupByUUIDString(uuid)
        name = dom.name()
        active = bool(dom.isActive())
        checks.append(_state_check(name, active, options.live))
        checks.append(_name_check(dst, uuid, name))
        root = xml.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE if active else 0))
        checks.extend(_architecture_checks(src, dst, root))
        checks.extend(_memory_checks(dst, dom, options.live, reserved_bytes))
        checks.append(_device_check(name, root))
        checks.extend(_option_checks(options))
        checks.extend(_disk_checks(src, dst, dom, root, options))
    return tuple(checks)
