"""Lifecycle verbs on a domain and the details page's reads (dominfo, domifaddr, ...)."""

from __future__ import annotations

import contextlib
import time

import libvirt
from lxml import etree

from .connection import session
from .domains import STATES, domain_info
from .errors import Conflict, HypervisorError
from .specs import AddressInfo, BlockInfo, DomainDetails, DomainInfo

_SHUTDOWN_MODES = {
    "acpi": libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN,
    "agent": libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT,
}
_REBOOT_MODES = {
    "acpi": libvirt.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN,
    "agent": libvirt.VIR_DOMAIN_REBOOT_GUEST_AGENT,
}
_ADDRESS_SOURCES = {
    "lease": libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
    "agent": libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
    "arp": libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP,
}
_REASONS = {
    libvirt.VIR_DOMAIN_RUNNING: {
        1: "booted",
        2: "migrated",
        3: "restored",
        4: "from snapshot",
        5: "unpaused",
    },
    libvirt.VIR_DOMAIN_PAUSED: {
        1: "by user",
        2: "migrating",
        3: "saving",
        5: "I/O error",
        7: "snapshot",
    },
    libvirt.VIR_DOMAIN_SHUTOFF: {
        1: "shut down",
        2: "destroyed",
        3: "crashed",
        4: "migrated",
        5: "saved",
        6: "failed",
    },
}


def _running(dom: libvirt.virDomain, verb: str) -> None:
    if not dom.isActive():
        raise Conflict(f"'{dom.name()}' is not running: it cannot {verb}.")


def shutdown_domain(uri: str, uuid: str, mode: str = "acpi") -> None:
    """Ask the guest to shut down (ACPI power button, or the guest agent)."""
    if mode not in _SHUTDOWN_MODES:
        raise HypervisorError(f"Unknown shutdown mode '{mode}': use acpi or agent.")
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        _running(dom, "shut down")
        dom.shutdownFlags(_SHUTDOWN_MODES[mode])


def reboot_domain(uri: str, uuid: str, mode: str = "acpi") -> None:
    """Ask the guest to reboot (ACPI, or the guest agent)."""
    if mode not in _REBOOT_MODES:
        raise HypervisorError(f"Unknown reboot mode '{mode}': use acpi or agent.")
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        _running(dom, "reboot")
        dom.reboot(_REBOOT_MODES[mode])


def reset_domain(uri: str, uuid: str) -> None:
    """Press the reset button: the guest restarts at once, without shutting down."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        _running(dom, "reset")
        dom.reset(0)


def suspend_domain(uri: str, uuid: str) -> DomainInfo:
    """Pause the guest's vCPUs; it stays in memory."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        if dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
            raise Conflict(f"'{dom.name()}' is not running: only a running VM can be paused.")
        dom.suspend()
        return domain_info(dom)


def resume_domain(uri: str, uuid: str) -> DomainInfo:
    """Let a paused guest run again."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        if dom.state()[0] != libvirt.VIR_DOMAIN_PAUSED:
            raise Conflict(f"'{dom.name()}' is not paused.")
        dom.resume()
        return domain_info(dom)


def save_domain(uri: str, uuid: str) -> DomainInfo:
    """Managed save: write the guest's memory to disk and stop it; the next start restores it."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        _running(dom, "be saved")
        if not dom.isPersistent():
            raise Conflict(f"'{dom.name()}' is transient: only a defined VM can be saved.")
        dom.managedSave(0)
        return domain_info(dom)


def has_saved_state(uri: str, uuid: str) -> bool:
    """Whether the guest has a managed save image (what restore starts it from)."""
    with session(uri) as conn:
        return bool(conn.lookupByUUIDString(uuid).hasManagedSaveImage(0))


def restore_domain(uri: str, uuid: str) -> DomainInfo:
    """Start a saved guest from its managed save image."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        if dom.isActive():
            raise Conflict(f"'{dom.name()}' is already running.")
        if not dom.hasManagedSaveImage(0):
            raise Conflict(f"'{dom.name()}' has no saved state to restore: start it instead.")
        dom.create()
        return domain_info(dom)


def set_autostart(uri: str, uuid: str, enabled: bool) -> DomainInfo:
    """Start the guest when the host boots (or not)."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        if not dom.isPersistent():
            raise Conflict(f"'{dom.name()}' is transient: autostart needs a defined VM.")
        dom.setAutostart(1 if enabled else 0)
        return domain_info(dom)


def wait_for_state(uri: str, uuid: str, states: set[str], timeout: float) -> str | None:
    """Poll until the domain reaches one of states; return it, or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        with session(uri) as conn:
            try:
                state = STATES.get(conn.lookupByUUIDString(uuid).state()[0], "running")
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return "missing" if "missing" in states else None
                raise
        if state in states:
            return state
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.25)


def _addresses(dom: libvirt.virDomain) -> list[AddressInfo]:
    found: list[AddressInfo] = []
    seen: set[tuple[str, str]] = set()
    for label, source in _ADDRESS_SOURCES.items():
        try:
            ifaces = dom.interfaceAddresses(source, 0) or {}
        except libvirt.libvirtError:
            continue  # no leases, no agent, nothing in the ARP table: try the next source
        for name, data in ifaces.items():
            for addr in data.get("addrs") or []:
                key = (data.get("hwaddr") or "", addr.get("addr", ""))
                if key in seen or name == "lo":
                    continue
                seen.add(key)
                found.append(
                    AddressInfo(
                        mac=data.get("hwaddr") or "",
                        interface=name,
                        address=addr.get("addr", ""),
                        prefix=int(addr.get("prefix", 0)),
                        source=label,
                    )
                )
    return found


def _agent(dom: libvirt.virDomain) -> dict[str, object]:
    """What the guest agent says (hostname, OS, filesystems); empty when no agent answers."""
    info: dict[str, object] = {}
    with contextlib.suppress(libvirt.libvirtError, AttributeError):
        types = (
            libvirt.VIR_DOMAIN_GUEST_INFO_OS
            | libvirt.VIR_DOMAIN_GUEST_INFO_HOSTNAME
            | libvirt.VIR_DOMAIN_GUEST_INFO_TIMEZONE
        )
        info.update({k: v for k, v in (dom.guestInfo(types, 0) or {}).items()})
    with contextlib.suppress(libvirt.libvirtError):
        info["filesystems"] = [
            {"mountpoint": fs[0], "name": fs[1], "type": fs[2], "disks": list(fs[3])}
            for fs in dom.fsInfo(0)
        ]
    return info


def domain_details(uri: str, uuid: str) -> DomainDetails:
    """Everything the details page shows, read in one visit to the host."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        info = domain_info(dom)
        state, reason = dom.state()
        _s, max_kib, _mem, _vcpus, cpu_time = dom.info()
        xml = dom.XMLDesc(0)
        root = etree.fromstring(xml.encode())
        active = bool(dom.isActive())
        blocks = []
        for disk in info.disks:
            if not disk.target or not disk.source:
                continue
            with contextlib.suppress(libvirt.libvirtError):
                capacity, allocation, physical = dom.blockInfo(disk.target, 0)
                blocks.append(BlockInfo(disk.target, capacity, allocation, physical))
        vnets = {}
        for iface in root.iterfind("./devices/interface"):
            mac = iface.find("mac")
            target = iface.find("target")
            if mac is not None and target is not None:
                vnets[mac.get("address", "")] = target.get("dev", "")
        has_save = False
        with contextlib.suppress(libvirt.libvirtError):
            has_save = bool(dom.hasManagedSaveImage(0)) if info.persistent else False
        return DomainDetails(
            info=info,
            id=dom.ID() if active else None,
            os_type=dom.OSType(),
            state_reason=_REASONS.get(state, {}).get(reason, ""),
            cpu_time_ns=cpu_time,
            max_memory_mib=max_kib // 1024,
            has_managed_save=has_save,
            addresses=tuple(_addresses(dom)) if active else (),
            blocks=tuple(blocks),
            vnet_devices=vnets,
            agent=_agent(dom) if active else {},
            xml=xml,
        )


def disk_capacities(uri: str, uuid: str) -> dict[str, int]:
    """{target: bytes} the domain's disks (not CD-ROMs) can hold, as the host sees them."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        sizes = {}
        for disk in domain_info(dom).disks:
            if disk.device != "disk" or not disk.target or not disk.source:
                continue
            with contextlib.suppress(libvirt.libvirtError):
                sizes[disk.target] = int(dom.blockInfo(disk.target, 0)[0])
        return sizes


def redefine_domain(uri: str, uuid: str, xml: str) -> DomainInfo:
    """Replace a domain's definition with edited XML, validated by libvirt against its schema."""
    try:
        root = etree.fromstring(xml.encode())
    except etree.XMLSyntaxError as exc:
        raise HypervisorError(f"The XML is not well-formed: {exc}") from exc
    if (root.findtext("uuid") or uuid) != uuid:
        raise HypervisorError("The XML names another UUID: a VM's UUID cannot be changed.")
    with session(uri) as conn:
        return domain_info(conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE))


def _graphics(dom: libvirt.virDomain, flags: int) -> etree._Element | None:
    root = etree.fromstring(dom.XMLDesc(flags | libvirt.VIR_DOMAIN_XML_SECURE).encode())
    return root.find("./devices/graphics[@type='vnc']")


def set_vnc_password(uri: str, uuid: str, password: str | None) -> bool:
    """Set (or with None, clear) the VNC password in the definition and, where qemu
    allows it, on the running display. Returns whether it applies now (False: at next start).

    qemu can change a running display's password only if the display was started
    with one; otherwise the change waits for the next start.
    """
    applied_live = True
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        targets = []
        if dom.isActive():
            targets.append((0, libvirt.VIR_DOMAIN_AFFECT_LIVE))
        if dom.isPersistent():
            targets.append((libvirt.VIR_DOMAIN_XML_INACTIVE, libvirt.VIR_DOMAIN_AFFECT_CONFIG))
        for xml_flags, affect in targets:
            graphics = _graphics(dom, xml_flags)
            if graphics is None:
                raise Conflict(f"'{dom.name()}' has no VNC display.")
            if password:
                graphics.set("passwd", password)
            elif "passwd" in graphics.attrib:
                del graphics.attrib["passwd"]
            try:
                dom.updateDeviceFlags(etree.tostring(graphics, encoding="unicode"), affect)
            except libvirt.libvirtError as exc:
                if affect != libvirt.VIR_DOMAIN_AFFECT_LIVE or not dom.isPersistent():
                    if affect == libvirt.VIR_DOMAIN_AFFECT_LIVE:
                        raise Conflict(
                            f"The display of '{dom.name()}' was started without a password and "
                            f"this VM is transient: qemu cannot add one now ({exc.get_error_message()})."
                        ) from exc
                    raise
                applied_live = False
    return applied_live


def vnc_password(uri: str, uuid: str) -> str | None:
    """The VNC password of a running domain's display, if one is set."""
    with session(uri) as conn:
        graphics = _graphics(conn.lookupByUUIDString(uuid), 0)
        return graphics.get("passwd") if graphics is not None else None
