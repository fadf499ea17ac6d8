"""VM NICs: their <interface> XML and MACs, plugging and unplugging them, and their link."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator

import libvirt
from lxml import etree

from panel.hypervisor.connection import session
from panel.hypervisor.domains import affect_flags, domain_info
from panel.hypervisor.errors import Conflict, NotFound
from panel.hypervisor.networks.virtual import sub_element
from panel.hypervisor.specs import DomainInfo, NicDetail, NicSpec
from panel.hypervisor.xml import add_traffic_filter, xml_builder


def random_mac() -> str:
    """A MAC in qemu's locally administered 52:54:00 range."""
    return "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


@xml_builder
def build_interface(nic: NicSpec) -> str:
    """The <interface> device XML for nic."""
    if nic.bridge:
        iface = etree.Element("interface", type="bridge")
        sub_element(iface, "source", bridge=nic.bridge)
    else:
        iface = etree.Element("interface", type="network")
        sub_element(iface, "source", network=nic.network or "default")
    if nic.mac:
        sub_element(iface, "mac", address=nic.mac)
    sub_element(iface, "model", type=nic.model)
    if nic.inbound_kib or nic.outbound_kib:
        bandwidth = sub_element(iface, "bandwidth")
        if nic.inbound_kib:
            sub_element(bandwidth, "inbound", average=str(nic.inbound_kib))
        if nic.outbound_kib:
            sub_element(bandwidth, "outbound", average=str(nic.outbound_kib))
    sub_element(iface, "link", state="up" if nic.link_up else "down")
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


def _nics_to_change(
    dom: libvirt.virDomain, mac: str, live: bool, persistent: bool
) -> Iterator[tuple[etree._Element, int]]:
    """The NIC with this MAC in the running VM and/or its definition, each with the flag
    that changes it there; NotFound where it is missing."""
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
        yield iface, flag


def detach_nic(uri: str, uuid: str, mac: str, *, live: bool, persistent: bool) -> DomainInfo:
    """Unplug the NIC with this MAC (from the running VM and/or its definition)."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        for iface, flag in _nics_to_change(dom, mac, live, persistent):
            dom.detachDeviceFlags(etree.tostring(iface, encoding="unicode"), flag)
        return domain_info(dom)


def set_nic_link(
    uri: str, uuid: str, mac: str, up: bool, *, live: bool, persistent: bool
) -> DomainInfo:
    """Set a NIC's link up or down, like pulling its cable."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        for iface, flag in _nics_to_change(dom, mac, live, persistent):
            link = iface.find("link")
            if link is None:
                link = etree.SubElement(iface, "link")
            link.set("state", "up" if up else "down")
            dom.updateDeviceFlags(etree.tostring(iface, encoding="unicode"), flag)
        return domain_info(dom)
