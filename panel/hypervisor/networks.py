"""Virtual networks, DHCP leases, VM NICs and host interfaces, as plain values.

Network XML is built from a NetworkSpec and read back with lxml. Each panel
mode maps to one libvirt shape:

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
import dataclasses
import json
import secrets
import subprocess

import libvirt
from lxml import etree

from .connection import session
from .domains import affect_flags, domain_info
from .errors import Conflict, HypervisorError, NotFound
from .host import is_local
from .specs import (
    DhcpHost,
    DnsHost,
    DomainInfo,
    InterfaceInfo,
    IPConfig,
    LeaseInfo,
    NetworkInfo,
    NetworkSpec,
    NicDetail,
    NicSpec,
)
from .xml import add_traffic_filter, xml_builder

MACVTAP_MODES = ("bridge", "vepa", "private", "passthrough")
_FORWARD = {"nat": "nat", "routed": "route", "open": "open", "bridge": "bridge"}


def _sub(parent: etree._Element, tag: str, **attrs: str | None) -> etree._Element:
    return etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})


# --- network XML ------------------------------------------------------------------------


@xml_builder
def build_network(spec: NetworkSpec) -> str:
    """Return the network XML for spec."""
    net = etree.Element("network")
    etree.SubElement(net, "name").text = spec.name
    if spec.mode in ("nat", "routed", "open", "bridge"):
        _sub(net, "forward", mode=_FORWARD[spec.mode], dev=spec.dev or None)
    elif spec.mode == "macvtap":
        forward = _sub(net, "forward", mode=spec.macvtap_mode)
        _sub(forward, "interface", dev=spec.dev)
    elif spec.mode == "hostdev":
        forward = _sub(net, "forward", mode="hostdev", managed="yes")
        _sub(forward, "pf", dev=spec.dev)
    elif spec.mode != "isolated":
        raise HypervisorError(f"Unknown network mode '{spec.mode}'.")
    if spec.mode in ("nat", "routed", "isolated", "open", "bridge") and spec.bridge:
        attrs = {"name": spec.bridge}
        if spec.mode != "bridge":
            attrs.update(stp="on", delay="0")
        _sub(net, "bridge", **attrs)
    if spec.mtu:
        _sub(net, "mtu", size=str(spec.mtu))
    if spec.domain:
        _sub(net, "domain", name=spec.domain, localOnly="yes")
    if spec.dns_hosts:
        dns = _sub(net, "dns")
        for entry in spec.dns_hosts:
            host = _sub(dns, "host", ip=entry.ip)
            for hostname in entry.hostnames:
                etree.SubElement(host, "hostname").text = hostname
    for ip in spec.ips:
        ip_el = _sub(
            net,
            "ip",
            family="ipv6" if ip.family == "ipv6" else None,
            address=ip.address,
            prefix=str(ip.prefix),
        )
        if ip.dhcp_start or ip.hosts:
            dhcp = _sub(ip_el, "dhcp")
            if ip.dhcp_start:
                _sub(dhcp, "range", start=ip.dhcp_start, end=ip.dhcp_end)
            for host in ip.hosts:
                if ip.family == "ipv6":
                    # DHCPv6 hosts are matched by name (or DUID), not by MAC.
                    _sub(dhcp, "host", name=host.name or None, ip=host.ip)
                else:
                    _sub(dhcp, "host", mac=host.mac, name=host.name or None, ip=host.ip)
    return etree.tostring(net, pretty_print=True, encoding="unicode")


def _prefix(ip: etree._Element) -> int:
    if ip.get("prefix"):
        return int(ip.get("prefix", "0"))
    if ip.get("netmask"):
        return sum(bin(int(p)).count("1") for p in ip.get("netmask", "").split("."))
    return 64 if ip.get("family") == "ipv6" else 24


def parse_network(xml: str, *, active: bool, autostart: bool, persistent: bool) -> NetworkInfo:
    """Read a network's mode, bridge, addresses, DHCP and DNS settings from its XML."""
    root = etree.fromstring(xml.encode())
    forward = root.find("forward")
    forward_mode = "" if forward is None else forward.get("mode", "nat")
    dev = "" if forward is None else forward.get("dev", "")
    if forward is None:
        mode = "isolated"
    elif forward_mode == "hostdev":
        mode = "hostdev"
        pf = forward.find("pf")
        dev = pf.get("dev", "") if pf is not None else dev
    elif forward_mode in ("vepa", "private", "passthrough") or (
        forward_mode == "bridge" and forward.find("interface") is not None
    ):
        mode = "macvtap"
        iface = forward.find("interface")
        dev = iface.get("dev", "") if iface is not None else dev
    else:
        mode = {"nat": "nat", "route": "routed", "open": "open", "bridge": "bridge"}.get(
            forward_mode, forward_mode
        )
    bridge = root.find("bridge")
    mtu = root.find("mtu")
    domain = root.find("domain")
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


def parse_leases(raw: list[dict[str, object]]) -> list[LeaseInfo]:
    """Turn libvirt's lease dicts (virNetworkGetDHCPLeases) into LeaseInfo."""
    leases = []
    for lease in raw:
        leases.append(
            LeaseInfo(
                mac=str(lease.get("mac") or ""),
                ip=str(lease.get("ipaddr") or ""),
                prefix=int(lease.get("prefix") or 0),  # type: ignore[call-overload]
                family="ipv6" if lease.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV6 else "ipv4",
                hostname=str(lease.get("hostname") or ""),
                client_id=str(lease.get("clientid") or ""),
                expiry=int(lease.get("expirytime") or 0),  # type: ignore[call-overload]
                iface=str(lease.get("iface") or ""),
            )
        )
    return sorted(leases, key=lambda x: (x.family, x.ip))


# --- VM NICs ----------------------------------------------------------------------------


def random_mac() -> str:
    """A MAC in qemu's locally administered 52:54:00 range."""
    return "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


@xml_builder
def build_interface(nic: NicSpec) -> str:
    """The <interface> device XML for nic."""
    if nic.bridge:
        iface = etree.Element("interface", type="bridge")
        _sub(iface, "source", bridge=nic.bridge)
    else:
        iface = etree.Element("interface", type="network")
        _sub(iface, "source", network=nic.network or "default")
    if nic.mac:
        _sub(iface, "mac", address=nic.mac)
    _sub(iface, "model", type=nic.model)
    if nic.inbound_kib or nic.outbound_kib:
        bandwidth = _sub(iface, "bandwidth")
        if nic.inbound_kib:
            _sub(bandwidth, "inbound", average=str(nic.inbound_kib))
        if nic.outbound_kib:
            _sub(bandwidth, "outbound", average=str(nic.outbound_kib))
    _sub(iface, "link", state="up" if nic.link_up else "down")
    add_traffic_filter(iface, nic)
    return etree.tostring(iface, encoding="unicode")


def parse_nics(xml: str) -> tuple[NicDetail, ...]:
    """A domain's NICs with their vnet device, link state and bandwidth limits."""
    root = etree.fromstring(xml.encode())
    nics = []
    for iface in root.iterfind("./devices/interface"):
        mac = iface.find("mac")
        source = iface.find("source")
        model = iface.find("model")
        target = iface.find("target")
        link = iface.find("link")
        src = ""
        if source is not None:
            src = source.get("network") or source.get("bridge") or source.get("dev") or ""
        rates = {}
        for direction in ("inbound", "outbound"):
            el = iface.find(f"./bandwidth/{direction}")
            rates[direction] = int(el.get("average", "0")) or None if el is not None else None
        nics.append(
            NicDetail(
                mac=mac.get("address", "") if mac is not None else "",
                type=iface.get("type", ""),
                source=src,
                model=model.get("type", "") if model is not None else "",
                target=target.get("dev", "") if target is not None else "",
                link_up=link is None or link.get("state", "up") != "down",
                inbound_kib=rates["inbound"],
                outbound_kib=rates["outbound"],
            )
        )
    return tuple(nics)


def _macs(dom: libvirt.virDomain, inactive: bool) -> set[str]:
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
    root = etree.fromstring(dom.XMLDesc(flags).encode())
    return {m.get("address", "").lower() for m in root.iterfind("./devices/interface/mac")}


def attach_nic(
    uri: str, uuid: str, nic: NicSpec, *, live: bool, persistent: bool
) -> tuple[DomainInfo, str]:
    """Plug a NIC into a domain (running and/or its definition); return it and the NIC's MAC."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        flags = affect_flags(dom, live, persistent)
        used = _macs(dom, False) | (_macs(dom, True) if dom.isPersistent() else set())
        mac = (nic.mac or "").lower()
        if mac and mac in used:
            raise Conflict(f"'{dom.name()}' already has a NIC with MAC {mac}.")
        while not mac or mac in used:
            mac = random_mac()
        spec = dataclasses.replace(nic, mac=mac)
        dom.attachDeviceFlags(build_interface(spec), flags)
        return domain_info(dom), mac


def _find_nic(dom: libvirt.virDomain, mac: str, inactive: bool) -> etree._Element | None:
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
    root = etree.fromstring(dom.XMLDesc(flags).encode())
    for iface in root.iterfind("./devices/interface"):
        el = iface.find("mac")
        if el is not None and el.get("address", "").lower() == mac.lower():
            return iface
    return None


def detach_nic(uri: str, uuid: str, mac: str, *, live: bool, persistent: bool) -> DomainInfo:
    """Unplug the NIC with this MAC (from the running VM and/or its definition)."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        affect_flags(dom, live, persistent)
        for wanted, inactive, flag in (
            (live, False, libvirt.VIR_DOMAIN_AFFECT_LIVE),
            (persistent, True, libvirt.VIR_DOMAIN_AFFECT_CONFIG),
        ):
            if not wanted:
                continue
            iface = _find_nic(dom, mac, inactive)
            if iface is None:
                where = "its definition" if inactive else "the running VM"
                raise NotFound(f"'{dom.name()}' has no NIC with MAC {mac} in {where}.")
            dom.detachDeviceFlags(etree.tostring(iface, encoding="unicode"), flag)
        return domain_info(dom)


def set_nic_link(
    uri: str, uuid: str, mac: str, up: bool, *, live: bool, persistent: bool
) -> DomainInfo:
    """Set a NIC's link up or down, like pulling its cable."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        affect_flags(dom, live, persistent)
        for wanted, inactive, flag in (
            (live, False, libvirt.VIR_DOMAIN_AFFECT_LIVE),
            (persistent, True, libvirt.VIR_DOMAIN_AFFECT_CONFIG),
        ):
            if not wanted:
                continue
            iface = _find_nic(dom, mac, inactive)
            if iface is None:
                raise NotFound(f"'{dom.name()}' has no NIC with MAC {mac}.")
            link = iface.find("link")
            if link is None:
                link = etree.SubElement(iface, "link")
            link.set("state", "up" if up else "down")
            dom.updateDeviceFlags(etree.tostring(iface, encoding="unicode"), flag)
        return domain_info(dom)


# --- host interfaces --------------------------------------------------------------------


class InterfacesUnsupported(HypervisorError):
    """The host's libvirt cannot list interfaces and the host is not this machine."""


def _libvirt_interfaces(conn: libvirt.virConnect) -> dict[str, InterfaceInfo]:
    found = {}
    for iface in conn.listAllInterfaces(0):
        root = etree.fromstring(iface.XMLDesc(0).encode())
        mac = root.find("mac")
        mtu = root.find("mtu")
        link = root.find("link")
        members = tuple(
            m.get("name", "") for m in root.iterfind("./bridge/interface") if m.get("name")
        )
        addresses = tuple(
            f"{ip.get('address')}/{ip.get('prefix')}"
            for ip in root.iterfind("./protocol/ip")
            if ip.get("address")
        )
        state = "up" if iface.isActive() else "down"
        if link is not None and link.get("state"):
            state = link.get("state", state)
        found[iface.name()] = InterfaceInfo(
            name=iface.name(),
            kind=root.get("type", ""),
            mac=mac.get("address", "") if mac is not None else "",
            mtu=int(mtu.get("size", "0")) or None if mtu is not None else None,
            state=state,
            addresses=addresses,
            members=members,
        )
    return found


def _kind(link: dict[str, object]) -> str:
    info = link.get("linkinfo") or {}
    kind = str(info.get("info_kind", "")) if isinstance(info, dict) else ""  # type: ignore[union-attr]
    name = str(link.get("ifname", ""))
    if link.get("link_type") == "loopback":
        return "loopback"
    if kind == "tun":
        return "vnet (VM NIC)" if name.startswith(("vnet", "macvtap")) else "tap"
    return kind or "ethernet"


def _local_interfaces() -> dict[str, InterfaceInfo]:
    """This machine's interfaces from `ip -j -d addr` (kernel view: state, addresses, master)."""
    out = subprocess.run(
        ["ip", "-j", "-d", "addr", "show"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    links = json.loads(out or "[]")
    members: dict[str, list[str]] = {}
    for link in links:
        if link.get("master"):
            members.setdefault(str(link["master"]), []).append(str(link["ifname"]))
    found = {}
    for link in links:
        name = str(link.get("ifname", ""))
        state = str(link.get("operstate", "UNKNOWN")).lower()
        if state == "unknown":
            state = "up" if "UP" in (link.get("flags") or []) else "down"
        found[name] = InterfaceInfo(
            name=name,
            kind=_kind(link),
            mac=str(link.get("address", "")),
            mtu=int(link["mtu"]) if link.get("mtu") else None,
            state=state,
            addresses=tuple(
                f"{a.get('local')}/{a.get('prefixlen')}" for a in link.get("addr_info") or []
            ),
            members=tuple(sorted(members.get(name, []))),
            master=str(link.get("master", "")),
        )
    return found


def host_interfaces(uri: str) -> tuple[tuple[InterfaceInfo, ...], str]:
    """The host's interfaces and where they were read from ("libvirt", "libvirt+ip", "ip").

    libvirt's interface API (netcf or udev backend) works for remote hosts but
    knows no addresses, tap devices or bridge ports on the udev backend; on
    this machine the kernel's own view (`ip`) completes it.
    """
    from_libvirt: dict[str, InterfaceInfo] = {}
    supported = True
    with session(uri) as conn:
        try:
            from_libvirt = _libvirt_interfaces(conn)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (
                libvirt.VIR_ERR_NO_SUPPORT,
                libvirt.VIR_ERR_NO_INTERFACE,
                libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
                libvirt.VIR_ERR_INTERNAL_ERROR,
            ):
                raise
            supported = False
    if not is_local(uri) or uri.startswith("test"):
        # A remote host (or libvirt's fake test driver): libvirt is all we can ask.
        if not supported:
            raise InterfacesUnsupported(
                "This host's libvirt cannot list interfaces (its interface driver, netcf "
                "or udev, is not available). Look at the host itself (ip addr)."
            )
        return tuple(sorted(from_libvirt.values(), key=lambda i: i.name)), "libvirt"
    try:
        local = _local_interfaces()
    except (OSError, subprocess.SubprocessError, ValueError):
        if not supported:
            raise InterfacesUnsupported(
                "Neither libvirt nor the 'ip' command could list this host's interfaces."
            ) from None
        return tuple(sorted(from_libvirt.values(), key=lambda i: i.name)), "libvirt"
    merged = []
    for name, info in local.items():
        base = from_libvirt.get(name)
        merged.append(
            InterfaceInfo(
                name=name,
                kind=info.kind,
                mac=info.mac or (base.mac if base else ""),
                mtu=info.mtu or (base.mtu if base else None),
                state=info.state,
                addresses=info.addresses,
                members=info.members or (base.members if base else ()),
                master=info.master,
            )
        )
    return tuple(sorted(merged, key=lambda i: i.name)), "libvirt+ip" if supported else "ip"


__all__ = [
    "MACVTAP_MODES",
    "IPConfig",
    "InterfacesUnsupported",
    "attach_nic",
    "build_interface",
    "build_network",
    "define_network",
    "delete_network",
    "detach_nic",
    "get_network",
    "host_interfaces",
    "list_networks",
    "network_leases",
    "network_xml",
    "parse_leases",
    "parse_network",
    "parse_nics",
    "random_mac",
    "set_network_autostart",
    "set_nic_link",
    "start_network",
    "stop_network",
]
