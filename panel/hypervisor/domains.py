"""Domains: list, look up, define, start and stop, as plain values."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

import libvirt
from lxml import etree

from . import xml
from .connection import session
from .errors import Conflict
from .qemu_img import PinnedImage
from .specs import PROBE_PREFIX, BackingInfo, DomainInfo, DomainSpec

STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "running",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "running",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


# libvirt writes memory in KiB; a document written by hand may use another unit.
_BYTES = {
    **{"b": 1, "bytes": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4},
    **{"k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2, "g": 1024**3, "gib": 1024**3},
    **{"t": 1024**4, "tib": 1024**4},
}


def _maxima(desc: etree._Element) -> tuple[int, int]:
    """(most vCPUs, most memory in KiB) a domain document allows."""
    vcpus = int(desc.findtext("vcpu") or 0)
    memory = desc.find("memory")
    kib = 0
    if memory is not None and (memory.text or "").strip():
        kib = int(memory.text) * _BYTES.get(memory.get("unit", "KiB").lower(), 1024) // 1024
    return vcpus, kib


def _reach(dom: libvirt.virDomain, desc: etree._Element, persistent: bool) -> tuple[int, int]:
    """(vCPUs, MiB) the domain may grow to: the running maximum, or the definition's when
    that is larger (raised while it runs, it applies from the next boot)."""
    vcpus, kib = _maxima(desc)
    if persistent and dom.isActive():
        with contextlib.suppress(libvirt.libvirtError):
            inactive = xml.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            config_vcpus, config_kib = _maxima(inactive)
            vcpus, kib = max(vcpus, config_vcpus), max(kib, config_kib)
    return vcpus, kib // 1024


def domain_info(dom: libvirt.virDomain) -> DomainInfo:
    state, _max_mem, mem_kib, vcpus, _cpu_time = dom.info()
    desc = xml.parse(dom.XMLDesc(0))
    disks, nics, graphics = xml.parse_domain_devices(desc)
    try:
        autostart = bool(dom.autostart())
    except libvirt.libvirtError:
        autostart = False
    persistent = bool(dom.isPersistent())
    max_vcpus, max_memory_mib = _reach(dom, desc, persistent)
    return DomainInfo(
        uuid=dom.UUIDString(),
        name=dom.name(),
        state=STATES.get(state, "running"),
        vcpus=vcpus,
        memory_mib=mem_kib // 1024,
        persistent=persistent,
        autostart=autostart,
        domain_type=xml.domain_type(desc),
        firmware=xml.firmware(desc),
        disks=disks,
        nics=nics,
        graphics=graphics,
        max_vcpus=max_vcpus,
        max_memory_mib=max_memory_mib,
    )


def affect_flags(dom: libvirt.virDomain, live: bool, persistent: bool) -> int:
    """The AFFECT_LIVE/AFFECT_CONFIG flags of a device change, once the domain allows it."""
    if not live and not persistent:
        raise Conflict("Choose live, persistent or both.")
    if live and not dom.isActive():
        raise Conflict(f"'{dom.name()}' is not running: a live change needs a running guest.")
    if persistent and not dom.isPersistent():
        raise Conflict(f"'{dom.name()}' is transient: it has no definition to change.")
    flags = 0
    if live:
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    if persistent:
        flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
    return flags


def list_domains(uri: str) -> list[DomainInfo]:
    """Every domain on the host, running or defined."""
    with session(uri) as conn:
        result = []
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(PROBE_PREFIX):
                continue
            with contextlib.suppress(libvirt.libvirtError):
                # A domain undefined while we list it simply drops out.
                result.append(domain_info(dom))
        return result


def get_domain(uri: str, uuid: str) -> DomainInfo:
    """One domain by UUID; NotFound when the host has none."""
    with session(uri) as conn:
        return domain_info(conn.lookupByUUIDString(uuid))


def domain_xml(uri: str, uuid: str, *, inactive: bool = False) -> str:
    """The domain's live XML, or with inactive=True its definition (what an edit changes)."""
    with session(uri) as conn:
        return conn.lookupByUUIDString(uuid).XMLDesc(
            libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        )


def define_domain(uri: str, spec: DomainSpec) -> DomainInfo:
    """Define a persistent domain from spec (not started)."""
    with session(uri) as conn:
        return domain_info(conn.defineXML(xml.build_domain(spec)))


def install_domain(
    uri: str, final: DomainSpec, *, installer: DomainSpec | None = None, start: bool = True
) -> DomainInfo:
    """Define final, then boot it: through installer (same name and UUID, a one-off boot
    whose reboot ends it, as virt-install does) or as defined. Undefined again on failure."""
    with session(uri) as conn:
        dom = conn.defineXML(xml.build_domain(final))
        try:
            if installer is not None:
                conn.createXML(xml.build_domain(installer), 0)
            elif start:
                dom.create()
            return domain_info(dom)
        except Exception:
            with contextlib.suppress(libvirt.libvirtError):
                if dom.isActive():
                    dom.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            raise


def firmware_choices(uri: str, domain_type: str = "qemu", arch: str = "x86_64") -> tuple[str, ...]:
    """The firmware the host can boot guests with: ("bios",) or ("bios", "efi") with OVMF."""
    with session(uri) as conn:
        try:
            caps = conn.getDomainCapabilities(None, arch, None, domain_type, 0)
        except libvirt.libvirtError:
            return ("bios",)
    root = xml.parse(caps)
    values = {v.text for v in root.iterfind("./os/enum[@name='firmware']/value")}
    loader = root.find("./os/loader")
    has_ovmf = "efi" in values or (
        loader is not None
        and loader.get("supported") == "yes"
        and any("OVMF" in (v.text or "") for v in loader.iterfind("value"))
    )
    return ("bios", "efi") if has_ovmf else ("bios",)


def create_transient(uri: str, spec: DomainSpec) -> DomainInfo:
    """Start a transient domain from spec; it disappears when it stops."""
    with session(uri) as conn:
        return domain_info(conn.createXML(xml.build_domain(spec), 0))


def start_domain(uri: str, uuid: str) -> DomainInfo:
    """Boot a defined domain; Conflict when it is already running."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        if dom.isActive():
            raise Conflict(f"Domain '{dom.name()}' is already running.")
        dom.create()
        return domain_info(dom)


def destroy_domain(uri: str, uuid: str) -> None:
    """Power a domain off at once, like pulling the plug."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        if not dom.isActive():
            raise Conflict(f"Domain '{dom.name()}' is not running.")
        dom.destroy()


def undefine_domain(uri: str, uuid: str) -> None:
    """Stop (if running) and remove a domain's definition; its disks stay."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        if dom.isActive():
            dom.destroy()
        if dom.isPersistent():
            flags = (
                libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
                | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
            )
            try:
                dom.undefineFlags(flags)
            except libvirt.libvirtError as exc:
                # Drivers without snapshots or NVRAM (test://) refuse those flags.
                if exc.get_error_code() not in (
                    libvirt.VIR_ERR_INVALID_ARG,
                    libvirt.VIR_ERR_NO_SUPPORT,
                ):
                    raise
                dom.undefine()


def delete_domain(uri: str, uuid: str, remove_paths: list[str]) -> list[str]:
    """Stop and undefine a domain, then delete the volumes at remove_paths; return those deleted."""
    undefine_domain(uri, uuid)
    removed = []
    with session(uri) as conn:
        for path in remove_paths:
            try:
                vol = conn.storageVolLookupByPath(path)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                    continue  # already gone, or never a volume of a pool
                raise
            vol.delete(0)
            removed.append(path)
    return removed


def _pin_chain(disk: etree._Element, chain: tuple[BackingInfo, ...]) -> None:
    """Give a <disk> its backing chain explicitly, ending in an empty <backingStore/>."""
    for store in disk.findall("backingStore"):
        disk.remove(store)
    parent = disk
    for below in chain:
        store = etree.SubElement(parent, "backingStore", type="file")
        etree.SubElement(store, "format", type=below.format or "raw")
        etree.SubElement(store, "source", file=below.path)
        parent = store
    etree.SubElement(parent, "backingStore")


def vol_xml(name: str, capacity: int, fmt: str, backing: tuple[str, str] | None = None) -> str:
    vol = etree.Element("volume")
    etree.SubElement(vol, "name").text = name
    etree.SubElement(vol, "capacity", unit="bytes").text = str(capacity)
    target = etree.SubElement(vol, "target")
    etree.SubElement(target, "format", type=fmt)
    if backing is not None:
        store = etree.SubElement(vol, "backingStore")
        etree.SubElement(store, "path").text = backing[0]
        etree.SubElement(store, "format", type=backing[1])
    return etree.tostring(vol, encoding="unicode")


def claim_volume_name(
    dest: libvirt.virStoragePool, name: str, on_volume: Callable[[str, str], None] | None
) -> None:
    """Refuse a volume name dest already has, then tell on_volume of the volume about to
    be made (so that whoever cleans up after a dead caller knows it is ours)."""
    with contextlib.suppress(libvirt.libvirtError):
        dest.storageVolLookupByName(name)
        raise Conflict(f"Pool '{dest.name()}' already has a volume named '{name}'.")
    if on_volume is not None:
        on_volume(dest.name(), name)


def _read_as(
    disk: etree._Element, path: str, recorded: Mapping[str, tuple[BackingInfo, ...]]
) -> PinnedImage:
    """The disk's image as the domain reads it: the format its definition gives, never what
    libvirt's probe of the file guesses (a guest writes what it likes onto a raw disk), and
    the chain the definition gives, else the recorded one, else none."""
    driver = disk.find("driver")
    fmt = (driver.get("type", "") if driver is not None else "") or "raw"
    chain = xml.disk_chain(disk)
    if chain is None:
        chain = recorded.get(path, ())
    return PinnedImage(path, fmt, chain)


def _clone_disk(
    conn: libvirt.virConnect,
    uri: str,
    disk: etree._Element,
    new_name: str,
    *,
    linked: bool,
    on_volume: Callable[[str, str], None] | None,
    recorded: Mapping[str, tuple[BackingInfo, ...]],
    created: list[libvirt.virStorageVol],
) -> None:
    """Copy (or, linked, overlay) one disk of a clone's definition into its pool, and point
    the disk at the new volume; the volume goes into created as soon as it exists."""
    # .storage.disks imports this module
    from .storage.copies import check_source, copy_image, recorded_capacity

    source = disk.find("source")
    path = source.get("file") if source is not None else None
    if not path:
        return
    try:
        vol = conn.storageVolLookupByPath(path)
    except libvirt.libvirtError as exc:
        raise Conflict(
            f"Disk {path} is not a volume of an active storage pool: the panel can "
            "only clone disks it can see in a pool."
        ) from exc
    pool = vol.storagePoolLookupByVolume()
    image = _read_as(disk, path, recorded)
    fmt, chain = image.format, image.backing
    capacity = recorded_capacity(vol, fmt)
    target = disk.find("target").get("dev", "disk")
    name = f"{new_name}-{target}.qcow2" if linked or fmt == "qcow2" else f"{new_name}-{target}.img"
    claim_volume_name(pool, name, on_volume)
    if linked:
        check_source(conn, vol, image)
        new = pool.createXML(vol_xml(name, capacity, "qcow2", (path, fmt)), 0)
        driver = disk.find("driver")
        if driver is None:
            driver = etree.SubElement(disk, "driver", name="qemu")
        driver.set("type", "qcow2")
        chain = (BackingInfo(path, fmt), *chain)
    else:
        new = copy_image(
            conn,
            uri,
            vol,
            pool,
            name,
            source=image,
            format=fmt,
            capacity=capacity,
            progress=lambda _done, _total: None,
        )
        chain = ()
    created.append(new)
    source.set("file", new.path())
    _pin_chain(disk, chain)


def clone_domain(
    uri: str,
    uuid: str,
    new_name: str,
    *,
    linked: bool,
    on_volume: Callable[[str, str], None] | None = None,
    recorded: Mapping[str, tuple[BackingInfo, ...]] | None = None,
) -> DomainInfo:
    """Define a copy of a shut-off domain: every disk copied (full) or overlaid (linked
    qcow2 on the source disk), with a new name, UUID and MACs. Undoes itself on failure.
    on_volume(pool, name) hears of each new volume before it is made (a name already
    taken is refused first). Each disk is read as the format its definition gives, with
    the chain the definition gives (else recorded's, the panel's record, else none)."""
    with session(uri) as conn:
        src = conn.lookupByUUIDString(uuid)
        if src.isActive():
            raise Conflict(f"'{src.name()}' is running: shut it down before cloning it.")
        try:
            conn.lookupByName(new_name)
        except libvirt.libvirtError:
            pass
        else:
            raise Conflict(f"A domain named '{new_name}' already exists on this host.")
        root = etree.fromstring(src.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
        root.find("name").text = new_name
        for tag in ("uuid",):
            el = root.find(tag)
            if el is not None:
                root.remove(el)
        for mac in root.iterfind("./devices/interface/mac"):
            mac.getparent().remove(mac)
        created: list[libvirt.virStorageVol] = []
        try:
            for disk in root.iterfind("./devices/disk[@device='disk']"):
                _clone_disk(
                    conn,
                    uri,
                    disk,
                    new_name,
                    linked=linked,
                    on_volume=on_volume,
                    recorded=recorded or {},
                    created=created,
                )
            return domain_info(conn.defineXML(etree.tostring(root, encoding="unicode")))
        except Exception:
            for vol in created:
                with contextlib.suppress(libvirt.libvirtError):
                    vol.delete(0)
            raise
