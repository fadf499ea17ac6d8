"""The values about networks: a network to define and its addresses, what libvirt reports
of a network, its leases, the host's interfaces and a domain's NICs.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
