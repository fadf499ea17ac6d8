"""Virtual networks as plain values: their XML built from a NetworkSpec and read back,
defining, starting, stopping and deleting them, and their DHCP leases.

Each panel mode maps to one libvirt shape:

    nat       <forward mode='nat'/> + bridge + ip (dnsmasq, masquerading)
    routed    <forward mode='route'/> + bridge + ip (no NAT)
    isolated  no <forward> + bridge (+ ip): guests reach each other and the host
    open      <forward mode='open'/>: libvirt adds no firewall rules
    bridge    <forward mode='bridge'/> + an existing host bridge
    macvtap   <forward mode='bridge|vepa|private|passthrough'><interface dev=.../>
    hostdev   <forward mode='hostdev' managed='yes'><pf dev=.../>: SR-IOV VFs
"""

from __future__ import annotations

import contextlib
from typing import Any

import libvirt
from lxml import etree

from panel.hypervisor.connection import session
from panel.hypervisor.errors import Conflict, HypervisorError
from panel.hypervisor.specs import DhcpHost, DnsHost, LeaseInfo, NetworkInfo, NetworkSpec
from panel.hypervisor.xml import xml_builder

MACVTAP_MODES = ("bridge", "vepa", "private", "passthrough")
_FORWARD = {"nat": "nat", "routed": "route", "open": "open", "bridge": "bridge"}


def sub_element(parent: etree._Element, tag: str, **attrs: str | None) -> etree._Element:
    """A child element with the attributes whose value is not None."""
    return etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})


@xml_builder
def build_network(spec: NetworkSpec) -> str:
    """Return the network XML for spec."""
    net = etree.Element("network")
    etree.SubElement(net, "name").text = spec.name
    if spec.mode in ("nat", "routed", "open", "bridge"):
        sub_element(net, "forward", mode=_FORWARD[spec.mode], dev=spec.dev or None)
    elif spec.mode == "macvtap":
        forward = sub_element(net, "forward", mode=spec.macvtap_mode)
        sub_element(forward, "interface", dev=spec.dev)
    elif spec.mode == "hostdev":
        forward = sub_element(net, "forward", mode="hostdev", managed="yes")
        sub_element(forward, "pf", dev=spec.dev)
    elif spec.mode != "isolated":
        raise HypervisorError(f"Unknown network mode '{spec.mode}'.")
    if spec.mode in ("nat", "routed", "isolated", "open", "bridge") and spec.bridge:
        attrs = {"name": spec.bridge}
        if spec.mode != "bridge":
            attrs.update(stp="on", delay="0")
        sub_element(net, "bridge", **attrs)
    if spec.mtu:
        sub_element(net, "mtu", size=str(spec.mtu))
    if spec.domain:
        sub_element(net, "domain", name=spec.domain, localOnly="yes")
    if spec.dns_hosts:
        dns = sub_element(net, "dns")
        for entry in spec.dns_hosts:
            host = sub_element(dns, "host", ip=entry.ip)
            for hostname in entry.hostnames:
                etree.SubElement(host, "hostname").text = hostname
    for ip in spec.ips:
        ip_el = sub_element(
            net,
            "ip",
            family="ipv6" if ip.family == "ipv6" else None,
            address=ip.address,
            prefix=str(ip.prefix),
        )
        if ip.dhcp_start or ip.hosts:
            dhcp = sub_element(ip_el, "dhcp")
            if ip.dhcp_start:
                sub_element(dhcp, "range", start=ip.dhcp_start, end=ip.dhcp_end)
            for host in ip.hosts:
                if ip.family == "ipv6":
                    # DHCPv6 hosts are matched by name (or DUID), not by MAC.
                    sub_element(dhcp, "host", name=host.name or None, ip=host.ip)
                else:
                    sub_element(dhcp, "host", mac=host.mac, name=host.name or None, ip=host.ip)
    return etree.tostring(net, pretty_print=True, encoding="unicode")


def _prefix(ip: etree._Element) -> int:
    if ip.get("prefix"):
        return int(ip.get("prefix", "0"))
    if ip.get("netmask"):
        return sum(bin(int(p)).count("1") for p in ip.get("netmask", "").split("."))
    return 64 if ip.get("family") == "ipv6" else 24


def _forwarding(root: etree._Element) -> tuple[str, str, str]:
    """(panel mode, libvirt forward mode, device) of a network's <forward>."""
    forward = root.find("forward")
    if forward is None:
        return "isolated", "", ""
    forward_mode = forward.get("mode", "nat")
    dev = forward.get("dev", "")
    if forward_mode == "hostdev":
        pf = forward.find("pf")
        return "hostdev", forward_mode, pf.get("dev", "") if pf is not None else dev
    if forward_mode in ("vepa", "private", "passthrough") or (
        forward_mode == "bridge" and forward.find("interface") is not None
    ):
        iface = forward.find("interface")
        return "macvtap", forward_mode, iface.get("dev", "") if iface is not None else dev
    mode = {"nat": "nat", "route": "routed", "open": "open", "bridge": "bridge"}.get(
        forward_mode, forward_mode
    )
    return mode, forward_mode, dev


def _addresses(
    root: etree._Element,
) -> tuple[dict[str, dict[str, str | int]], list[DhcpHost]]:
    """The first address of each family (with its DHCP range) and its DHCP hosts."""
    families: dict[str, dict[str, str | int]] = {"ipv4": {}, "ipv6": {}}
    dhcp_hosts: list[DhcpHost] = []
    for ip in root.iterfind("ip"):
        family = "ipv6" if ip.get("family") == "ipv6" else "ipv4"
        if families[family]:
            continue  # the panel shows the first address of each family
        values: dict[str, str | int] = {"address": ip.get("address", ""), "prefix": _prefix(ip)}
        rng = ip.find("./dhcp/range")
        if rng is not None:
            values["dhcp_start"] = rng.get("start", "")
            values["dhcp_end"] = rng.get("end", "")
        families[family] = values
        for host in ip.iterfind("./dhcp/host"):
            dhcp_hosts.append(
                DhcpHost(mac=host.get("mac", ""), ip=host.get("ip", ""), name=host.get("name", ""))
            )
    return families, dhcp_hosts


def parse_network(xml: str, *, active: bool, autostart: bool, persistent: bool) -> NetworkInfo:
    """Read a network's mode, bridge, addresses, DHCP and DNS settings from its XML."""
    root = etree.fromstring(xml.encode())
    mode, forward_mode, dev = _forwarding(root)
    bridge = root.find("bridge")
    mtu = root.find("mtu")
    domain = root.find("domain")
    families, dhcp_hosts = _addresses(root)
    dns_hosts = tuple(
        DnsHost(
            ip=h.get("ip", ""),
            hostnames=tuple(n.text or "" for n in h.iterfind("hostname")),
        )
        for h in root.iterfind("./dns/host")
    )
    return NetworkInfo(
        uuid=root.findtext("uuid") or "",
        name=root.findtext("name") or "",
        mode=mode,
        bridge=bridge.get("name", "") if bridge is not None else "",
        active=active,
        autostart=autostart,
        persistent=persistent,
        ipv4=families["ipv4"],
        ipv6=families["ipv6"],
        forward_mode=forward_mode,
        dev=dev,
        mtu=int(mtu.get("size", "0")) or None if mtu is not None else None,
        domain=domain.get("name", "") if domain is not None else "",
        dhcp_hosts=tuple(dhcp_hosts),
        dns_hosts=dns_hosts,
        xml=xml,
    )


def _network_info(net: libvirt.virNetwork) -> NetworkInfo:
    return parse_network(
        net.XMLDesc(0),
        active=bool(net.isActive()),
        autostart=bool(net.autostart()),
        persistent=bool(net.isPersistent()),
    )


def list_networks(uri: str) -> list[NetworkInfo]:
    """Every virtual network on the host."""
    with session(uri) as conn:
        result = []
        for net in conn.listAllNetworks(0):
            with contextlib.suppress(libvirt.libvirtError):
                # A network removed while we list it simply drops out.
                result.append(_network_info(net))
        return result


def get_network(uri: str, name: str) -> NetworkInfo:
    """One network by name; NotFound when the host has none."""
    with session(uri) as conn:
        return _network_info(conn.networkLookupByName(name))


def define_network(
    uri: str, spec: NetworkSpec, *, start: bool = True, autostart: bool = False
) -> NetworkInfo:
    """Define a persistent network from spec, then start it and set autostart.

    If starting fails (libvirt or dnsmasq refuse it) the definition is removed
    again, so a refused network leaves nothing behind.
    """
    xml = build_network(spec)
    with session(uri) as conn:
        with contextlib.suppress(libvirt.libvirtError):
            conn.networkLookupByName(spec.name)
            raise Conflict(f"A network named '{spec.name}' already exists on this host.")
        net = conn.networkDefineXML(xml)
        try:
            if start:
                net.create()
            if autostart:
                net.setAutostart(1)
        except libvirt.libvirtError:
            with contextlib.suppress(libvirt.libvirtError):
                if net.isActive():
                    net.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                net.undefine()
            raise
        return _network_info(net)


def start_network(uri: str, name: str) -> NetworkInfo:
    """Start a defined network (bridge, dnsmasq, firewall rules)."""
    with session(uri) as conn:
        net = conn.networkLookupByName(name)
        if net.isActive():
            raise Conflict(f"Network '{name}' is already active.")
        net.create()
        return _network_info(net)


def stop_network(uri: str, name: str) -> NetworkInfo:
    """Stop a network; guests on it lose their link until it starts again."""
    with session(uri) as conn:
        net = conn.networkLookupByName(name)
        if not net.isActive():
            raise Conflict(f"Network '{name}' is not active.")
        net.destroy()
        return _network_info(net)


def set_network_autostart(uri: str, name: str, enabled: bool) -> NetworkInfo:
    """Start (or not) the network when libvirtd starts."""
    with session(uri) as conn:
        net = conn.networkLookupByName(name)
        if not net.isPersistent():
            raise Conflict(f"Network '{name}' is transient: autostart needs a defined network.")
        net.setAutostart(1 if enabled else 0)
        return _network_info(net)


def delete_network(uri: str, name: str) -> None:
    """Stop (if active) and undefine a network."""
    with session(uri) as conn:
        net = conn.networkLookupByName(name)
        if net.isActive():
            net.destroy()
        if net.isPersistent():
            net.undefine()


def network_xml(uri: str, name: str) -> str:
    """The network's XML as libvirt holds it."""
    with session(uri) as conn:
        return conn.networkLookupByName(name).XMLDesc(0)


def network_leases(uri: str, name: str) -> tuple[LeaseInfo, ...]:
    """The DHCP leases of a network (virsh net-dhcp-leases)."""
    with session(uri) as conn:
        net = conn.networkLookupByName(name)
        if not net.isActive():
            return ()
        return tuple(parse_leases(net.DHCPLeases(None, 0) or []))


def parse_leases(raw: list[dict[str, Any]]) -> list[LeaseInfo]:
    """Turn libvirt's lease dicts (virNetworkGetDHCPLeases) into LeaseInfo."""
    leases = []
    for lease in raw:
        leases.append(
            LeaseInfo(
                mac=str(lease.get("mac") or ""),
                ip=str(lease.get("ipaddr") or ""),
                prefix=int(lease.get("prefix") or 0),
                family="ipv6" if lease.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV6 else "ipv4",
                hostname=str(lease.get("hostname") or ""),
                client_id=str(lease.get("clientid") or ""),
                expiry=int(lease.get("expirytime") or 0),
                iface=str(lease.get("iface") or ""),
            )
        )
    return sorted(leases, key=lambda x: (x.family, x.ip))
