"""Copying images between volumes as their recorded format says, and the checks before
libvirt or qemu-img open one: a header that names nothing unrecorded, libvirt's view of
the format agreeing with the record.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

import libvirt

from panel.hypervisor import images, qemu_img, xml
from panel.hypervisor.connection import session
from panel.hypervisor.errors import Conflict
from panel.hypervisor.host import is_local
from panel.hypervisor.inventory import volume_info
from panel.hypervisor.qemu_img import PinnedImage
from panel.hypervisor.specs import VolumeInfo, VolumeSpec
from panel.hypervisor.storage.pools import pool_by_name, running_volume, volume_exists
from panel.hypervisor.storage.streams import Progress, no_progress, read_head


def _watch_copy(
    conn: libvirt.virConnect,
    work: Callable[[], libvirt.virStorageVol],
    pool: libvirt.virStoragePool,
    new_name: str,
    total: int,
    progress: Progress,
) -> libvirt.virStorageVol:
    """Run a blocking copy in a thread; report the new volume's growing allocation."""
    made: list[libvirt.virStorageVol] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            made.append(work())
        except BaseException as exc:  # handed to the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=run, name=f"copy-{new_name}", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.5)
            with contextlib.suppress(libvirt.libvirtError):
                done = pool.storageVolLookupByName(new_name).info()[2]
                progress(min(done, total), total)
    except BaseException:
        thread.join()
        with contextlib.suppress(libvirt.libvirtError):
            pool.storageVolLookupByName(new_name).delete(0)
        raise
    if failed:
        raise failed[0]
    return made[0]


def inspect_volume(uri: str, pool: str, name: str, declared: str) -> images.ImageFacts:
    """Check the volume's header against the format it was declared (nothing followed)."""
    with session(uri) as conn:
        head = read_head(conn, running_volume(conn, pool, name), images.HEAD_BYTES)
    return images.inspect_head(head, declared, whole=len(head) < images.HEAD_BYTES)


def recorded_capacity(vol: libvirt.virStorageVol, fmt: str) -> int:
    """The size of a volume as its recorded format has it: a raw image is as large as its
    file (libvirt's capacity would come from a header the content may fake)."""
    _type, capacity, _alloc = vol.info()
    if fmt in ("raw", "iso"):
        with contextlib.suppress(libvirt.libvirtError, AttributeError):
            return int(vol.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2])
    return int(capacity)


def require_view(vol: libvirt.virStorageVol, source: PinnedImage) -> None:
    """libvirt picks the format of a copy's source from its own probe of the file: on a
    host where qemu-img cannot be given the recorded format, its view must agree."""
    document = vol.XMLDesc(0)
    seen = xml.parse_volume_format(document) or "raw"
    backing = xml.parse_volume_backing(document)
    wanted = "raw" if source.format in ("", "iso") else source.format
    if seen in ("iso",):
        seen = "raw"
    first = source.backing[0].path if source.backing else ""
    if seen != wanted or (backing[0].path if backing else "") != first:
        raise Conflict(
            f"{os.path.basename(source.path)} is recorded as {wanted}"
            + (f" on {first}" if first else "")
            + f", but its content reads as {seen}"
            + (f" on {backing[0].path}" if backing else "")
            + ": on this host libvirt would act on it as it reads, so the panel refuses. "
            "Do it on the panel's own host (where qemu-img is told the recorded format), "
            "or wipe the volume."
        )


def check_source(conn: libvirt.virConnect, vol: libvirt.virStorageVol, source: PinnedImage) -> None:
    """Conflict unless the image's header is safe to open as its recorded format: no data
    file, no extents, no backing file but the recorded one. Raw needs nothing: qemu reads
    it as bytes."""
    if source.format in ("", "raw", "iso"):
        return
    head = read_head(conn, vol, images.HEAD_BYTES)
    facts = images.inspect_head(head, source.format, whole=len(head) < images.HEAD_BYTES)
    problems = [p for p in facts.problems if p != images.CHECKS["banned"]]
    named = images.backing_path(source.path, facts.backing_file) if facts.backing_file else ""
    if named and named != (source.backing[0].path if source.backing else ""):
        problems.append(f"its header names the backing file {named[:200]}, which is not recorded")
    if problems:
        raise Conflict(
            f"{os.path.basename(source.path)} is refused: {'; '.join(problems)}. "
            "Wipe it or upload a self-contained image."
        )


def copy_image(
    conn: libvirt.virConnect,
    uri: str,
    src: libvirt.virStorageVol,
    dest: libvirt.virStoragePool,
    new_name: str,
    *,
    source: PinnedImage,
    format: str,
    capacity: int,
    progress: Progress,
) -> libvirt.virStorageVol:
    """A copy of src (read as source says: its recorded format and chain, flattened) as
    volume new_name of dest in format; removed again when the copy fails.

    On the panel's host qemu-img is given the format and chain; elsewhere libvirt copies
    (createXMLFrom) and its view of the source must match the record first."""
    check_source(conn, src, source)
    document = xml.build_volume(VolumeSpec(name=new_name, capacity=capacity, format=format))
    _type, _capacity, allocation = src.info()
    work: Callable[[], libvirt.virStorageVol]
    if is_local(uri) and os.path.exists(source.path):

        def work() -> libvirt.virStorageVol:
            vol = dest.createXML(document, 0)
            target = vol.path()
            qemu_img.convert(
                uri, source, target, format, target_is_zero=not target.startswith("/dev/")
            )
            return dest.storageVolLookupByName(new_name)

    else:
        require_view(src, source)

        def work() -> libvirt.virStorageVol:
            return dest.createXMLFrom(document, src, 0)

    return _watch_copy(conn, work, dest, new_name, max(allocation, 1), progress)


def copy_volume(
    uri: str,
    pool: str,
    name: str,
    new_name: str,
    *,
    source: PinnedImage,
    format: str | None = None,
    target_pool: str | None = None,
    progress: Progress = no_progress,
) -> VolumeInfo:
    """Copy a volume (clone), converting its format when format differs; undone on failure.
    source: the volume as recorded (its format and backing chain), never its header."""
    with session(uri) as conn:
        src = running_volume(conn, pool, name)
        dest = pool_by_name(conn, target_pool or pool)
        if not dest.isActive():
            raise Conflict(f"Pool '{target_pool}' is not running: start it first.")
        if volume_exists(dest, new_name):
            raise Conflict(
                f"A volume named '{new_name}' already exists in pool '{target_pool or pool}'."
            )
        vol = copy_image(
            conn,
            uri,
            src,
            dest,
            new_name,
            source=source,
            format=format or source.format or "raw",
            capacity=recorded_capacity(src, source.format),
            progress=progress,
        )
        return volume_info(dest, vol)
