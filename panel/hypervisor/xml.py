"""Domain, pool and network XML, built and read with lxml only.

Names and paths go into element text and attribute values through lxml, so
no input can change the structure of the document.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from lxml import etree

from .errors import InvalidValue
from .specs import (
    BackingInfo,
    DiskInfo,
    DiskSpec,
    DomainSpec,
    GraphicsInfo,
    NicInfo,
    NicSpec,
    PoolSpec,
    VolumeSpec,
)

P = ParamSpec("P")
R = TypeVar("R")


def xml_builder(build: Callable[P, R]) -> Callable[P, R]:
    """Turn lxml's refusal of a value (NUL, control characters) into InvalidValue."""

    @functools.wraps(build)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return build(*args, **kwargs)
        except ValueError as exc:
            if "XML compatible" not in str(exc):
                raise
            raise InvalidValue(
                "A name, path or text holds a character libvirt's XML cannot carry "
                "(NUL or another control character): remove it and try again."
            ) from exc

    return wrapper


def _sub(
    parent: etree._Element, tag: str, text: str | None = None, **attrs: str | None
) -> etree._Element:
    el = etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = text
    return el


def _tostring(root: etree._Element) -> str:
    return etree.tostring(root, pretty_print=True, encoding="unicode")


@xml_builder
def build_domain(spec: DomainSpec) -> str:
    """Return the domain XML for spec."""
    dom = etree.Element("domain", type=spec.domain_type)
    _sub(dom, "name", spec.name)
    if spec.uuid:
        _sub(dom, "uuid", spec.uuid)
    if spec.description:
        _sub(dom, "description", spec.description)
    _sub(dom, "memory", str(spec.memory_mib), unit="MiB")
    _sub(dom, "currentMemory", str(spec.memory_mib), unit="MiB")
    _sub(dom, "vcpu", str(spec.vcpus), placement="static")

    os_el = _sub(dom, "os", firmware="efi" if spec.firmware == "efi" else None)
    _sub(os_el, "type", "hvm", arch=spec.arch, machine=spec.machine)
    if spec.kernel:
        _sub(os_el, "kernel", spec.kernel)
        if spec.initrd:
            _sub(os_el, "initrd", spec.initrd)
        if spec.cmdline:
            _sub(os_el, "cmdline", spec.cmdline)
    else:
        for dev in spec.boot:
            _sub(os_el, "boot", dev=dev)
    if spec.bios_serial:
        _sub(os_el, "bios", useserial="yes")

    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", spec.on_reboot)
    _sub(dom, "on_crash", "destroy")

    devices = _sub(dom, "devices")
    for disk in spec.disks:
        devices.append(disk_element(disk))
    for nic in spec.nics:
        if nic.bridge:
            iface = _sub(devices, "interface", type="bridge")
            _sub(iface, "source", bridge=nic.bridge)
        else:
            iface = _sub(devices, "interface", type="network")
            _sub(iface, "source", network=nic.network or "default")
        if nic.mac:
            _sub(iface, "mac", address=nic.mac)
        _sub(iface, "model", type=nic.model)
        add_traffic_filter(iface, nic)
    if spec.serial_console:
        serial = _sub(devices, "serial", type="pty")
        _sub(serial, "target", port="0")
        console = _sub(devices, "console", type="pty")
        _sub(console, "target", type="serial", port="0")
    if spec.vnc:
        _add_vnc(devices, spec.vnc_port, spec.vnc_listen)
    _sub(devices, "memballoon", model="virtio")
    return _tostring(dom)


def _add_vnc(devices: etree._Element, port: int | None, listen: str) -> None:
    """A VNC display on the address given (else the host's vnc_listen), on the port
    given (else one libvirt picks), with VGA."""
    if port is None:
        graphics = _sub(devices, "graphics", type="vnc", port="-1", autoport="yes")
    else:
        graphics = _sub(devices, "graphics", type="vnc", port=str(port), autoport="no")
    if listen:
        _sub(graphics, "listen", type="address", address=listen)
    video = _sub(devices, "video")
    _sub(video, "model", type="vga")


IP_LEARNING = ("dhcp", "any")


def add_traffic_filter(iface: etree._Element, nic: NicSpec) -> None:
    """The NIC's <filterref> to libvirt's clean-traffic, when nic asks for it."""
    if not nic.clean_traffic:
        return
    ref = _sub(iface, "filterref", filter="clean-traffic")
    if nic.filter_ip:
        _sub(ref, "parameter", name="IP", value=nic.filter_ip)
    else:
        if nic.ip_learning not in IP_LEARNING:
            raise ValueError(f"ip_learning is one of {IP_LEARNING}, not {nic.ip_learning!r}")
        _sub(ref, "parameter", name="CTRL_IP_LEARNING", value=nic.ip_learning)


def disk_element(disk: DiskSpec) -> etree._Element:
    """A <disk> element: a file or block device (by its path), or an empty CD-ROM tray."""
    kind = "block" if disk.path.startswith("/dev/") else "file"
    d = etree.Element("disk", type=kind, device=disk.device)
    driver = {"name": "qemu", "type": disk.format or "raw"}
    for attr in ("cache", "io", "discard"):
        if getattr(disk, attr):
            driver[attr] = getattr(disk, attr)
    _sub(d, "driver", **driver)
    if disk.path:
        _sub(d, "source", **{"dev" if kind == "block" else "file": disk.path})
        # The chain is given, ending in an empty <backingStore/>: libvirt and qemu then
        # follow no backing file the image's header may name.
        parent = d
        for below in disk.backing:
            below_kind = "block" if below.path.startswith("/dev/") else "file"
            store = _sub(parent, "backingStore", type=below_kind)
            _sub(store, "format", type=below.format or "raw")
            _sub(store, "source", **{"dev" if below_kind == "block" else "file": below.path})
            parent = store
        _sub(parent, "backingStore")
    _sub(d, "target", dev=disk.target, bus=disk.bus)
    if disk.readonly or disk.device == "cdrom":
        _sub(d, "readonly")
    if disk.shareable:
        _sub(d, "shareable")
    return d


@xml_builder
def disk_xml(disk: DiskSpec) -> str:
    """The <disk> element alone, for attaching to a domain."""
    return _tostring(disk_element(disk))


def parse_domain_devices(
    xml: str | etree._Element,
) -> tuple[tuple[DiskInfo, ...], tuple[NicInfo, ...], tuple[GraphicsInfo, ...]]:
    """Read the disks, NICs and graphics consoles out of a domain's XML."""
    root = _root(xml)
    disks = []
    for d in root.iterfind("./devices/disk"):
        source = d.find("source")
        src = ""
        if source is not None:
            src = (
                source.get("file")
                or source.get("dev")
                or source.get("volume")
                or source.get("name")
                or ""
            )
        target = d.find("target")
        driver = d.find("driver")
        disks.append(
            DiskInfo(
                target=target.get("dev", "") if target is not None else "",
                device=d.get("device", "disk"),
                bus=target.get("bus", "") if target is not None else "",
                source=src,
                format=driver.get("type", "") if driver is not None else "",
                cache=driver.get("cache", "") if driver is not None else "",
            )
        )
    nics = []
    for i in root.iterfind("./devices/interface"):
        mac = i.find("mac")
        source = i.find("source")
        model = i.find("model")
        src = ""
        if source is not None:
            src = source.get("network") or source.get("bridge") or source.get("dev") or ""
        nics.append(
            NicInfo(
                mac=mac.get("address", "") if mac is not None else "",
                type=i.get("type", ""),
                source=src,
                model=model.get("type", "") if model is not None else "",
            )
        )
    graphics = []
    for g in root.iterfind("./devices/graphics"):
        port = g.get("port")
        listen = g.get("listen") or ""
        listen_el = g.find("listen")
        if listen_el is not None and listen_el.get("address"):
            listen = listen_el.get("address", "")
        graphics.append(
            GraphicsInfo(
                type=g.get("type", ""),
                port=int(port) if port and port.lstrip("-").isdigit() and int(port) > 0 else None,
                listen=listen,
            )
        )
    return tuple(disks), tuple(nics), tuple(graphics)


def _root(xml: str | etree._Element) -> etree._Element:
    return xml if isinstance(xml, etree._Element) else etree.fromstring(xml.encode())


def parse(xml: str) -> etree._Element:
    """Parse once, for callers that read several things from one document."""
    return etree.fromstring(xml.encode())


def domain_type(xml: str | etree._Element) -> str:
    """The domain's type attribute (kvm, qemu, test)."""
    return _root(xml).get("type", "")


def parse_pool(xml: str) -> tuple[str, str]:
    """Return (type, target path) of a storage pool's XML."""
    root = etree.fromstring(xml.encode())
    return root.get("type", ""), root.findtext("./target/path") or ""


# Where each pool type keeps its volumes when the user gives no target path.
_DEFAULT_TARGETS = {
    "disk": "/dev",
    "iscsi": "/dev/disk/by-path",
    "scsi": "/dev/disk/by-path",
    "mpath": "/dev/mapper",
}
# Types whose volumes are not files under a target directory.
_NO_TARGET = {"iscsi-direct", "rbd", "gluster", "zfs"}


@xml_builder
def build_pool(spec: PoolSpec) -> str:
    """The storage pool XML for spec; fields the type does not use are left out."""
    pool = etree.Element("pool", type=spec.type)
    _sub(pool, "name", spec.name)
    source = _sub(pool, "source")
    kind = spec.type
    if kind in ("netfs", "iscsi", "iscsi-direct", "rbd", "gluster") and spec.source_host:
        port = str(spec.source_port) if spec.source_port else None
        _sub(source, "host", name=spec.source_host, port=port)
    if kind in ("netfs", "gluster"):
        _sub(source, "dir", path=spec.source_path or "/")
    if kind in ("iscsi", "iscsi-direct"):
        _sub(source, "device", path=spec.source_path)
    if kind in ("fs", "logical", "disk", "zfs"):
        for dev in spec.source_devices:
            _sub(source, "device", path=dev)
    if kind in ("logical", "rbd", "gluster", "zfs") and spec.source_name:
        _sub(source, "name", spec.source_name)
    if kind == "scsi":
        _sub(source, "adapter", type="scsi_host", name=spec.adapter)
    if kind == "iscsi-direct" and spec.initiator:
        initiator = _sub(source, "initiator")
        _sub(initiator, "iqn", name=spec.initiator)
    if kind in ("fs", "netfs", "disk", "logical") and spec.source_format:
        _sub(source, "format", type=spec.source_format)
    if not len(source):
        pool.remove(source)
    target_path = spec.target_path or _DEFAULT_TARGETS.get(kind, "")
    if kind == "logical" and not target_path and spec.source_name:
        target_path = f"/dev/{spec.source_name}"
    if kind not in _NO_TARGET and target_path:
        target = _sub(pool, "target")
        _sub(target, "path", target_path)
    return _tostring(pool)


@xml_builder
def build_volume(spec: VolumeSpec, *, allocation: int = 0) -> str:
    """The storage volume XML for spec; allocation in bytes (0: thin)."""
    vol = etree.Element("volume")
    _sub(vol, "name", spec.name)
    _sub(vol, "capacity", str(spec.capacity), unit="bytes")
    _sub(vol, "allocation", str(allocation), unit="bytes")
    target = _sub(vol, "target")
    _sub(target, "format", type=spec.format)
    if spec.format == "qcow2":
        # qcow2 version 3, as qemu-img makes it: version 2 (libvirt's default) cannot keep
        # the dirty bitmaps that incremental backups read.
        _sub(target, "compat", "1.1")
    if spec.backing_path:
        store = _sub(vol, "backingStore")
        _sub(store, "path", spec.backing_path)
        _sub(store, "format", type=spec.backing_format or "raw")
    return _tostring(vol)


def disk_chain(disk: etree._Element) -> tuple[BackingInfo, ...] | None:
    """The backing chain a <disk> element gives (nearest first); None when it gives none
    (libvirt would read the image's header for it)."""
    chain: list[BackingInfo] = []
    node = disk
    while True:
        store = node.find("backingStore")
        if store is None:
            return tuple(chain) if chain else None
        source = store.find("source")
        if source is None:
            return tuple(chain)
        fmt = store.find("format")
        path = source.get("file") or source.get("dev") or ""
        chain.append(BackingInfo(path=path, format=fmt.get("type", "") if fmt is not None else ""))
        node = store


def parse_volume_format(xml: str) -> str:
    """The format of a volume (qcow2, raw, ...) from its XML."""
    root = etree.fromstring(xml.encode())
    fmt = root.find("./target/format")
    return fmt.get("type", "") if fmt is not None else ""


def parse_volume_physical(xml: str) -> int:
    """The bytes a volume's file takes, from its XML (0 when libvirt does not say)."""
    text = etree.fromstring(xml.encode()).findtext("physical") or ""
    return int(text) if text.strip().isdigit() else 0


def parse_volume_backing(xml: str) -> tuple[BackingInfo, ...]:
    """The backing image a volume's XML names (libvirt reports one level)."""
    root = etree.fromstring(xml.encode())
    chain = []
    for store in root.iterfind("backingStore"):
        path = store.findtext("path") or ""
        fmt = store.find("format")
        if path:
            chain.append(
                BackingInfo(path=path, format=fmt.get("type", "") if fmt is not None else "")
            )
    return tuple(chain)


def firmware(xml: str | etree._Element) -> str:
    """'efi' when the domain boots UEFI firmware, else 'bios'."""
    root = _root(xml)
    os_el = root.find("os")
    if os_el is None:
        return "bios"
    loader = os_el.find("loader")
    if os_el.get("firmware") == "efi" or (loader is not None and loader.get("type") == "pflash"):
        return "efi"
    return "bios"
