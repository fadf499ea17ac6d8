"""What a host is and what it can do: facts, a virt-host-validate style check,
and the domain type (kvm or qemu) the panel should give new guests there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid as uuidlib
from pathlib import Path
from urllib.parse import urlsplit

import libvirt
from lxml import etree

from .connection import check_uri, session
from .console import ConsoleStream
from .errors import HypervisorError
from .specs import PROBE_PREFIX, Check, DomainSpec, HostFacts, HostReport, NumaCell
from .xml import build_domain

log = logging.getLogger(__name__)

GIB = 1024**3
PROBE_READY = b"panel-test-guest ready"


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def is_local(uri: str) -> bool:
    """True when the URI points at this machine (no host part, or a unix socket)."""
    parts = urlsplit(uri)
    return not parts.hostname and not parts.scheme.endswith(("+ssh", "+tls", "+tcp", "+libssh2"))


def reserved_memory_bytes(total_bytes: int) -> int:
    """Memory to keep for the host itself, by the handbook's rule.

    Up to 64 GiB: 2 GiB. Above: 2 GiB plus 0.5 GiB for every 64 GiB of memory
    (256 GiB keeps 2 + 0.5 * 4 = 4 GiB, leaving 252 GiB for guests).
    """
    if total_bytes <= 64 * GIB:
        return 2 * GIB
    return int(2 * GIB + 0.5 * GIB * (total_bytes / (64 * GIB)))


def host_facts(uri: str) -> HostFacts:
    """Identity, versions, CPU topology, NUMA cells and memory of the host."""
    uri = check_uri(uri)
    with session(uri) as conn:
        return read_facts(conn, uri)


def read_facts(conn: libvirt.virConnect, uri: str) -> HostFacts:
    """host_facts() over an open connection (libvirt errors are the caller's to map)."""
    caps = etree.fromstring(conn.getCapabilities().encode())
    model, mem_mib, cpus, mhz, _nodes, sockets, cores, threads = conn.getInfo()
    try:
        hostname = conn.getHostname()
    except libvirt.libvirtError:
        hostname = urlsplit(uri).hostname or "localhost"
    try:
        free = conn.getFreeMemory()
    except libvirt.libvirtError:
        free = 0
    hv_version = conn.getVersion()
    driver = conn.getType()
    lib_version = conn.getLibVersion()
    cells = []
    for cell in caps.iterfind("./host/topology/cells/cell"):
        mem = cell.find("memory")
        mem_bytes = int(mem.text or 0) * 1024 if mem is not None else 0
        cells.append(
            NumaCell(
                id=int(cell.get("id", "0")),
                memory_bytes=mem_bytes,
                cpus=len(cell.findall("./cpus/cpu")),
            )
        )
    topo = caps.find("./host/cpu/topology")
    if topo is not None:
        sockets = int(topo.get("sockets", sockets))
        cores = int(topo.get("cores", cores))
        threads = int(topo.get("threads", threads))
    features = tuple(f.get("name", "") for f in caps.iterfind("./host/cpu/feature"))
    return HostFacts(
        hostname=hostname,
        uri=uri,
        driver=driver,
        libvirt_version=_version(lib_version),
        hypervisor_version=_version(hv_version),
        arch=caps.findtext("./host/cpu/arch") or model,
        cpu_model=caps.findtext("./host/cpu/model") or model,
        cpu_vendor=caps.findtext("./host/cpu/vendor") or "",
        cpus=cpus,
        mhz=mhz,
        sockets=sockets,
        cores=cores,
        threads=threads,
        numa_cells=tuple(cells),
        memory_total_bytes=mem_mib * 1024 * 1024,
        memory_free_bytes=free,
        host_uuid=caps.findtext("./host/uuid") or "",
        is_local=is_local(uri),
        cpu_features=features,
    )


def _hardware_virt(facts: HostFacts) -> Check:
    flags = set(facts.cpu_features)
    if facts.is_local:
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("flags"):
                    flags |= set(line.split(":", 1)[1].split())
                    break
    if "vmx" in flags or "svm" in flags:
        kind = "Intel VT-x (vmx)" if "vmx" in flags else "AMD-V (svm)"
        return Check("Hardware virtualization", "pass", f"The CPU offers {kind}.")
    return Check(
        "Hardware virtualization",
        "fail",
        "The CPU does not offer VT-x or AMD-V (or it is off in the firmware): "
        "guests run under software emulation, much slower. Enable it in the BIOS.",
    )


def _kvm_device(conn: libvirt.virConnect, facts: HostFacts) -> Check:
    try:
        conn.getDomainCapabilities(None, facts.arch, None, "kvm", 0)
    except libvirt.libvirtError as exc:
        return Check(
            "KVM device",
            "fail",
            f"libvirt cannot use /dev/kvm: {exc.get_error_message()}. "
            "Load the kvm_intel or kvm_amd module and check the device's permissions.",
        )
    if facts.is_local:
        dev = Path("/dev/kvm")
        try:
            st = dev.stat()
        except OSError:
            return Check(
                "KVM device", "fail", "/dev/kvm does not exist: load kvm_intel or kvm_amd."
            )
        if st.st_mode & 0o060 != 0o060 and st.st_mode & 0o006 != 0o006:
            return Check(
                "KVM device",
                "warn",
                "/dev/kvm is not readable and writable by its group: qemu (user "
                "libvirt-qemu, group kvm) cannot open it. Run: chgrp kvm /dev/kvm; chmod 660 /dev/kvm.",
            )
    return Check("KVM device", "pass", "/dev/kvm is present and libvirt can use it.")


def _probe_guest(uri: str, arch: str, domain_type: str, probe_dir: str, wait: float) -> str:
    """Boot the probe kernel as a transient guest; return 'ready', 'silent' or 'missing'."""
    kernel = os.path.join(probe_dir, "vmlinuz")
    initrd = os.path.join(probe_dir, "initrd.img")
    spec = DomainSpec(
        name=f"{PROBE_PREFIX}{uuidlib.uuid4().hex[:8]}",
        domain_type=domain_type,
        arch=arch,
        memory_mib=128,
        kernel=kernel,
        initrd=initrd,
        cmdline="console=ttyS0 quiet panic=-1",
        vnc=False,
    )
    with session(uri) as conn:
        try:
            dom = conn.createXML(build_domain(spec), libvirt.VIR_DOMAIN_START_PAUSED)
        except libvirt.libvirtError as exc:
            message = exc.get_error_message() or ""
            if "No such file" in message or "Cannot access" in message:
                return "missing"
            raise
        uuid = dom.UUIDString()
    stream = None
    try:
        stream = ConsoleStream(uri, uuid)
        with session(uri) as conn:
            conn.lookupByUUIDString(uuid).resume()
        stream.read_until(PROBE_READY, wait)
        return "ready"
    except TimeoutError:
        return "silent"
    finally:
        if stream is not None:
            stream.close()
        with contextlib.suppress(HypervisorError), session(uri) as conn:
            conn.lookupByUUIDString(uuid).destroy()


def _kvm_runs(uri: str, arch: str, probe_dir: str) -> Check:
    """Boot a real guest kernel under KVM: /dev/kvm existing is not proof (nested KVM)."""
    start = time.monotonic()
    try:
        outcome = _probe_guest(uri, arch, "kvm", probe_dir, wait=12.0)
    except HypervisorError as exc:
        return Check(
            "KVM guests run", "fail", f"A KVM guest did not start: {exc}. New VMs use qemu (TCG)."
        )
    if outcome == "ready":
        return Check(
            "KVM guests run",
            "pass",
            f"A test kernel booted under KVM in {time.monotonic() - start:.1f} s.",
        )
    if outcome == "missing":
        return Check(
            "KVM guests run",
            "warn",
            f"Could not boot the probe kernel: {probe_dir} is missing on this host. "
            "Run scripts/build-test-guest.sh there; until then new VMs use qemu (TCG).",
        )
    return Check(
        "KVM guests run",
        "fail",
        "/dev/kvm opens, but a guest kernel started under KVM printed nothing in 12 s "
        "(typical of nested virtualization that does not work). New VMs use qemu (TCG).",
    )


def _device_check(name: str, path: str, missing: str) -> Check:
    if os.path.exists(path):
        return Check(name, "pass", f"{path} is present.")
    return Check(name, "warn", missing)


def _cgroup_check() -> Check:
    needed = {"cpu", "cpuset", "memory", "pids", "io"}
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    if v2.exists():
        have = set(v2.read_text().split())
    else:
        have = {p.name for p in Path("/sys/fs/cgroup").glob("*") if p.is_dir()}
        have |= {"io"} if "blkio" in have else set()
    missing = sorted(needed - have)
    if not missing:
        return Check("cgroup controllers", "pass", "cpu, cpuset, memory, io and pids are mounted.")
    return Check(
        "cgroup controllers",
        "warn",
        f"Missing cgroup controllers: {', '.join(missing)}. vCPU pinning, memory and I/O "
        "limits that need them will not apply.",
    )


def _iommu_check() -> Check:
    groups = Path("/sys/kernel/iommu_groups")
    if groups.is_dir() and any(groups.iterdir()):
        return Check("IOMMU", "pass", "IOMMU groups exist: PCI passthrough is possible.")
    return Check(
        "IOMMU",
        "warn",
        "No IOMMU groups: PCI device passthrough is not possible. Enable VT-d/AMD-Vi in "
        "the firmware and boot with intel_iommu=on (or amd_iommu=on).",
    )


def host_report(uri: str, probe_dir: str) -> HostReport:
    """Facts plus the checks; settles the domain type by what really ran."""
    facts = host_facts(uri)
    reserved = reserved_memory_bytes(facts.memory_total_bytes)
    if facts.driver.upper() == "TEST":
        simulated = Check("Hypervisor", "warn", "This is libvirt's test driver: a simulated host.")
        return HostReport(
            facts=facts, checks=(simulated,), domain_type="test", reserved_memory_bytes=reserved
        )

    checks = [_hardware_virt(facts)]
    with session(uri) as conn:
        device = _kvm_device(conn, facts)
    checks.append(device)
    domain_type = "qemu"
    if device.status != "fail":
        runs = _kvm_runs(uri, facts.arch, probe_dir)
        checks.append(runs)
        if runs.status == "pass":
            domain_type = "kvm"
    if facts.is_local:
        checks.append(
            _device_check(
                "vhost-net",
                "/dev/vhost-net",
                "/dev/vhost-net is missing: guest networking runs in qemu, slower. "
                "Run: modprobe vhost_net.",
            )
        )
        checks.append(
            _device_check(
                "TUN device",
                "/dev/net/tun",
                "/dev/net/tun is missing: guests cannot get tap NICs. Run: modprobe tun.",
            )
        )
        checks.append(_cgroup_check())
        checks.append(_iommu_check())
    else:
        checks.append(
            Check(
                "Device checks",
                "warn",
                "vhost-net, tun, cgroups and IOMMU are checked only on the local host; "
                "run virt-host-validate on this host to see them.",
            )
        )
    if domain_type == "qemu":
        checks.append(
            Check(
                "Domain type",
                "warn",
                "New VMs run under qemu (TCG, software emulation): correct but slow.",
            )
        )
    else:
        checks.append(Check("Domain type", "pass", "New VMs run under KVM."))
    return HostReport(
        facts=facts, checks=tuple(checks), domain_type=domain_type, reserved_memory_bytes=reserved
    )
