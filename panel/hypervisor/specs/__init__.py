"""Typed values that cross the boundary: specs going in, facts coming out.

Everything here is a frozen dataclass of plain values, so no libvirt object
ever leaves panel.hypervisor.

    domains    a new domain's spec, its disks and NICs; a domain's info, details, snapshots
    storage    pools and volumes: specs and what libvirt reports of them
    networks   networks: specs, info and leases; host interfaces; a domain's NICs
    host       a host's facts, check report and inventory; host and domain usage counters
    tuning     a domain's tuning, and the host's CPUs, NUMA memory and hugepages
"""

from panel.hypervisor.specs.domains import (
    PROBE_PREFIX,
    AddressInfo,
    BlockInfo,
    DiskInfo,
    DiskSpec,
    DomainDetails,
    DomainInfo,
    DomainSpec,
    GraphicsInfo,
    NicInfo,
    NicSpec,
    SnapshotDisk,
    SnapshotInfo,
)
from panel.hypervisor.specs.host import (
    Check,
    DomainCounters,
    HostCounters,
    HostFacts,
    HostReport,
    Inventory,
    NumaCell,
)
from panel.hypervisor.specs.networks import (
    DhcpHost,
    DnsHost,
    InterfaceInfo,
    IPConfig,
    LeaseInfo,
    NetworkInfo,
    NetworkSpec,
    NicDetail,
)
from panel.hypervisor.specs.storage import BackingInfo, PoolInfo, PoolSpec, VolumeInfo, VolumeSpec
from panel.hypervisor.specs.tuning import (
    IOTUNE_FIELDS,
    CellMemory,
    DiskTuning,
    HostCpu,
    HostTuning,
    IoTune,
    NicTuning,
    TuningInfo,
)

__all__ = [
    "IOTUNE_FIELDS",
    "PROBE_PREFIX",
    "AddressInfo",
    "BackingInfo",
    "BlockInfo",
    "CellMemory",
    "Check",
    "DhcpHost",
    "DiskInfo",
    "DiskSpec",
    "DiskTuning",
    "DnsHost",
    "DomainCounters",
    "DomainDetails",
    "DomainInfo",
    "DomainSpec",
    "GraphicsInfo",
    "HostCounters",
    "HostCpu",
    "HostFacts",
    "HostReport",
    "HostTuning",
    "IPConfig",
    "InterfaceInfo",
    "Inventory",
    "IoTune",
    "LeaseInfo",
    "NetworkInfo",
    "NetworkSpec",
    "NicDetail",
    "NicInfo",
    "NicSpec",
    "NicTuning",
    "NumaCell",
    "PoolInfo",
    "PoolSpec",
    "SnapshotDisk",
    "SnapshotInfo",
    "TuningInfo",
    "VolumeInfo",
    "VolumeSpec",
]
