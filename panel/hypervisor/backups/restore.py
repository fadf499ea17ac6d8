"""Restoring from a backup: as a new domain, or in place of a shut-off domain's disks."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping

import libvirt
from lxml import etree

from panel.hypervisor.backups.checkpoints import drop_checkpoints, dropped_line
from panel.hypervisor.backups.common import (
    backup_pool,
    file_disks,
    flat_copy,
    part_progress,
    volume_at_path,
)
from panel.hypervisor.connection import session
from panel.hypervisor.domains import claim_volume_name
from panel.hypervisor.errors import Conflict, HypervisorError
from panel.hypervisor.qemu_img import PinnedImage
from panel.hypervisor.storage.streams import Progress, no_progress


def point_disks(root: etree._Element, paths: dict[str, str]) -> None:
    """Set each listed disk's source to its new standalone qcow2 file."""
    for disk in root.iterfind("./devices/disk[@device='disk']"):
        target = disk.find("target")
        if target is None or target.get("dev") not in paths:
            continue
        disk.set("type", "file")
        source = disk.find("source")
        if source is None:
            source = etree.SubElement(disk, "source")
        for key in list(source.attrib):
            del source.attrib[key]
        source.set("file", paths[target.get("dev", "")])
        driver = disk.find("driver")
        if driver is None:
            driver = etree.SubElement(disk, "driver", name="qemu")
        driver.set("type", "qcow2")
        for store in disk.findall("backingStore"):
            disk.remove(store)
        # A standalone copy: qemu follows no backing file its header might name.
        etree.SubElement(disk, "backingStore")


def new_definition(definition: str, new_name: str) -> etree._Element:
    """A backup's definition for a new domain: new name; no UUID, NVRAM file or MACs (libvirt
    makes new ones)."""
    root = etree.fromstring(definition.encode())
    root.find("name").text = new_name
    for tag in ("uuid", "./os/nvram"):
        for el in root.findall(tag):
            el.getparent().remove(el)
    for mac in root.iterfind("./devices/interface/mac"):
        mac.getparent().remove(mac)
    return root


def name_free(conn: libvirt.virConnect, new_name: str) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        conn.lookupByName(new_name)
        raise Conflict(f"A domain named '{new_name}' already exists on this host.")


def restore_as_new(
    uri: str,
    definition: str,
    copies: Mapping[str, PinnedImage],
    pool: str,
    new_name: str,
    *,
    progress: Progress = no_progress,
    on_volume: Callable[[str, str], None] | None = None,
) -> tuple[str, list[str]]:
    """Define a new domain from a backup: its definition with a new name, UUID and MACs, and
    each backed-up disk (target -> backup file) copied into pool. Returns the new domain's
    UUID and the files made; undone on failure. on_volume(pool, name) hears of each new
    volume before it is made. Each backup file is read as recorded: an incremental copy
    with the copies it builds on below it, flattened into one image."""
    with session(uri) as conn:

        def copy_one(
            dest: libvirt.virStoragePool,
            image: PinnedImage,
            name: str,
            part: Progress,
            made: list[libvirt.virStorageVol],
        ) -> libvirt.virStorageVol:
            made.append(_copy_backup(conn, image, dest, name, part, on_volume))
            return made[-1]

        return define_new(conn, definition, copies, pool, new_name, progress, copy_one)


# copy_one(dest pool, backup image, new volume's name, progress, made): the new volume,
# appended to made as soon as it exists.
CopyOne = Callable[
    [libvirt.virStoragePool, PinnedImage, str, Progress, list[libvirt.virStorageVol]],
    libvirt.virStorageVol,
]


def define_new(
    conn: libvirt.virConnect,
    definition: str,
    copies: Mapping[str, PinnedImage],
    pool: str,
    new_name: str,
    progress: Progress,
    copy_one: CopyOne,
) -> tuple[str, list[str]]:
    """A new domain on conn's host from a backup's definition (see new_definition), each
    disk (target -> backup image) copied into pool by copy_one. Its UUID and the files
    made; undone on failure."""
    name_free(conn, new_name)
    dest, _directory = backup_pool(conn, pool)
    root = new_definition(definition, new_name)
    made: list[libvirt.virStorageVol] = []
    try:
        paths = {}
        for index, (target, image) in enumerate(sorted(copies.items())):
            part = part_progress(progress, index, len(copies))
            paths[target] = copy_one(dest, image, f"{new_name}-{target}.qcow2", part, made).path()
        point_disks(root, paths)
        dom = conn.defineXML(etree.tostring(root, encoding="unicode"))
        return dom.UUIDString(), [v.path() for v in made]
    except BaseException:
        for vol in made:
            with contextlib.suppress(libvirt.libvirtError):
                vol.delete(0)
        raise


def _copy_backup(
    conn: libvirt.virConnect,
    image: PinnedImage,
    dest: libvirt.virStoragePool,
    name: str,
    progress: Progress,
    on_volume: Callable[[str, str], None] | None,
) -> libvirt.virStorageVol:
    """The backup image (its chain flattened) copied into a new volume name of pool dest,
    the name claimed first (on_volume told)."""
    claim_volume_name(dest, name, on_volume)
    return flat_copy(conn, volume_at_path(conn, image.path), dest, name, progress, image)


def _copy_beside(
    conn: libvirt.virConnect,
    current: dict[str, str],
    copies: Mapping[str, PinnedImage],
    progress: Progress,
    on_volume: Callable[[str, str], None] | None,
    made: list[libvirt.virStorageVol],
    done: list[str],
) -> dict[str, str]:
    """Copy each backup (target -> backup file) beside the image it replaces, as
    `<stem>.restored-<stamp>.qcow2`; the new path of each disk. Each volume goes into made
    once copied, and what was done into done."""
    stamp = time.strftime("%Y%m%d%H%M%S")
    paths = {}
    for index, (target, image) in enumerate(sorted(copies.items())):
        old = volume_at_path(conn, current[target])
        stem = os.path.splitext(old.name())[0]
        dest = old.storagePoolLookupByVolume()
        name = f"{stem}.restored-{stamp}.qcow2"
        part = part_progress(progress, index, len(copies))
        vol = _copy_backup(conn, image, dest, name, part, on_volume)
        made.append(vol)
        paths[target] = vol.path()
        done.append(f"{target}: {image.path} copied to {vol.path()}")
    return paths


def _delete_replaced(
    conn: libvirt.virConnect, dom: libvirt.virDomain, replaced: dict[str, str]
) -> list[str]:
    """Delete the images a restore replaced (target -> path) unless a snapshot of the
    domain still needs them; what was done."""
    done = []
    needed = set()
    for snap in dom.listAllSnapshots(0):
        snap_root = etree.fromstring(snap.getXMLDesc(0).encode())
        needed |= {s.get("file", "") for s in snap_root.iter("source")}
    for target, old_path in replaced.items():
        if old_path in needed:
            done.append(f"{target}: kept {old_path} (a snapshot needs it)")
            continue
        with contextlib.suppress(libvirt.libvirtError, HypervisorError):
            volume_at_path(conn, old_path).delete(0)
            done.append(f"{target}: deleted the replaced image {old_path}")
    return done


def restore_in_place(
    uri: str,
    uuid: str,
    copies: Mapping[str, PinnedImage],
    *,
    progress: Progress = no_progress,
    on_volume: Callable[[str, str], None] | None = None,
) -> list[str]:
    """Put a shut-off domain's disks back to a backup: each backed-up disk gets a fresh copy
    of its backup beside its current image, the domain is redefined on the copies, and the
    images it used before are deleted unless a snapshot still needs them. Its definition is
    otherwise kept as it is now. Returns what was done; undone on failure. on_volume(pool,
    name) hears of each new volume before it is made."""
    done: list[str] = []
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        if dom.isActive():
            raise Conflict(f"'{dom.name()}' is running: shut it down before restoring it.")
        root = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
        current = dict(file_disks(dom, libvirt.VIR_DOMAIN_XML_INACTIVE)[0])
        if missing := sorted(set(copies) - set(current)):
            raise Conflict(
                f"The domain no longer has the disk(s) {', '.join(missing)} the backup holds: "
                "restore it as a new VM instead."
            )
        made: list[libvirt.virStorageVol] = []
        try:
            paths = _copy_beside(conn, current, copies, progress, on_volume, made, done)
            point_disks(root, paths)
            # The disks change behind the checkpoints' bitmaps: the next backup is full.
            done.extend(dropped_line(drop_checkpoints(dom)))
            conn.defineXML(etree.tostring(root, encoding="unicode"))
        except BaseException:
            for vol in made:
                with contextlib.suppress(libvirt.libvirtError):
                    vol.delete(0)
            raise
        done.extend(_delete_replaced(conn, dom, {t: current[t] for t in paths}))
    return done
