"""Tuning a domain like virsh vcpupin, emulatorpin, setvcpus, setmem, blkdeviotune and numatune.

Each verb takes live and persistent (virsh's --live and --config) and
returns the tuning read back from libvirt, so the caller shows what the host
really applied.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess

import libvirt
from lxml import etree

from .connection import session
from .errors import HypervisorError
from .host import is_local
from .specs import (
    IOTUNE_FIELDS,
    CellMemory,
    DiskTuning,
    HostCpu,
    HostTuning,
    IoTune,
    NicTuning,
    TuningInfo,
)

NUMA_MODES = {
    "strict": libvirt.VIR_DOMAIN_NUMATUNE_MEM_STRICT,
    "preferred": libvirt.VIR_DOMAIN_NUMATUNE_MEM_PREFERRED,
    "interleave": libvirt.VIR_DOMAIN_NUMATUNE_MEM_INTERLEAVE,
}
_NUMA_NAMES = {v: k for k, v in NUMA_MODES.items()}


def _flags(live: bool, persistent: bool) -> int:
    flags = 0
    if live:
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    if persistent:
        flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if not flags:
        raise HypervisorError("Choose live, persistent or both.")
    return flags


def _cpus(mask: tuple[bool, ...] | list[bool]) -> tuple[int, ...]:
    return tuple(i for i, on in enumerate(mask) if on)


def _cpumap(cpus: tuple[int, ...], host_cpus: int) -> tuple[bool, ...]:
    return tuple(i in cpus for i in range(host_cpus))


def _read(dom: libvirt.virDomain, host_cpus: int) -> TuningInfo:
    live = bool(dom.isActive())
    flags = libvirt.VIR_DOMAIN_AFFECT_LIVE if live else libvirt.VIR_DOMAIN_AFFECT_CONFIG
    desc = etree.fromstring(dom.XMLDesc(0 if live else libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    vcpus = dom.vcpusFlags(flags)
    max_vcpus = dom.vcpusFlags(flags | libvirt.VIR_DOMAIN_VCPU_MAXIMUM)
    pins = tuple(_cpus(mask) for mask in dom.vcpuPinInfo(flags))
    try:
        emulator = _cpus(dom.emulatorPinInfo(flags))
    except libvirt.libvirtError:
        emulator = tuple(range(host_cpus))
    numa_mode, nodeset = "", ""
    memory = desc.find("numatune/memory")
    if memory is not None:
        numa_mode, nodeset = memory.get("mode", "strict"), memory.get("nodeset", "")
    disks = []
    for disk in desc.iterfind("devices/disk[@device='disk']"):
        target = disk.find("target")
        if target is None:
            continue
        dev = target.get("dev", "")
        try:
            params = dom.blockIoTune(dev, flags)
        except libvirt.libvirtError:
            params = {}
        disks.append(DiskTuning(dev, IoTune(**{f: int(params.get(f, 0)) for f in IOTUNE_FIELDS})))
    nics = []
    for iface in desc.iterfind("devices/interface"):
        mac = iface.find("mac")
        if mac is None:
            continue
        rates = [iface.find(f"bandwidth/{way}") for way in ("inbound", "outbound")]
        nics.append(
            NicTuning(
                mac=mac.get("address", ""),
                inbound_kib=int(rates[0].get("average", 0)) if rates[0] is not None else 0,
                outbound_kib=int(rates[1].get("average", 0)) if rates[1] is not None else 0,
            )
        )
    return TuningInfo(
        nics=tuple(nics),
        host_cpus=host_cpus,
        vcpus=vcpus,
        max_vcpus=max_vcpus,
        memory_kib=int(desc.findtext("currentMemory") or 0),
        max_memory_kib=int(desc.findtext("memory") or 0),
        vcpu_pins=pins,
        emulator_pin=emulator,
        numa_mode=numa_mode,
        numa_nodeset=nodeset,
        hugepages=desc.find("memoryBacking/hugepages") is not None,
        disks=tuple(disks),
        live=live,
    )


def domain_tuning(uri: str, uuid: str) -> TuningInfo:
    """The domain's tuning: live values when it runs, the definition's when it does not."""
    with session(uri) as conn:
        return _read(conn.lookupByUUIDString(uuid), conn.getInfo()[2])


def pin_vcpus(
    uri: str, uuid: str, pins: dict[int, tuple[int, ...]], *, live: bool, persistent: bool
) -> TuningInfo:
    """Pin each vCPU to host CPUs, like virsh vcpupin (an empty tuple: all CPUs)."""
    flags = _flags(live, persistent)
    with session(uri) as conn:
        host_cpus = conn.getInfo()[2]
        dom = conn.lookupByUUIDString(uuid)
        for vcpu, cpus in sorted(pins.items()):
            dom.pinVcpuFlags(vcpu, _cpumap(cpus or tuple(range(host_cpus)), host_cpus), flags)
        return _read(dom, host_cpus)


def pin_emulator(
    uri: str, uuid: str, cpus: tuple[int, ...], *, live: bool, persistent: bool
) -> TuningInfo:
    """Pin qemu's emulator threads to host CPUs, like virsh emulatorpin."""
    flags = _flags(live, persistent)
    with session(uri) as conn:
        host_cpus = conn.getInfo()[2]
        dom = conn.lookupByUUIDString(uuid)
        dom.pinEmulator(_cpumap(cpus or tuple(range(host_cpus)), host_cpus), flags)
        return _read(dom, host_cpus)


def set_memory(
    uri: str, uuid: str, kib: int, *, live: bool, persistent: bool, maximum: bool = False
) -> TuningInfo:
    """Set current memory (the balloon, live) or, with maximum=True, the maximum (persistent)."""
    flags = _flags(live, persistent)
    if maximum:
        flags |= libvirt.VIR_DOMAIN_MEM_MAXIMUM
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        dom.setMemoryFlags(kib, flags)
        return _read(dom, conn.getInfo()[2])


def set_vcpus(
    uri: str, uuid: str, count: int, *, live: bool, persistent: bool, maximum: bool = False
) -> TuningInfo:
    """Set the vCPU count (hotplug when live) or, with maximum=True, the maximum (persistent)."""
    flags = _flags(live, persistent)
    if maximum:
        flags |= libvirt.VIR_DOMAIN_VCPU_MAXIMUM
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        dom.setVcpusFlags(count, flags)
        return _read(dom, conn.getInfo()[2])


def set_block_iotune(
    uri: str, uuid: str, target: str, iotune: IoTune, *, live: bool, persistent: bool
) -> TuningInfo:
    """Limit a disk's throughput and operations, like virsh blkdeviotune."""
    flags = _flags(live, persistent)
    params = {f: int(getattr(iotune, f)) for f in IOTUNE_FIELDS}
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        dom.setBlockIoTune(target, params, flags)
        return _read(dom, conn.getInfo()[2])


def set_numatune(
    uri: str, uuid: str, mode: str, nodeset: str, *, live: bool, persistent: bool
) -> TuningInfo:
    """Set the NUMA memory policy, like virsh numatune: mode and nodeset in the definition;
    live, only the nodeset moves (libvirt cannot change a running guest's mode)."""
    _flags(live, persistent)
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        if persistent:
            dom.setNumaParameters(
                {
                    libvirt.VIR_DOMAIN_NUMA_MODE: NUMA_MODES[mode],
                    libvirt.VIR_DOMAIN_NUMA_NODESET: nodeset,
                },
                libvirt.VIR_DOMAIN_AFFECT_CONFIG,
            )
        if live:
            dom.setNumaParameters(
                {libvirt.VIR_DOMAIN_NUMA_NODESET: nodeset}, libvirt.VIR_DOMAIN_AFFECT_LIVE
            )
        return _read(dom, conn.getInfo()[2])


def set_hugepages(uri: str, uuid: str, enabled: bool) -> TuningInfo:
    """Back the guest's memory with huge pages (or not) from its next boot: the definition's
    <memoryBacking><hugepages/></memoryBacking>, edited with lxml and defined again."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
        desc = etree.fromstring(dom.XMLDesc(flags).encode())
        backing = desc.find("memoryBacking")
        if enabled and (backing is None or backing.find("hugepages") is None):
            if backing is None:
                backing = etree.Element("memoryBacking")
                # The schema wants it right after the memory elements.
                anchor = desc.find("currentMemory")
                if anchor is None:
                    anchor = desc.find("memory")
                anchor.addnext(backing)
            etree.SubElement(backing, "hugepages")
        elif not enabled and backing is not None:
            for element in backing.findall("hugepages"):
                backing.remove(element)
            if len(backing) == 0:
                desc.remove(backing)
        dom = conn.defineXMLFlags(etree.tostring(desc, encoding="unicode"), 0)
        return _read(dom, conn.getInfo()[2])


def _local_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _tuned_profile() -> str:
    """The active tuned profile, '' when tuned-adm is not installed (read-only)."""
    if not shutil.which("tuned-adm"):
        return ""
    try:
        out = subprocess.run(
            ["tuned-adm", "active"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.split(":", 1)[1].strip() if ":" in out else out.strip()


def _cells(
    cells_xml: list[etree._Element], free_mem: list[int], free_pages: dict
) -> tuple[list[HostCpu], list[CellMemory]]:
    """The CPUs and the memory (free, and in huge pages) of each NUMA cell in the host's
    capabilities, with the free amounts libvirt reported per cell."""
    cpus: list[HostCpu] = []
    cells: list[CellMemory] = []
    for cell in cells_xml:
        cid = int(cell.get("id", "0"))
        for cpu in cell.iterfind("./cpus/cpu"):
            cpus.append(
                HostCpu(
                    id=int(cpu.get("id", "0")),
                    socket=int(cpu.get("socket_id", "0")),
                    core=int(cpu.get("core_id", cpu.get("id", "0"))),
                    cell=cid,
                )
            )
        pages = tuple(
            (
                int(p.get("size", "0")),
                int(p.text or 0),
                int(free_pages.get(cid, {}).get(int(p.get("size", "0")), 0)),
            )
            for p in cell.iterfind("pages")
            if p.get("size") != "4"
        )
        mem = cell.find("memory")
        cells.append(
            CellMemory(
                id=cid,
                memory_bytes=int(mem.text or 0) * 1024 if mem is not None else 0,
                free_bytes=int(free_mem[len(cells)]) if len(free_mem) > len(cells) else 0,
                pages=pages,
            )
        )
    return cpus, cells


def host_tuning(uri: str) -> HostTuning:
    """The host's CPU topology, NUMA cells with free memory and huge pages, KSM and THP."""
    with session(uri) as conn:
        caps = etree.fromstring(conn.getCapabilities().encode())
        cells_xml = caps.findall("./host/topology/cells/cell")
        free_mem: list[int] = []
        free_pages: dict = {}
        if cells_xml:
            with contextlib.suppress(libvirt.libvirtError):
                free_mem = conn.getCellsFreeMemory(0, len(cells_xml))
            sizes = sorted({int(p.get("size", "0")) for p in caps.iterfind(".//cell/pages")} - {4})
            if sizes:
                with contextlib.suppress(libvirt.libvirtError):
                    free_pages = conn.getFreePages(sizes, 0, len(cells_xml))
        ksm: dict = {}
        with contextlib.suppress(libvirt.libvirtError):
            ksm = dict(conn.getMemoryParameters())
        host_cpus = conn.getInfo()[2]
    cpus, cells = _cells(cells_xml, free_mem, free_pages)
    if not cpus:
        cpus = [HostCpu(id=i, socket=0, core=i, cell=0) for i in range(host_cpus)]
    local = is_local(uri) and not uri.startswith("test")
    thp = _local_text("/sys/kernel/mm/transparent_hugepage/enabled") if local else ""
    ksm = {k.removeprefix("shm_"): v for k, v in ksm.items()}
    if local and "run" not in ksm and (run := _local_text("/sys/kernel/mm/ksm/run")):
        ksm["run"] = int(run)
    return HostTuning(
        cpus=tuple(sorted(cpus, key=lambda c: c.id)),
        cells=tuple(cells),
        ksm=ksm,
        transparent_hugepages=thp,
        tuned_profile=_tuned_profile() if local else "",
    )


def set_interface_bandwidth(
    uri: str,
    uuid: str,
    mac: str,
    inbound_kib: int,
    outbound_kib: int,
    *,
    live: bool,
    persistent: bool,
) -> tuple[int, int]:
    """Limit a NIC's average KiB/s each way (0: no limit), like virsh domiftune; returns the
    limits read back (live ones when live was asked)."""
    _flags(live, persistent)
    params = {"inbound.average": int(inbound_kib), "outbound.average": int(outbound_kib)}
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        # This call takes live and config one at a time.
        if live:
            dom.setInterfaceParameters(mac, params, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        if persistent:
            dom.setInterfaceParameters(mac, params, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        read = libvirt.VIR_DOMAIN_AFFECT_LIVE if live else libvirt.VIR_DOMAIN_AFFECT_CONFIG
        back = dom.interfaceParameters(mac, read)
    return int(back.get("inbound.average", 0)), int(back.get("outbound.average", 0))
