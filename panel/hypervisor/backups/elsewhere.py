"""Restoring a backup as a new domain on another host than the one holding the backup.

Each disk's point is flattened into a scratch qcow2 volume of the backup's pool on the
backup's host (its chain read as recorded), its file streamed through libvirt into a new
volume of the target pool, and the scratch volume deleted; the domain is then defined on
the target host on the new volumes. Only libvirt's streams cross between the hosts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

import libvirt
from lxml import etree

from panel.hypervisor import xml
from panel.hypervisor.backups.common import backup_pool, flat_copy, part_progress, volume_at_path
from panel.hypervisor.backups.restore import name_free, new_definition, point_disks
from panel.hypervisor.connection import session
from panel.hypervisor.domains import claim_volume_name
from panel.hypervisor.errors import Conflict
from panel.hypervisor.qemu_img import PinnedImage
from panel.hypervisor.specs import VolumeSpec
from panel.hypervisor.storage.streams import CHUNK, Progress, no_progress

OnVolume = Callable[[str, str], None] | None


def restore_on_host(
    uri: str,
    target_uri: str,
    definition: str,
    copies: Mapping[str, PinnedImage],
    scratch_pool: str,
    pool: str,
    new_name: str,
    *,
    progress: Progress = no_progress,
    on_volume: OnVolume = None,
    on_target_volume: OnVolume = None,
) -> tuple[str, list[str]]:
    """Define a new domain on the host at target_uri from a backup held on the host at uri:
    restore_as_new's definition, each disk (target -> backup image) copied into pool there.
    Returns the new domain's UUID and the files made there; undone on failure. on_volume
    hears of each scratch volume (in scratch_pool, on the backup's host), on_target_volume
    of each new volume, before it is made."""
    with session(target_uri) as target:
        name_free(target, new_name)
        dest, _directory = backup_pool(target, pool)
        root = new_definition(definition, new_name)
        made: list[libvirt.virStorageVol] = []
        try:
            paths = {}
            for index, (disk, image) in enumerate(sorted(copies.items())):
                name = f"{new_name}-{disk}.qcow2"
                claim_volume_name(dest, name, on_target_volume)
                part = part_progress(progress, index, len(copies))
                vol = _carry(uri, image, scratch_pool, target, dest, name, part, on_volume, made)
                paths[disk] = vol.path()
            point_disks(root, paths)
            dom = target.defineXML(etree.tostring(root, encoding="unicode"))
            return dom.UUIDString(), [v.path() for v in made]
        except BaseException:
            for vol in made:
                with contextlib.suppress(libvirt.libvirtError):
                    vol.delete(0)
            raise


def _carry(
    uri: str,
    image: PinnedImage,
    scratch_pool: str,
    target: libvirt.virConnect,
    dest: libvirt.virStoragePool,
    name: str,
    progress: Progress,
    on_volume: OnVolume,
    made: list[libvirt.virStorageVol],
) -> libvirt.virStorageVol:
    """The image flattened into a scratch qcow2 volume on its host, and that file streamed
    into the new volume name of dest (appended to made once it exists)."""
    with session(uri) as conn:
        here, _directory = backup_pool(conn, scratch_pool)
        scratch_name = f"{name}.scratch"
        claim_volume_name(here, scratch_name, on_volume)
        src = volume_at_path(conn, image.path)
        scratch = flat_copy(conn, src, here, scratch_name, no_progress, image)
        try:
            # The file's length (qcow2: its physical size), not the disk's capacity.
            length = int(scratch.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2])
            # A raw volume of that length takes the qcow2 file's bytes as they are.
            spec = VolumeSpec(name=name, capacity=length, format="raw")
            vol = dest.createXML(xml.build_volume(spec), 0)
            made.append(vol)
            _stream(conn, scratch, target, vol, length, progress)
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                scratch.delete(0)
    dest.refresh(0)
    return dest.storageVolLookupByName(name)


def _stream(
    conn: libvirt.virConnect,
    src: libvirt.virStorageVol,
    target: libvirt.virConnect,
    vol: libvirt.virStorageVol,
    length: int,
    progress: Progress,
) -> None:
    """length bytes of src sent into vol, host to host through the panel."""
    down, up = conn.newStream(0), target.newStream(0)
    src.download(down, 0, length, 0)
    vol.upload(up, 0, length, 0)
    sent = 0
    try:
        while sent < length:
            chunk = down.recv(min(CHUNK, length - sent))
            if isinstance(chunk, int) or not chunk:
                raise Conflict(
                    f"The backup's host ended the stream after {sent} of {length} bytes."
                )
            view = memoryview(chunk)
            while view:
                n = up.send(bytes(view))
                if n < 0:
                    raise Conflict("The target host refused the stream.")
                view = view[n:]
            sent += len(chunk)
            progress(sent, length)
        down.finish()
        up.finish()
    except BaseException:
        for stream in (down, up):
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
        raise
