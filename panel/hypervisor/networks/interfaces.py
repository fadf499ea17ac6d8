"""The host's network interfaces: from libvirt's interface API, completed on this machine
by the kernel's own view (`ip`).
"""

from __future__ import annotations

import json
import subprocess

import libvirt
from lxml import etree

from panel.hypervisor.connection import session
from panel.hypervisor.errors import HypervisorError
from panel.hypervisor.host import is_local
from panel.hypervisor.specs import InterfaceInfo


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
    kind = str(info.get("info_kind", "")) if isinstance(info, dict) else ""
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
