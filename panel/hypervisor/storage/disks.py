"""Disks on domains: attaching and detaching them, and changing a CD-ROM's medium."""

from __future__ import annotations

import libvirt
from lxml import etree

from panel.hypervisor import xml
from panel.hypervisor.connection import session
from panel.hypervisor.domains import affect_flags, domain_info
from panel.hypervisor.errors import Conflict
from panel.hypervisor.specs import DiskSpec, DomainInfo


def attach_disk(uri: str, uuid: str, disk: DiskSpec, *, live: bool, persistent: bool) -> DomainInfo:
    """Attach a disk or CD-ROM to the running guest and/or its definition."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        dom.attachDeviceFlags(xml.disk_xml(disk), affect_flags(dom, live, persistent))
        return domain_info(dom)


def _disk_element(dom: libvirt.virDomain, target: str, inactive: bool) -> etree._Element | None:
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
    root = etree.fromstring(dom.XMLDesc(flags).encode())
    for disk in root.iterfind("./devices/disk"):
        t = disk.find("target")
        if t is not None and t.get("dev") == target:
            return disk
    return None


def detach_disk(uri: str, uuid: str, target: str, *, live: bool, persistent: bool) -> DomainInfo:
    """Detach the disk the guest sees as target (vdb, sda...) live and/or from the definition."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        affect_flags(dom, live, persistent)
        for scope, wanted in ((False, live), (True, persistent)):
            if not wanted:
                continue
            element = _disk_element(dom, target, inactive=scope)
            if element is None:
                where = "definition" if scope else "running guest"
                raise Conflict(f"'{dom.name()}' has no disk {target} in its {where}.")
            flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG if scope else libvirt.VIR_DOMAIN_AFFECT_LIVE
            dom.detachDeviceFlags(etree.tostring(element, encoding="unicode"), flags)
        return domain_info(dom)


def change_media(
    uri: str, uuid: str, target: str, path: str, *, live: bool, persistent: bool
) -> DomainInfo:
    """Insert the image at path into a CD-ROM drive, or eject it (path empty)."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        flags = affect_flags(dom, live, persistent) | libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE
        element = _disk_element(dom, target, inactive=not live)
        if element is None or element.get("device") != "cdrom":
            raise Conflict(f"'{dom.name()}' has no CD-ROM drive {target}.")
        source = element.find("source")
        if source is not None:
            element.remove(source)
        if path:
            kind = "block" if path.startswith("/dev/") else "file"
            element.set("type", kind)
            source = etree.Element("source", {"dev" if kind == "block" else "file": path})
            element.insert(1, source)
        dom.updateDeviceFlags(etree.tostring(element, encoding="unicode"), flags)
        return domain_info(dom)
