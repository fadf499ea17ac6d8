"""Domain snapshots: list as a tree, take (internal checkpoint or external disk-only),
revert and delete, as `virsh snapshot-*` does them."""

from __future__ import annotations

import contextlib
import dataclasses

import libvirt
from lxml import etree

from . import qemu_img
from .connection import session
from .errors import Conflict, HypervisorError
from .host import is_local
from .specs import SnapshotDisk, SnapshotInfo

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


def _sizes(uri: str, sources: dict[str, str], snaps: list[SnapshotInfo]) -> list[SnapshotInfo]:
    """Each snapshot's size: its saved memory and disk state inside the qcow2 images
    (internal), or its overlay files (external). Read with qemu-img, so local hosts only."""
    if not is_local(uri):
        return snaps
    internal: dict[str, int] = {}
    actual: dict[str, int] = {}
    for path in sources.values():
        with contextlib.suppress(HypervisorError):
            for image in qemu_img.info(uri, path):
                actual[str(image["path"])] = int(str(image["actual_size"] or 0))
                for saved in image["snapshots"]:  # type: ignore[attr-defined]
                    name = str(saved["name"])
                    internal[name] = internal.get(name, 0) + int(saved["vm_state_size"])
    sized = []
    for snap in snaps:
        if snap.kind == "internal":
            size = internal.get(snap.name)
        else:
            size = sum(actual.get(d.file, 0) for d in snap.disks if d.snapshot == "external")
        sized.append(dataclasses.replace(snap, size=size))
    return sized


def list_snapshots(uri: str, uuid: str) -> list[SnapshotInfo]:
    """Every snapshot of the domain, parents before their children (the tree's order)."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        snaps = [_parse(s) for s in dom.listAllSnapshots(0)]
        sources = _disk_sources(dom)
    by_parent: dict[str, list[SnapshotInfo]] = {}
    for snap in sorted(snaps, key=lambda s: (s.created, s.name)):
        by_parent.setdefault(snap.parent, []).append(snap)
    ordered: list[SnapshotInfo] = []

    def walk(parent: str) -> None:
        for child in by_parent.get(parent, []):
            ordered.append(child)
            walk(child.name)

    walk("")
    return _sizes(uri, sources, ordered)


def get_snapshot(uri: str, uuid: str, name: str) -> SnapshotInfo:
    """One snapshot by name; NotFound when the domain has none of that name."""
    with session(uri) as conn:
        return _parse(conn.lookupByUUIDString(uuid).snapshotLookupByName(name, 0))


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


def revert_snapshot(uri: str, uuid: str, name: str, *, start: bool = False) -> None:
    """Go back to the snapshot; with start, the guest runs afterwards (like --running),
    otherwise it is left as the snapshot was (running or shut off)."""
    flags = libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING if start else 0
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        dom.revertToSnapshot(dom.snapshotLookupByName(name, 0), flags)


def delete_snapshot(uri: str, uuid: str, name: str, *, children: bool = False) -> None:
    """Delete the snapshot (its children move up to its parent), or it and all below it."""
    flags = libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN if children else 0
    with session(uri) as conn:
        snap = conn.lookupByUUIDString(uuid).snapshotLookupByName(name, 0)
        snap.delete(flags)
