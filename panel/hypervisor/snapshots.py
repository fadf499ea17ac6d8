"""Domain snapshots: list as a tree, take (internal checkpoint or external disk-only),
revert and delete, as `virsh snapshot-*` does them."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time

import libvirt
from lxml import etree

from . import images, qemu_img
from . import xml as xml_doc
from .backups.checkpoints import drop_checkpoints, dropped_line
from .connection import session
from .domains import vol_xml
from .errors import Conflict, HypervisorError
from .host import is_local
from .specs import SnapshotDisk, SnapshotInfo
from .xml import xml_builder

KINDS = ("internal", "external")


def _parse(snap: libvirt.virDomainSnapshot) -> SnapshotInfo:
    root = etree.fromstring(snap.getXMLDesc(0).encode())
    memory = root.find("memory")
    memory_mode = memory.get("snapshot", "no") if memory is not None else "no"
    disks = []
    for disk in root.iterfind("./disks/disk"):
        source = disk.find("source")
        disks.append(
            SnapshotDisk(
                target=disk.get("name", ""),
                snapshot=disk.get("snapshot", "no"),
                file=source.get("file", "") if source is not None else "",
            )
        )
    external = memory_mode == "external" or any(d.snapshot == "external" for d in disks)
    return SnapshotInfo(
        name=root.findtext("name") or snap.getName(),
        description=root.findtext("description") or "",
        parent=root.findtext("./parent/name") or "",
        state=root.findtext("state") or "",
        kind="external" if external else "internal",
        memory=memory_mode in ("internal", "external"),
        current=bool(snap.isCurrent(0)),
        created=int(root.findtext("creationTime") or 0),
        disks=tuple(disks),
    )


def _disk_sources(dom: libvirt.virDomain) -> dict[str, str]:
    root = etree.fromstring(dom.XMLDesc(0).encode())
    sources = {}
    for disk in root.iterfind("./devices/disk[@device='disk']"):
        source, target = disk.find("source"), disk.find("target")
        if source is not None and target is not None and source.get("file"):
            sources[target.get("dev", "")] = source.get("file", "")
    return sources


def _disk_images(dom: libvirt.virDomain) -> dict[str, qemu_img.PinnedImage]:
    """Each file-backed disk as its definition gives it: format and chain (none given:
    none followed)."""
    root = etree.fromstring(dom.XMLDesc(0).encode())
    found = {}
    for disk in root.iterfind("./devices/disk[@device='disk']"):
        source, driver = disk.find("source"), disk.find("driver")
        if source is None or not source.get("file"):
            continue
        fmt = (driver.get("type", "") if driver is not None else "") or "raw"
        chain = xml_doc.disk_chain(disk) or ()
        found[source.get("file", "")] = qemu_img.PinnedImage(source.get("file", ""), fmt, chain)
    return found


def _overlay(path: str) -> qemu_img.PinnedImage | None:
    """A snapshot's overlay file as a standalone qcow2, when its header passes the check."""
    try:
        with open(path, "rb") as f:
            head = f.read(images.HEAD_BYTES)
    except OSError:
        return None
    facts = images.inspect_head(head, "qcow2", whole=len(head) < images.HEAD_BYTES)
    return None if facts.problems else qemu_img.PinnedImage(path, "qcow2")


def _sizes(
    uri: str,
    sources: dict[str, str],
    snaps: list[SnapshotInfo],
    pinned: dict[str, qemu_img.PinnedImage] | None = None,
) -> list[SnapshotInfo]:
    """Each snapshot's size: its saved memory and disk state inside the qcow2 images
    (internal), or its overlay files (external). Read with qemu-img, so local hosts only;
    each image opened as its definition gives it (pinned), never as its header says."""
    if not is_local(uri):
        return snaps
    pinned = pinned or {}
    internal: dict[str, int] = {}
    actual: dict[str, int] = {}
    backing: dict[str, str] = {}
    paths = list(sources.values())
    paths += [d.file for s in snaps for d in s.disks if d.file and d.file not in paths]
    for path in paths:
        if path in actual:
            continue  # already read as part of an earlier chain
        image_spec = pinned.get(path) or _overlay(path)
        if image_spec is None:
            continue
        with contextlib.suppress(HypervisorError):
            for image in qemu_img.info(uri, image_spec):
                actual[str(image["path"])] = int(str(image["actual_size"] or 0))
                backing[str(image["path"])] = str(image["backing_file"] or "")
                if path not in sources.values():
                    continue  # the internal snapshots are counted on the disks in use
                for saved in image["snapshots"]:
                    name = str(saved["name"])
                    internal[name] = internal.get(name, 0) + int(saved["vm_state_size"])
    sized = []
    for snap in snaps:
        if snap.kind == "internal":
            size = internal.get(snap.name)
        else:
            size = sum(actual.get(d.file, 0) for d in snap.disks if d.snapshot == "external")
        disks = tuple(dataclasses.replace(d, chain=_chain(d.file, backing)) for d in snap.disks)
        sized.append(dataclasses.replace(snap, size=size, disks=disks))
    return sized


def _chain(path: str, backing: dict[str, str]) -> tuple[str, ...]:
    chain: list[str] = []
    while path and path in backing and path not in chain:
        chain.append(path)
        path = backing[path]
    return tuple(chain)


def list_snapshots(uri: str, uuid: str) -> list[SnapshotInfo]:
    """Every snapshot of the domain, parents before their children (the tree's order)."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        snaps = [_parse(s) for s in dom.listAllSnapshots(0)]
        sources = _disk_sources(dom)
        pinned = _disk_images(dom)
    by_parent: dict[str, list[SnapshotInfo]] = {}
    for snap in sorted(snaps, key=lambda s: (s.created, s.name)):
        by_parent.setdefault(snap.parent, []).append(snap)
    ordered: list[SnapshotInfo] = []

    def walk(parent: str) -> None:
        for child in by_parent.get(parent, []):
            ordered.append(child)
            walk(child.name)

    walk("")
    return _sizes(uri, sources, ordered, pinned)


def get_snapshot(uri: str, uuid: str, name: str) -> SnapshotInfo:
    """One snapshot by name; NotFound when the domain has none of that name."""
    with session(uri) as conn:
        return _parse(conn.lookupByUUIDString(uuid).snapshotLookupByName(name, 0))


@xml_builder
def snapshot_xml(name: str, description: str, kind: str, memory: bool) -> str:
    """The <domainsnapshot> document for a new snapshot."""
    if kind not in KINDS:
        raise HypervisorError(f"Unknown snapshot kind '{kind}': use internal or external.")
    root = etree.Element("domainsnapshot")
    etree.SubElement(root, "name").text = name
    if description:
        etree.SubElement(root, "description").text = description
    if kind == "internal":
        etree.SubElement(root, "memory", snapshot="internal" if memory else "no")
    else:
        etree.SubElement(root, "memory", snapshot="no")
    return etree.tostring(root, encoding="unicode")


def create_snapshot(
    uri: str,
    uuid: str,
    name: str,
    *,
    description: str = "",
    kind: str = "internal",
    memory: bool = False,
    quiesce: bool = False,
) -> SnapshotInfo:
    """Take a snapshot: internal (with the memory of a running guest: a checkpoint) or
    external disk-only, atomic across disks, quiesced through the guest agent if asked."""
    flags = 0
    if kind == "external":
        flags |= (
            libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
        )
        if quiesce:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE
    document = snapshot_xml(name, description, kind, memory)
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        if kind == "internal" and memory and not dom.isActive():
            raise Conflict(f"'{dom.name()}' is not running: there is no memory to save.")
        return _parse(dom.snapshotCreateXML(document, flags))


def revert_snapshot(
    uri: str, uuid: str, name: str, *, start: bool = False, discard_later: bool = False
) -> list[str]:
    """Go back to the snapshot; with start, the guest runs afterwards (like --running),
    otherwise it is left as the snapshot was (running or shut off). Returns what was done.

    libvirt before 9.9 refuses to revert to an external snapshot; then the panel does it
    (see _revert_external), and discard_later says what becomes of the later overlays.
    """
    flags = libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING if start else 0
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        snap = dom.snapshotLookupByName(name, 0)
        # The disks go back behind the backup checkpoints' bitmaps (and qemu refuses to
        # load an internal snapshot while a disk has one): the next backup is full.
        done = dropped_line(drop_checkpoints(dom))
        if _parse(snap).kind == "internal":
            dom.revertToSnapshot(snap, flags)
            return [*done, f"libvirt reverted to {name}"]
        try:
            dom.revertToSnapshot(snap, flags)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_CONFIG_UNSUPPORTED:
                raise
        else:
            return [*done, f"libvirt reverted to the external snapshot {name}"]
        return done + _revert_external(conn, dom, snap, start=start, discard_later=discard_later)


def _pool_volume(conn: libvirt.virConnect, path: str) -> libvirt.virStorageVol:
    """The volume at path, refreshing the pool of its directory first: libvirt made the
    snapshot overlays behind the pool's back."""
    directory = os.path.dirname(path)
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        target = etree.fromstring(pool.XMLDesc(0).encode()).findtext("./target/path") or ""
        if os.path.normpath(target) == os.path.normpath(directory):
            pool.refresh(0)
            return pool.storageVolLookupByName(os.path.basename(path))
    raise HypervisorError(
        f"{path} is not in an active storage pool of the host: define a pool for "
        f"{directory} so the panel can create the new overlay there."
    )


def _state_images(root: etree._Element, name: str) -> dict[str, tuple[str, str]]:
    """{disk: (image, format)} of the images holding an external snapshot's state: each
    external disk's source in the snapshot's own copy of the domain."""
    external = {
        d.get("name", ""): (
            d.find("source").get("file", "") if d.find("source") is not None else ""
        )
        for d in root.iterfind("./disks/disk[@snapshot='external']")
    }
    state_images: dict[str, tuple[str, str]] = {}
    for disk in root.iterfind("./domain/devices/disk"):
        target, source, driver = disk.find("target"), disk.find("source"), disk.find("driver")
        if target is not None and target.get("dev") in external and source is not None:
            state_images[target.get("dev", "")] = (
                source.get("file", ""),
                driver.get("type", "raw") if driver is not None else "raw",
            )
    if missing := sorted(set(external) - set(state_images)):
        raise HypervisorError(
            f"The snapshot {name} does not say which image holds the state of {', '.join(missing)}."
        )
    return state_images


def _redefine_on_overlays(
    conn: libvirt.virConnect,
    before: etree._Element,
    state_images: dict[str, tuple[str, str]],
    name: str,
    done: list[str],
) -> dict[str, str]:
    """Give each state image a new qcow2 overlay and redefine the domain (its definition
    before) on them; {disk: overlay path}. The overlays are deleted again on failure."""
    stamp = time.strftime("%Y%m%d%H%M%S")
    created: dict[str, str] = {}
    try:
        for target, (image, fmt) in state_images.items():
            base = _pool_volume(conn, image)
            pool = base.storagePoolLookupByVolume()
            capacity = base.info()[1]
            stem = os.path.splitext(os.path.basename(image))[0]
            vol = pool.createXML(
                vol_xml(f"{stem}.{name}.revert-{stamp}", capacity, "qcow2", (image, fmt)), 0
            )
            created[target] = vol.path()
            done.append(f"{target}: new overlay {vol.path()} on {image}")
        for disk in before.iterfind("./devices/disk"):
            target = disk.find("target")
            if target is None or target.get("dev") not in created:
                continue
            disk.find("source").set("file", created[target.get("dev", "")])
            driver = disk.find("driver")
            if driver is None:
                driver = etree.SubElement(disk, "driver", name="qemu")
            driver.set("type", "qcow2")
            for store in disk.findall("backingStore"):
                disk.remove(store)
        conn.defineXML(etree.tostring(before, encoding="unicode"))
    except Exception:
        for path in created.values():
            with contextlib.suppress(libvirt.libvirtError):
                conn.storageVolLookupByPath(path).delete(0)
        raise
    return created


def _revert_external(
    conn: libvirt.virConnect,
    dom: libvirt.virDomain,
    snap: libvirt.virDomainSnapshot,
    *,
    start: bool,
    discard_later: bool,
) -> list[str]:
    """Revert to an external snapshot by hand: each of its disks gets a new qcow2 overlay on
    the image that holds the snapshot's state (the disk's source in the snapshot's own copy
    of the domain), the domain is redefined on the new overlays, and the snapshot marked
    current. The later overlays stay, so their snapshots can be reverted to too, unless
    discard_later: then they and the snapshots below this one are deleted."""
    done: list[str] = []
    root = etree.fromstring(snap.getXMLDesc(0).encode())
    name = root.findtext("name") or snap.getName()
    state_images = _state_images(root, name)
    before = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    if dom.isActive():
        dom.destroy()
        done.append("stopped the guest (a disk-only snapshot has no memory to return to)")
    created = _redefine_on_overlays(conn, before, state_images, name, done)
    done.append("domain redefined on the new overlays")
    if discard_later:
        for child in snap.listAllChildren(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS):
            child_name = child.getName()
            child.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
            done.append(f"snapshot {child_name} discarded")
        done += _discard_later(conn, dom, state_images, set(created.values()))
    # Mark the snapshot current: redefine its own metadata with the CURRENT flag.
    dom.snapshotCreateXML(
        snap.getXMLDesc(libvirt.VIR_DOMAIN_SNAPSHOT_XML_SECURE),
        libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT,
    )
    if start:
        dom.create()
        done.append("started")
    return done


def _discard_later(
    conn: libvirt.virConnect,
    dom: libvirt.virDomain,
    state_images: dict[str, tuple[str, str]],
    new: set[str],
) -> list[str]:
    """Delete the overlays above each state image: the snapshot overlays taken after it and
    the overlays of earlier reverts, i.e. the files libvirt (`<stem>.<snapshot>`) or the panel
    (`<stem>.<snapshot>.revert-<time>`) named after the disk whose backing chain runs through
    the state image. The images holding a remaining snapshot's state are kept; the overlay
    a snapshot started only holds what came after it, and goes."""
    still_used = set(new)
    for other in dom.listAllSnapshots(0):
        other_root = etree.fromstring(other.getXMLDesc(0).encode())
        still_used |= {
            s.get("file", "") for s in other_root.iterfind("./domain/devices/disk/source")
        }
    done = []
    for image, _fmt in state_images.values():
        pool = _pool_volume(conn, image).storagePoolLookupByVolume()
        backing = {}
        for vol in pool.listAllVolumes(0):
            path = etree.fromstring(vol.XMLDesc(0).encode()).findtext("./backingStore/path") or ""
            backing[vol.path()] = path
        stem = os.path.splitext(os.path.basename(image))[0] + "."
        for path in sorted(backing):
            if path in still_used or path == image or not os.path.basename(path).startswith(stem):
                continue
            below, seen = backing.get(path, ""), {path}
            while below and below != image and below not in seen:
                seen.add(below)
                below = backing.get(below, "")
            if below == image:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.storageVolLookupByPath(path).delete(0)
                    done.append(f"deleted {path}")
    return done


def has_guest_agent(uri: str, uuid: str) -> bool:
    """Whether a guest agent is connected (needed to quiesce the guest's filesystems)."""
    with session(uri) as conn:
        root = etree.fromstring(conn.lookupByUUIDString(uuid).XMLDesc(0).encode())
    target = root.find("./devices/channel/target[@name='org.qemu.guest_agent.0']")
    return target is not None and target.get("state") == "connected"


def delete_snapshot(uri: str, uuid: str, name: str, *, children: bool = False) -> None:
    """Delete the snapshot (its children move up to its parent), or it and all below it."""
    flags = libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN if children else 0
    with session(uri) as conn:
        snap = conn.lookupByUUIDString(uuid).snapshotLookupByName(name, 0)
        snap.delete(flags)
