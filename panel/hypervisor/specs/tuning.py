"""The values about tuning: a domain's CPU, memory, disk and NIC tuning, and the host's
CPUs, NUMA memory and hugepages that tuning uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

IOTUNE_FIELDS = (
    "total_bytes_sec",
    "read_bytes_sec",
    "write_bytes_sec",
    "total_iops_sec",
    "read_iops_sec",
    "write_iops_sec",
)


@dataclass(frozen=True)
class IoTune:
    """A disk's I/O limits, like virsh blkdeviotune (0: no limit)."""

    total_bytes_sec: int = 0
    read_bytes_sec: int = 0
    write_bytes_sec: int = 0
    total_iops_sec: int = 0
    read_iops_sec: int = 0
    write_iops_sec: int = 0


@dataclass(frozen=True)
class DiskTuning:
    """One disk's target and its I/O limits."""

    target: str
    iotune: IoTune


@dataclass(frozen=True)
class NicTuning:
    """One NIC's MAC and its average bandwidth limits in KiB/s (0: none)."""

    mac: str
    inbound_kib: int
    outbound_kib: int


@dataclass(frozen=True)
class TuningInfo:
    """A domain's CPU, memory and I/O tuning as it is now (live when running, else defined).

    vcpu_pins[i] are the host CPUs vCPU i may run on; emulator_pin those of qemu's
    own threads. host_cpus is how many CPUs the host has.
    """

    host_cpus: int
    vcpus: int
    max_vcpus: int
    memory_kib: int
    max_memory_kib: int
    vcpu_pins: tuple[tuple[int, ...], ...]
    emulator_pin: tuple[int, ...]
    numa_mode: str
    numa_nodeset: str
    hugepages: bool
    disks: tuple[DiskTuning, ...]
    live: bool
    nics: tuple[NicTuning, ...] = ()


@dataclass(frozen=True)
class HostCpu:
    """One logical CPU of the host and where it sits."""

    id: int
    socket: int
    core: int
    cell: int


@dataclass(frozen=True)
class CellMemory:
    """A NUMA cell: its memory, what is free, and its huge pages {size KiB: (total, free)}."""

    id: int
    memory_bytes: int
    free_bytes: int
    pages: tuple[tuple[int, int, int], ...]  # (size KiB, total, free), 4 KiB pages left out


@dataclass(frozen=True)
class HostTuning:
    """What tuning a guest can be drawn over: the host's CPUs, cells, huge pages, KSM, THP."""

    cpus: tuple[HostCpu, ...]
    cells: tuple[CellMemory, ...]
    ksm: dict = field(default_factory=dict)
    transparent_hugepages: str = ""
    tuned_profile: str = ""
