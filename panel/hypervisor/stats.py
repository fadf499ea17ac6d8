"""Usage counters of a host and all its running domains, read in one bulk call.

The collector calls host_counters() once per host per interval: one
getAllDomainStats for every active domain (no per-domain calls), plus the
node's CPU times and memory. Counters are cumulative; rates are computed
above this package from two readings.
"""

from __future__ import annotations

import contextlib
import time

import libvirt

from .connection import check_uri, session
from .specs import DomainCounters, HostCounters

DOMAIN_STATS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_INTERFACE
    | libvirt.VIR_DOMAIN_STATS_BLOCK
)
_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "running",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


def _sum(record: dict[str, int], prefix: str, count_key: str, field: str) -> int:
    return sum(int(record.get(f"{prefix}.{i}.{field}", 0)) for i in range(record.get(count_key, 0)))


def domain_counters(uuid: str, name: str, record: dict[str, int]) -> DomainCounters:
    """One domain's getAllDomainStats record as plain counters (KiB as bytes)."""
    kib = 1024
    available = int(record.get("balloon.available", 0)) * kib
    unused = int(record.get("balloon.unused", 0)) * kib
    return DomainCounters(
        uuid=uuid,
        name=name,
        state=_STATES.get(int(record.get("state.state", 0)), "shutoff"),
        vcpus=int(record.get("vcpu.current", 0)) or 1,
        cpu_time_ns=int(record.get("cpu.time", 0)),
        memory_current_bytes=int(record.get("balloon.current", 0)) * kib,
        memory_max_bytes=int(record.get("balloon.maximum", 0)) * kib,
        memory_rss_bytes=int(record.get("balloon.rss", 0)) * kib,
        memory_guest_used_bytes=available - unused if available and unused else 0,
        disk_read_bytes=_sum(record, "block", "block.count", "rd.bytes"),
        disk_write_bytes=_sum(record, "block", "block.count", "wr.bytes"),
        disk_read_reqs=_sum(record, "block", "block.count", "rd.reqs"),
        disk_write_reqs=_sum(record, "block", "block.count", "wr.reqs"),
        net_rx_bytes=_sum(record, "net", "net.count", "rx.bytes"),
        net_tx_bytes=_sum(record, "net", "net.count", "tx.bytes"),
        # Without the domain's job (NOWAIT on a busy domain) qemu lists the disks but
        # cannot read their counters: a rate against this reading would be wrong.
        partial=bool(record.get("block.count", 0)) and "block.0.rd.reqs" not in record,
    )


def host_counters(uri: str) -> HostCounters:
    """The host's CPU times and memory plus every active domain's counters, in bulk."""
    uri = check_uri(uri)
    with session(uri) as conn:
        at = time.time()
        records = conn.getAllDomainStats(
            DOMAIN_STATS, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
        )
        cpus = conn.getInfo()[2]
        cpu: dict[str, int] = {}
        with contextlib.suppress(libvirt.libvirtError):
            cpu = conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS)
        mem: dict[str, int] = {}
        with contextlib.suppress(libvirt.libvirtError):
            mem = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
        # name() and UUIDString() read the cached object: no RPC per domain.
        domains = tuple(
            domain_counters(dom.UUIDString(), dom.name(), record) for dom, record in records
        )
    idle = int(cpu.get("idle", 0)) + int(cpu.get("iowait", 0))
    busy = int(cpu.get("kernel", 0)) + int(cpu.get("user", 0))
    total_kib = int(mem.get("total", 0))
    available_kib = int(mem.get("free", 0)) + int(mem.get("buffers", 0)) + int(mem.get("cached", 0))
    return HostCounters(
        uri=uri,
        at=at,
        cpus=cpus,
        cpu_busy_ns=busy,
        cpu_total_ns=busy + idle,
        memory_total_bytes=total_kib * 1024,
        memory_used_bytes=max(total_kib - available_kib, 0) * 1024 if total_kib else 0,
        domains=domains,
    )
