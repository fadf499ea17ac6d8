"""HA on the host: the mark the HA agent fences by, and starting a VM from its kept
definition on another host.

The mark is an element of the domain's metadata (<ha/> in namespace HA_NAMESPACE), in
its definition and, while it runs, in its live state: scripts/panel-ha-agent destroys
the running domains that carry it once the panel's lease on the host ran out."""

from __future__ import annotations

import contextlib

import libvirt

from .connection import session
from .domains import domain_info
from .specs import DomainInfo

HA_NAMESPACE = "urn:kvm-panel:ha"
HA_PREFIX = "ha"


def mark_ha(uri: str, uuid: str, enabled: bool) -> str:
    """Set (or clear) the HA mark of the domain; return its definition (inactive XML)
    with the mark, as the panel keeps it to define the domain elsewhere."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
        if dom.isActive():
            flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
        if enabled:
            dom.setMetadata(
                libvirt.VIR_DOMAIN_METADATA_ELEMENT, "<ha/>", HA_PREFIX, HA_NAMESPACE, flags
            )
        else:
            dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, None, None, HA_NAMESPACE, flags)
        return str(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def start_from_definition(uri: str, definition: str) -> DomainInfo:
    """Define the domain from definition on the host and boot it. A failed boot (a disk
    another host still holds, refused by the lock manager) leaves nothing defined there."""
    with session(uri) as conn:
        dom = conn.defineXML(definition)
        try:
            dom.create()
        except libvirt.libvirtError:
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            raise
        return domain_info(dom)


def forget_stale_copy(uri: str, uuid: str) -> bool:
    """Undefine the domain on a host that came back after its VM was restarted
    elsewhere, if it is there and not running (a running one is left alone); True if
    one was removed."""
    with session(uri) as conn:
        try:
            dom = conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise
        if dom.isActive():
            return False
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        return True
