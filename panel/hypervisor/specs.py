"""Typed values that cross the boundary: specs going in, facts coming out.

Everything here is a frozen dataclass of plain values, so no libvirt object
ever leaves panel.hypervisor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Transient guests the host check boots for a few seconds; never part of the inventory.
PROBE_PREFIX = "panel-kvm-probe-"


@dataclass(frozen=True)
class DiskSpec:
    """A disk to attach: a file or volume path, its format and where the guest sees it.

    An empty path on a cdrom is an empty tray. cache, io and discard left empty
    use the hypervisor's defaults. format and backing (the chain below it, nearest
    first) are what the panel recorded: qemu is given them and reads nothing from the
    image's header.
    """

    path: str
    target: str = "vda"
    format: str = "qcow2"
    bus: str = "virtio"
    device: str = "disk"
    readonly: bool = False
    cache: str = ""
    io: str = ""
    discard: str = ""
    shareable: bool = False
    backing: tuple[BackingInfo, ...] = ()


@dataclass(frozen=True)
class NicSpec:
    """A network interface on a libvirt network or a host bridge.

    Bandwidth limits are average rates in KiB/s (libvirt's unit); None: no limit.
    clean_traffic puts libvirt's clean-traffic nwfilter on it (no MAC, IP or ARP spoofing,
    no other layer-2 traffic): the NIC may use only filter_ip when given, else the address
    libvirt learns by ip_learning ("dhcp": from its DHCP lease only; "any": its first packet).
    """

    network: str | None = None
    bridge: str | None = None
    mac: str | None = None
    model: str = "virtio"
    link_up: bool = True
    inbound_kib: int | None = None
    outbound_kib: int | None = None
    clean_traffic: bool = False
    filter_ip: str | None = None
    ip_learning: str = "dhcp"


@dataclass(frozen=True)
class DomainSpec:
    """What a new domain looks like; turned into XML by xml.build_domain()."""

    name: str
    vcpus: int = 1
    memory_mib: int = 256
    domain_type: str = "qemu"
    uuid: str | None = None
    arch: str = "x86_64"
    machine: str | None = None
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    boot: tuple[str, ...] = ("hd",)
    disks: tuple[DiskSpec, ...] = ()
    nics: tuple[NicSpec, ...] = ()
    serial_console: bool = True
    vnc: bool = True
    bios_serial: bool = False
    description: str = ""
    firmware: str = "bios"  # "bios", or "efi" for UEFI (libvirt picks the OVMF build)
    on_reboot: str = "restart"  # "destroy" for an installer's one-off boot


@dataclass(frozen=True)
class DiskInfo:
    """A disk as the domain's XML describes it."""

    target: str
    device: str
    bus: str
    source: str
    format: str
    cache: str = ""


@dataclass(frozen=True)
class NicInfo:
    """A network interface as the domain's XML describes it."""

    mac: str
    type: str
    source: str
    model: str


@dataclass(frozen=True)
class GraphicsInfo:
    """A graphics console (VNC or SPICE) and where it listens."""

    type: str
    port: int | None
    listen: str


@dataclass(frozen=True)
class DomainInfo:
    """A domain's identity, state and shape as libvirt reports it."""

    uuid: str
    name: str
    state: str
    vcpus: int
    memory_mib: int
    persistent: bool
    autostart: bool
    domain_type: str = "qemu"
    firmware: str = "bios"
    disks: tuple[DiskInfo, ...] = ()
    nics: tuple[NicInfo, ...] = ()
    graphics: tuple[GraphicsInfo, ...] = ()
    # What it may grow to: the larger of the running maximum and the definition's (a
    # maximum raised in the definition applies from the next boot). 0: not read.
    max_vcpus: int = 0
    max_memory_mib: int = 0


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
class PoolInfo:
    """A storage pool and its space, in bytes."""

    uuid: str
    name: str
    type: str
    state: str
    target_path: str
    capacity: int
    allocation: int
    available: int
    autostart: bool
    persistent: bool


@dataclass(frozen=True)
class PoolSpec:
    """A storage pool to define; which source fields matter depends on the type.

    source_host/source_port: the server (netfs, iscsi, iscsi-direct, rbd, gluster);
    source_path: the export or directory on it (netfs, gluster) or the target IQN
    (iscsi, iscsi-direct); source_devices: block devices (fs, logical, disk, zfs);
    source_name: a volume group, RBD pool, gluster volume or zfs pool;
    source_format: the filesystem (fs, netfs) or partition label (disk);
    adapter: the SCSI host adapter (scsi); initiator: our IQN (iscsi-direct).
    """

    name: str
    type: str
    target_path: str = ""
    source_host: str = ""
    source_port: int | None = None
    source_path: str = ""
    source_devices: tuple[str, ...] = ()
    source_name: str = ""
    source_format: str = ""
    adapter: str = ""
    initiator: str = ""


@dataclass(frozen=True)
class VolumeSpec:
    """A volume to create; preallocation is off, metadata, falloc or full."""

    name: str
    capacity: int
    format: str = "qcow2"
    preallocation: str = "off"
    backing_path: str = ""
    backing_format: str = ""


@dataclass(frozen=True)
class BackingInfo:
    """One image of a volume's backing chain."""

    path: str
    format: str


@dataclass(frozen=True)
class VolumeInfo:
    """A volume in a pool, sizes in bytes."""

    pool: str
    name: str
    key: str
    path: str
    format: str
    capacity: int
    allocation: int
    backing: tuple[BackingInfo, ...] = ()
    physical: int = 0  # bytes the file takes (a raw image's real size); 0: not reported


@dataclass(frozen=True)
class NetworkInfo:
    """A virtual network: its mode, bridge, addresses, DHCP and DNS settings.

    mode is the panel's name (nat, routed, isolated, open, bridge, macvtap,
    hostdev); forward_mode is libvirt's (nat, route, bridge, vepa, ...).
    ipv4/ipv6: {"address", "prefix", "dhcp_start", "dhcp_end"} when set.
    """

    uuid: str
    name: str
    mode: str
    bridge: str
    active: bool
    autostart: bool
    persistent: bool
    ipv4: dict[str, str | int] = field(default_factory=dict)
    ipv6: dict[str, str | int] = field(default_factory=dict)
    forward_mode: str = ""
    dev: str = ""
    mtu: int | None = None
    domain: str = ""
    dhcp_hosts: tuple[DhcpHost, ...] = ()
    dns_hosts: tuple[DnsHost, ...] = ()
    xml: str = ""


@dataclass(frozen=True)
class DhcpHost:
    """A static DHCP host: this MAC always gets this IP (and name)."""

    mac: str
    ip: str
    name: str = ""


@dataclass(frozen=True)
class DnsHost:
    """A DNS entry the network's dnsmasq answers: ip -> hostnames."""

    ip: str
    hostnames: tuple[str, ...]


@dataclass(frozen=True)
class IPConfig:
    """An address of the host on a network, its prefix, DHCP range and static hosts."""

    family: str  # "ipv4" | "ipv6"
    address: str
    prefix: int
    dhcp_start: str = ""
    dhcp_end: str = ""
    hosts: tuple[DhcpHost, ...] = ()


@dataclass(frozen=True)
class NetworkSpec:
    """A network to define; turned into XML by networks.build_network()."""

    name: str
    mode: str  # nat | routed | isolated | open | bridge | macvtap | hostdev
    bridge: str = ""
    dev: str = ""
    macvtap_mode: str = "bridge"  # bridge | vepa | private | passthrough
    ips: tuple[IPConfig, ...] = ()
    dns_hosts: tuple[DnsHost, ...] = ()
    domain: str = ""
    mtu: int | None = None


@dataclass(frozen=True)
class LeaseInfo:
    """A DHCP lease handed out by a network's dnsmasq (virsh net-dhcp-leases)."""

    mac: str
    ip: str
    prefix: int
    family: str
    hostname: str
    client_id: str
    expiry: int
    iface: str


@dataclass(frozen=True)
class InterfaceInfo:
    """A host network interface: physical, bridge, tap/vnet, ... with state and addresses."""

    name: str
    kind: str
    mac: str
    mtu: int | None
    state: str
    addresses: tuple[str, ...] = ()
    members: tuple[str, ...] = ()
    master: str = ""


@dataclass(frozen=True)
class NicDetail:
    """A VM's NIC with what the live definition adds: vnet device, link, bandwidth."""

    mac: str
    type: str
    source: str
    model: str
    target: str
    link_up: bool
    inbound_kib: int | None
    outbound_kib: int | None


@dataclass(frozen=True)
class Inventory:
    """Everything a full reconcile reads from one host."""

    domains: tuple[DomainInfo, ...]
    pools: tuple[PoolInfo, ...]
    volumes: tuple[VolumeInfo, ...]
    networks: tuple[NetworkInfo, ...]


@dataclass(frozen=True)
class AddressInfo:
    """An IP address of a guest NIC and where it was learned (lease, agent, arp)."""

    mac: str
    interface: str
    address: str
    prefix: int
    source: str


@dataclass(frozen=True)
class BlockInfo:
    """A disk's sizes as the host sees them, in bytes."""

    target: str
    capacity: int
    allocation: int
    physical: int


@dataclass(frozen=True)
class DomainDetails:
    """What dominfo, domifaddr, domblklist/domblkinfo, domiflist and the agent tell."""

    info: DomainInfo
    id: int | None
    os_type: str
    state_reason: str
    cpu_time_ns: int
    max_memory_mib: int
    has_managed_save: bool
    addresses: tuple[AddressInfo, ...]
    blocks: tuple[BlockInfo, ...]
    vnet_devices: dict[str, str]
    agent: dict[str, object]
    xml: str


@dataclass(frozen=True)
class SnapshotDisk:
    """One disk of a snapshot: internal (inside the qcow2), external (an overlay file) or no."""

    target: str
    snapshot: str
    file: str = ""
    chain: tuple[str, ...] = ()  # external: the overlay file, then its backing files down


@dataclass(frozen=True)
class SnapshotInfo:
    """A domain snapshot as libvirt describes it; created is a Unix time, size in bytes
    (None where qemu-img cannot read the images, on remote hosts)."""

    name: str
    description: str
    parent: str
    state: str
    kind: str
    memory: bool
    current: bool
    created: int
    disks: tuple[SnapshotDisk, ...] = ()
    size: int | None = None


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
