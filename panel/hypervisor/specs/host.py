"""The values about a host: its facts and check report, a full inventory of it, and the
usage counters of the host and its domains.
"""

from __future__ import annotations

from dataclasses import dataclass

from panel.hypervisor.specs.domains import DomainInfo
from panel.hypervisor.specs.networks import NetworkInfo
from panel.hypervisor.specs.storage import PoolInfo, VolumeInfo


@dataclass(frozen=True)
class NumaCell:
    """One NUMA cell of a host."""

    id: int
    memory_bytes: int
    cpus: int


@dataclass(frozen=True)
class HostFacts:
    """What a host is: identity, versions, CPU topology, NUMA and memory."""

    hostname: str
    uri: str
    driver: str
    libvirt_version: str
    hypervisor_version: str
    arch: str
    cpu_model: str
    cpu_vendor: str
    cpus: int
    mhz: int
    sockets: int
    cores: int
    threads: int
    numa_cells: tuple[NumaCell, ...]
    memory_total_bytes: int
    memory_free_bytes: int
    host_uuid: str
    is_local: bool
    cpu_features: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    """One line of the host check: what was tested, pass/warn/fail, and why."""

    name: str
    status: str  # "pass" | "warn" | "fail"
    detail: str


@dataclass(frozen=True)
class HostReport:
    """The facts, the check list and the domain type the checks settled on."""

    facts: HostFacts
    checks: tuple[Check, ...]
    domain_type: str
    reserved_memory_bytes: int = 0


@dataclass(frozen=True)
class Inventory:
    """Everything a full reconcile reads from one host."""

    domains: tuple[DomainInfo, ...]
    pools: tuple[PoolInfo, ...]
    volumes: tuple[VolumeInfo, ...]
    networks: tuple[NetworkInfo, ...]


@dataclass(frozen=True)
class DomainCounters:
    """A running domain's cumulative usage counters at one reading (bytes, ns)."""

    uuid: str
    name: str
    state: str
    vcpus: int
    cpu_time_ns: int
    memory_current_bytes: int
    memory_max_bytes: int
    memory_rss_bytes: int
    memory_guest_used_bytes: int
    disk_read_bytes: int
    disk_write_bytes: int
    disk_read_reqs: int
    disk_write_reqs: int
    net_rx_bytes: int
    net_tx_bytes: int
    partial: bool = False


@dataclass(frozen=True)
class HostCounters:
    """A host's CPU times and memory and its active domains' counters, read at `at`."""

    uri: str
    at: float
    cpus: int
    cpu_busy_ns: int
    cpu_total_ns: int
    memory_total_bytes: int
    memory_used_bytes: int
    domains: tuple[DomainCounters, ...] = ()
