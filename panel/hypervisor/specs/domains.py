"""The values about domains: the specs of a new domain, its disks and NICs, what libvirt
reports of a domain and its details, and its snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass

from panel.hypervisor.specs.storage import BackingInfo

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
    vnc_port: int | None = None  # None: the first free one (libvirt's autoport)
    # Loopback, where the panel reaches it on its own machine or through an SSH tunnel;
    # "" for the host's own vnc_listen (qemu.conf), as the displays of qemu+tls hosts need.
    vnc_listen: str = "127.0.0.1"
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
