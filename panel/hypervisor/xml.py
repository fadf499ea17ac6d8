"""Domain, pool and network XML, built and read with lxml only.

Names and paths go into element text and attribute values through lxml, so
no input can change the structure of the document.
"""

from __future__ import annotations

from lxml import etree

from .specs import (
    DiskInfo,
    DomainSpec,
    GraphicsInfo,
    NetworkInfo,
    NicInfo,
)


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = text
    return el


def _tostring(root: etree._Element) -> str:
    return etree.tostring(root, pretty_print=True, encoding="unicode")


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

    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch=spec.arch, machine=spec.machine)  # type: ignore[arg-type]
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
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")

    devices = _sub(dom, "devices")
    for disk in spec.disks:
        d = _sub(devices, "disk", type="file", device=disk.device)
        _sub(d, "driver", name="qemu", type=disk.format)
        _sub(d, "source", file=disk.path)
        _sub(d, "target", dev=disk.target, bus=disk.bus)
        if disk.readonly:
            _sub(d, "readonly")
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
    if spec.serial_console:
        serial = _sub(devices, "serial", type="pty")
        _sub(serial, "target", port="0")
        console = _sub(devices, "console", type="pty")
        _sub(console, "target", type="serial", port="0")
    if spec.vnc:
        graphics = _sub(devices, "graphics", type="vnc", port="-1", autoport="yes")
        _sub(graphics, "listen", type="address", address="127.0.0.1")
        video = _sub(devices, "video")
        _sub(video, "model", type="vga")
    _sub(devices, "memballoon", model="virtio")
    return _tostring(dom)


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


def parse_volume_format(xml: str) -> str:
    """The format of a volume (qcow2, raw, ...) from its XML."""
    root = etree.fromstring(xml.encode())
    fmt = root.find("./target/format")
    return fmt.get("type", "") if fmt is not None else ""


def parse_network(xml: str, *, active: bool, autostart: bool, persistent: bool) -> NetworkInfo:
    """Read a network's mode, bridge and first IPv4 range from its XML."""
    root = etree.fromstring(xml.encode())
    forward = root.find("forward")
    mode = "isolated" if forward is None else forward.get("mode", "nat")
    if mode == "bridge" and forward is not None and forward.find("interface") is not None:
        mode = "macvtap"
    bridge = root.find("bridge")
    ipv4: dict[str, str | int] = {}
    for ip in root.iterfind("ip"):
        if ip.get("family", "ipv4") != "ipv4":
            continue
        ipv4["address"] = ip.get("address", "")
        if ip.get("prefix"):
            ipv4["prefix"] = int(ip.get("prefix", "0"))
        elif ip.get("netmask"):
            ipv4["prefix"] = sum(bin(int(p)).count("1") for p in ip.get("netmask", "").split("."))
        rng = ip.find("./dhcp/range")
        if rng is not None:
            ipv4["dhcp_start"] = rng.get("start", "")
            ipv4["dhcp_end"] = rng.get("end", "")
        break
    return NetworkInfo(
        uuid=root.findtext("uuid") or "",
        name=root.findtext("name") or "",
        mode=mode,
        bridge=bridge.get("name", "") if bridge is not None else "",
        active=active,
        autostart=autostart,
        persistent=persistent,
        ipv4=ipv4,
    )


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
