"""Volumes in a pool: creating (with each preallocation), listing, resizing, wiping and
deleting them, and finding the volume at a path.

Pools and volumes are named by (pool name, volume name), as virsh does.
"""

from __future__ import annotations

import contextlib
import os
import time

import libvirt

from panel.hypervisor import qemu_img, xml
from panel.hypervisor.connection import session
from panel.hypervisor.errors import Conflict, HypervisorError, NotFound
from panel.hypervisor.host import is_local
from panel.hypervisor.inventory import volume_info
from panel.hypervisor.qemu_img import PinnedImage
from panel.hypervisor.specs import VolumeInfo, VolumeSpec
from panel.hypervisor.storage.copies import recorded_capacity, require_view
from panel.hypervisor.storage.pools import pool_by_name, running_volume, volume_exists
from panel.hypervisor.storage.streams import CHUNK


def get_volume(uri: str, pool: str, name: str) -> VolumeInfo:
    with session(uri) as conn:
        return volume_info(pool_by_name(conn, pool), running_volume(conn, pool, name))


def list_volumes(uri: str, pool: str) -> list[VolumeInfo]:
    """The pool's volumes, after a refresh so files added outside libvirt show up."""
    with session(uri) as conn:
        p = pool_by_name(conn, pool)
        if not p.isActive():
            raise Conflict(f"Pool '{pool}' is not running: start it first.")
        p.refresh(0)
        return [volume_info(p, v) for v in p.listAllVolumes(0)]


def volume_xml(uri: str, pool: str, name: str) -> str:
    with session(uri) as conn:
        return running_volume(conn, pool, name).XMLDesc(0)


def create_volume(uri: str, pool: str, spec: VolumeSpec) -> VolumeInfo:
    """Create a volume. Preallocation: off (thin), metadata (qcow2 only), falloc
    (space reserved, not written) or full (space written with zeros)."""
    with session(uri) as conn:
        p = pool_by_name(conn, pool)
        if not p.isActive():
            raise Conflict(f"Pool '{pool}' is not running: start it first.")
        if volume_exists(p, spec.name):
            raise Conflict(f"A volume named '{spec.name}' already exists in pool '{pool}'.")
        if spec.preallocation == "full" and spec.format != "raw":
            return _create_full_image(uri, p, spec)
        flags = 0
        allocation = 0
        if spec.preallocation == "metadata":
            flags = libvirt.VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA
        elif spec.preallocation in ("falloc", "full"):
            allocation = spec.capacity
            if spec.format != "raw":
                flags = libvirt.VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA
        vol = p.createXML(xml.build_volume(spec, allocation=allocation), flags)
        if spec.preallocation == "full":
            # Reserved by fallocate above; now written with zeros, like preallocation=full.
            try:
                _write_zeros(conn, vol)
            except Exception:
                with contextlib.suppress(libvirt.libvirtError):
                    vol.delete(0)
                raise
        return volume_info(p, vol)


def _write_zeros(
    conn: libvirt.virConnect, vol: libvirt.virStorageVol, size: int | None = None
) -> None:
    """Zero a raw volume's data, keeping its size.

    libvirt's zero wipe of a file writes as many bytes as the file allocates, and a file
    system counts its own metadata in that (ext4's extent blocks: a 1 GiB file allocates
    1 GiB + 4 KiB), so the zeros run past the end and the file grows, and libvirt then
    refuses to shrink it below its allocation. Such a file gets exactly its capacity in
    zeros through an upload stream instead (on remote hosts too); a sparse file (the wipe
    punches it empty) and a block device (it cannot grow) keep libvirt's wipe.
    """
    kind, capacity, allocation = vol.info()
    capacity = capacity if size is None else size
    if kind != libvirt.VIR_STORAGE_VOL_FILE or allocation <= capacity:
        vol.wipePattern(libvirt.VIR_STORAGE_VOL_WIPE_ALG_ZERO, 0)
        return
    zeros = bytes(CHUNK)
    stream = conn.newStream(0)
    vol.upload(stream, 0, capacity, 0)
    try:
        remaining = capacity
        while remaining:
            sent = stream.send(zeros[: min(CHUNK, remaining)])
            if sent < 0:
                raise Conflict("The host refused the stream that zeroes the volume.")
            remaining -= sent
        stream.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise


def _create_full_image(uri: str, p: libvirt.virStoragePool, spec: VolumeSpec) -> VolumeInfo:
    """qcow2 and friends with every byte written: libvirt cannot, qemu-img on this host can."""
    pool_type, target = xml.parse_pool(p.XMLDesc(0))
    if pool_type not in ("dir", "fs", "netfs") or not target:
        raise Conflict(
            f"Full preallocation of a {spec.format} volume needs a directory pool; "
            "use falloc, or a raw volume."
        )
    path = f"{target.rstrip('/')}/{spec.name}"
    qemu_img.create_full(uri, path, spec.format, spec.capacity)
    p.refresh(0)
    return volume_info(p, p.storageVolLookupByName(spec.name))


def resize_volume(
    uri: str, pool: str, name: str, capacity: int, *, shrink: bool, source: PinnedImage
) -> VolumeInfo:
    """Resize a volume as its recorded format (source), never as its content reads."""
    with session(uri) as conn:
        vol = running_volume(conn, pool, name)
        try:
            require_view(vol, source)
        except Conflict:
            # libvirt would resize it as the format it guessed: qemu-img is told instead.
            if not (is_local(uri) and os.path.exists(source.path)):
                raise
            qemu_img.resize(uri, source, capacity, shrink=shrink)
            return volume_info(pool_by_name(conn, pool), vol)
        flags = libvirt.VIR_STORAGE_VOL_RESIZE_SHRINK if shrink else 0
        vol.resize(capacity, flags)
        return volume_info(pool_by_name(conn, pool), vol)


def wipe_volume(uri: str, pool: str, name: str, *, source: PinnedImage) -> VolumeInfo:
    """Write zeros over the volume's data. A volume of another format than raw is
    recreated empty instead, with the same size and recorded backing file, since zeroing
    it would destroy its header. source: the format and chain as recorded."""
    with session(uri) as conn:
        p = pool_by_name(conn, pool)
        vol = running_volume(conn, pool, name)
        fmt = source.format or "raw"
        if fmt in ("raw", "iso"):
            _write_zeros(conn, vol, recorded_capacity(vol, fmt))
            return volume_info(p, vol)
        _type, capacity, _alloc = vol.info()
        backing = source.backing
        spec = VolumeSpec(
            name=name,
            capacity=capacity,
            format=fmt,
            backing_path=backing[0].path if backing else "",
            backing_format=backing[0].format if backing else "",
        )
        vol.delete(0)
        return volume_info(p, p.createXML(xml.build_volume(spec), 0))


def delete_volume(uri: str, pool: str, name: str, *, wait: float = 0.0) -> None:
    """Delete a volume. With wait (seconds), a volume libvirt is still writing (a clone or
    preallocation whose caller went away: libvirtd finishes it anyway) is deleted once
    written, refreshing the pool so a file libvirt lost track of is seen too."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with session(uri) as conn:
                if wait:
                    with contextlib.suppress(libvirt.libvirtError):
                        pool_by_name(conn, pool).refresh(0)
                running_volume(conn, pool, name).delete(0)
            return
        except (Conflict, HypervisorError) as exc:
            if isinstance(exc, NotFound) or time.monotonic() > deadline:
                raise
            if "being" not in str(exc) and "in use" not in str(exc):
                raise
            time.sleep(0.5)


def volume_by_path(uri: str, path: str) -> VolumeInfo:
    """The pool volume at path, or NotFound."""
    with session(uri) as conn:
        try:
            vol = conn.storageVolLookupByPath(path)
        except libvirt.libvirtError as exc:
            raise NotFound(f"{path} is not a volume of a running pool.") from exc
        return volume_info(vol.storagePoolLookupByVolume(), vol)
