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

from panel.hypervisor import xml
from panel.hypervisor.backups.common import backup_pool, flat_copy, volume_at_path
from panel.hypervisor.backups.restore import define_new
from panel.hypervisor.connection import session
from panel.hypervisor.domains import claim_volume_name
from panel.hypervisor.qemu_img import PinnedImage
from panel.hypervisor.specs import VolumeSpec
from panel.hypervisor.storage.streams import (
    Progress,
    download_volume,
    no_progress,
    upload_volume,
)

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

        def copy_one(
            dest: libvirt.virStoragePool,
            image: PinnedImage,
            name: str,
            part: Progress,
            made: list[libvirt.virStorageVol],
        ) -> libvirt.virStorageVol:
            claim_volume_name(dest, name, on_target_volume)
            return _carry(uri, target_uri, image, scratch_pool, dest, name, part, on_volume, made)

        return define_new(target, definition, copies, pool, new_name, progress, copy_one)


def _carry(
    uri: str,
    target_uri: str,
    image: PinnedImage,
    scratch_pool: str,
    dest: libvirt.virStoragePool,
    name: str,
    progress: Progress,
    on_volume: OnVolume,
    made: list[libvirt.virStorageVol],
) -> libvirt.virStorageVol:
    """The image flattened into a scratch qcow2 volume on its host, and that file streamed
    into the new volume name of dest, on the host at target_uri (appended to made once it
    exists)."""
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
            made.append(dest.createXML(xml.build_volume(spec), 0))
            _size, chunks = download_volume(uri, scratch_pool, scratch_name)
            upload_volume(target_uri, dest.name(), name, chunks, length, progress=progress)
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                scratch.delete(0)
    dest.refresh(0)
    return dest.storageVolLookupByName(name)
