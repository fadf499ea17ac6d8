"""Checks of what a new network asks for: names, MACs, addresses and DHCP ranges, DNS
entries, and the host's bridges and devices; each refusal says what to give instead."""

from __future__ import annotations

import contextlib
import ipaddress
import re
from typing import Any

from networking.choices import NetworkMode
from networking.models import Network
from panel import hypervisor
from panel.exceptions import ServiceError
from panel.models import Host

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,49}\Z")
IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}\Z")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")
HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z"
)
IP_MODES = {NetworkMode.NAT, NetworkMode.ROUTED, NetworkMode.ISOLATED, NetworkMode.OPEN}
DEVICE_MODES = {NetworkMode.MACVTAP, NetworkMode.HOSTDEV}
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def normalize_mac(value: str, field: str = "mac") -> str:
    """A MAC as aa:bb:cc:dd:ee:ff, or a ServiceError saying what is wrong with it."""
    mac = (value or "").strip().lower().replace("-", ":")
    if not MAC_RE.match(mac):
        raise ServiceError(
            f"'{value}' is not a MAC address: write six pairs of hex digits separated by "
            "colons, e.g. 52:54:00:12:34:56.",
            field=field,
        )
    if int(mac[:2], 16) & 1:
        raise ServiceError(
            f"{mac} is a multicast address: a NIC needs a unicast MAC (an even first byte), "
            "e.g. 52:54:00:12:34:56.",
            field=field,
        )
    if mac == "00:00:00:00:00:00":
        raise ServiceError("00:00:00:00:00:00 is not a usable MAC address.", field=field)
    return mac


def _ip(value: str, field: str, net: IPNetwork, what: str):
    try:
        addr = ipaddress.ip_address((value or "").strip())
    except ValueError:
        raise ServiceError(f"The {what} '{value}' is not an IP address.", field=field) from None
    if addr not in net:
        raise ServiceError(
            f"The {what} {addr} is outside the subnet {net}: pick an address inside it.",
            field=field,
        )
    if (
        net.version == 4
        and net.prefixlen < 31
        and addr in (net.network_address, net.broadcast_address)
    ):
        raise ServiceError(
            f"The {what} {addr} is the subnet's network or broadcast address: pick a host "
            "address inside it.",
            field=field,
        )
    return addr


def ip_config(family: str, data: dict[str, Any] | None, hosts: list[dict[str, Any]]):
    """An IPConfig from form/API values and its subnet, or (None, None) when no address was
    given."""
    data = dict(data or {})
    address = str(data.get("address") or "").strip()
    if not address:
        if data.get("dhcp_start") or data.get("dhcp_end") or (hosts and family == "ipv4"):
            raise ServiceError(
                f"A DHCP range or static hosts need the network's {family} address: give "
                "the address and prefix too.",
                field=family,
            )
        return None, None
    iface = _interface(family, address, data)
    net = iface.network
    gateway = _ip(str(iface.ip), family, net, "address")
    start, end = _dhcp_range(family, data, net, gateway)
    static = _static_hosts(hosts, net, gateway) if family == "ipv4" else ()
    config = hypervisor.IPConfig(
        family=family,
        address=str(iface.ip),
        prefix=net.prefixlen,
        dhcp_start=start,
        dhcp_end=end,
        hosts=static,
    )
    return config, net


def _interface(
    family: str, address: str, data: dict[str, Any]
) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """The network's own address and prefix (in address or data's prefix), of family."""
    label = "IPv4" if family == "ipv4" else "IPv6"
    example = "10.213.5.1 with prefix 24" if family == "ipv4" else "fd00:213:5::1 with prefix 64"
    prefix = data.get("prefix")
    if "/" in address:
        address, _, cidr_prefix = address.partition("/")
        prefix = prefix or cidr_prefix
    try:
        iface = ipaddress.ip_interface(f"{address}/{int(str(prefix).strip())}")
    except (ValueError, TypeError):
        raise ServiceError(
            f"'{data.get('address')}' with prefix '{prefix or ''}' is not a valid {label} "
            f"address and prefix: give e.g. {example}.",
            field=family,
        ) from None
    want = 4 if family == "ipv4" else 6
    if iface.version != want:
        raise ServiceError(
            f"{address} is not an {label} address: give e.g. {example}.", field=family
        )
    low, high = (8, 30) if want == 4 else (8, 126)
    if not low <= iface.network.prefixlen <= high:
        raise ServiceError(
            f"A /{iface.network.prefixlen} {label} subnet is not usable here: use a prefix "
            f"from {low} to {high}.",
            field=family,
        )
    return iface


def _dhcp_range(family: str, data: dict[str, Any], net: IPNetwork, gateway: Any) -> tuple[str, str]:
    """The DHCP range's first and last address inside net, or two empty strings for none."""
    if not (data.get("dhcp_start") or data.get("dhcp_end")):
        return "", ""
    if not (data.get("dhcp_start") and data.get("dhcp_end")):
        raise ServiceError(
            "Give both the first and the last address of the DHCP range (or neither).",
            field=family,
        )
    first = _ip(str(data["dhcp_start"]), family, net, "DHCP range start")
    last = _ip(str(data["dhcp_end"]), family, net, "DHCP range end")
    if first > last:
        raise ServiceError(
            f"The DHCP range starts at {first}, after its end {last}: swap them.",
            field=family,
        )
    if first <= gateway <= last:
        raise ServiceError(
            f"The DHCP range {first}–{last} contains the network's own address {gateway}: "
            "start the range after it.",
            field=family,
        )
    return str(first), str(last)


def _static_hosts(
    hosts: list[dict[str, Any]], net: IPNetwork, gateway: Any
) -> tuple[hypervisor.DhcpHost, ...]:
    """The static DHCP hosts, each with its own MAC and its own address inside net."""
    static: list[hypervisor.DhcpHost] = []
    seen_macs: set[str] = set()
    seen_ips: set[str] = set()
    for entry in hosts:
        mac = normalize_mac(str(entry.get("mac", "")), field="dhcp_hosts")
        ip = _ip(str(entry.get("ip", "")), "dhcp_hosts", net, "static host address")
        name = str(entry.get("name") or "").strip()
        if name and not HOSTNAME_RE.match(name):
            raise ServiceError(
                f"'{name}' is not a host name: use letters, digits and '-' (e.g. web1).",
                field="dhcp_hosts",
            )
        if ip == gateway:
            raise ServiceError(
                f"The static host {mac} cannot have {ip}: it is the network's own address.",
                field="dhcp_hosts",
            )
        if mac in seen_macs or str(ip) in seen_ips:
            raise ServiceError(
                f"The static host {mac} → {ip} repeats a MAC or an address of another "
                "static host: each needs its own.",
                field="dhcp_hosts",
            )
        seen_macs.add(mac)
        seen_ips.add(str(ip))
        static.append(hypervisor.DhcpHost(mac=mac, ip=str(ip), name=name))
    return tuple(static)


def network_subnets(network: Network) -> list[IPNetwork]:
    """The subnets of network's IPv4 and IPv6 addresses (none when it has no address)."""
    found = []
    for data in (network.ipv4, network.ipv6):
        if data.get("address"):
            with contextlib.suppress(ValueError):
                found.append(
                    ipaddress.ip_interface(f"{data['address']}/{data.get('prefix', 24)}").network
                )
    return found


def interfaces_by_name(host: Host) -> dict[str, hypervisor.InterfaceInfo] | None:
    """The host's interfaces by name, or None when they cannot be read (checks are skipped)."""
    try:
        found, _source = hypervisor.host_interfaces(host.uri)
    except hypervisor.HypervisorError:
        return None
    return {i.name: i for i in found}


def check_devices(
    host: Host,
    mode: str,
    bridge: str,
    dev: str,
    name: str,
    interfaces: dict[str, hypervisor.InterfaceInfo] | None,
) -> None:
    """Refuse bridge and device names that are taken, or missing where they must exist."""
    if bridge:
        _check_bridge(host, mode, bridge, name, interfaces)
    elif mode == NetworkMode.BRIDGE:
        raise ServiceError(
            "A bridged network needs the name of an existing host bridge (e.g. br0).",
            field="bridge",
        )
    if dev:
        if not IFNAME_RE.match(dev):
            raise ServiceError(
                f"'{dev}' is not an interface name: 1 to 15 letters, digits, '-', '_' or '.'.",
                field="dev",
            )
        if interfaces is not None and dev not in interfaces:
            raise ServiceError(
                f"{host.name} has no interface named {dev}: pick one from Host interfaces.",
                field="dev",
            )
    elif mode in DEVICE_MODES:
        what = (
            "physical NIC (e.g. eth0)"
            if mode == NetworkMode.MACVTAP
            else "SR-IOV physical function"
        )
        raise ServiceError(f"A {mode} network needs the host's {what}.", field="dev")


def _check_bridge(
    host: Host,
    mode: str,
    bridge: str,
    name: str,
    interfaces: dict[str, hypervisor.InterfaceInfo] | None,
) -> None:
    """A bridged network joins a host bridge no other network owns; any other mode names a
    new bridge that nothing on the host has yet."""
    if not IFNAME_RE.match(bridge):
        raise ServiceError(
            f"'{bridge}' is not a usable bridge name: 1 to 15 letters, digits, '-', '_' "
            "or '.' (e.g. virbr10).",
            field="bridge",
        )
    owner = Network.objects.filter(host=host, bridge=bridge).exclude(name=name).first()
    if mode == NetworkMode.BRIDGE:
        if owner is not None:
            raise ServiceError(
                f"The bridge {bridge} belongs to network '{owner.name}': attach VMs to that "
                "network instead.",
                field="bridge",
            )
        if interfaces is not None and bridge not in interfaces:
            raise ServiceError(
                f"{host.name} has no interface named {bridge}: create the bridge on the "
                "host first (see Host interfaces), or pick an existing one.",
                field="bridge",
            )
        return
    if owner is not None:
        raise ServiceError(
            f"The bridge name {bridge} is already in use by network '{owner.name}' on "
            f"{host.name}: choose another name, or leave it empty for libvirt to pick one.",
            field="bridge",
        )
    if interfaces is not None and bridge in interfaces:
        raise ServiceError(
            f"An interface named {bridge} already exists on {host.name}: choose another "
            "bridge name, or leave it empty for libvirt to pick one.",
            field="bridge",
        )


def check_host_addresses(
    host: Host, subnets: list, interfaces: dict[str, hypervisor.InterfaceInfo] | None
) -> None:
    """Refuse a subnet the host already has on one of its own interfaces (e.g. its LAN)."""
    bridges = set(Network.objects.filter(host=host).values_list("bridge", flat=True))
    for iface in (interfaces or {}).values():
        if iface.name in bridges:
            continue  # a network's own bridge: compared with that network already
        for address in iface.addresses:
            try:
                theirs = ipaddress.ip_interface(address).network
            except ValueError:
                continue
            if theirs.is_link_local:
                continue
            for mine in subnets:
                if mine.version == theirs.version and mine.overlaps(theirs):
                    raise ServiceError(
                        f"The subnet {mine} overlaps {theirs} on {host.name}'s interface "
                        f"{iface.name}: pick a subnet the host does not use.",
                        field=f"ipv{mine.version}",
                    )


def dns_entries(entries: list[dict[str, Any]]) -> tuple[hypervisor.DnsHost, ...]:
    """DNS host entries from form/API values: an IP address and at least one host name each."""
    result = []
    for entry in entries:
        raw_ip = str(entry.get("ip") or "").strip()
        try:
            ip = ipaddress.ip_address(raw_ip)
        except ValueError:
            raise ServiceError(
                f"The DNS entry address '{raw_ip}' is not an IP address.", field="dns_hosts"
            ) from None
        names = entry.get("hostnames") or []
        if isinstance(names, str):
            names = names.replace(",", " ").split()
        names = [str(n).strip() for n in names if str(n).strip()]
        if not names:
            raise ServiceError(f"Give at least one host name for {ip}.", field="dns_hosts")
        for n in names:
            if not HOSTNAME_RE.match(n):
                raise ServiceError(
                    f"'{n}' is not a host name: use letters, digits, '-' and dots.",
                    field="dns_hosts",
                )
        result.append(hypervisor.DnsHost(ip=str(ip), hostnames=tuple(names)))
    return tuple(result)
