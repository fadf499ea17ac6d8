"""Verifying backups: digests of the copies as written, and a point restored into a scratch
volume of the backup pool and read back whole."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import libvirt

from panel.hypervisor.backups.common import backup_pool, flat_copy, volume_at_path
from panel.hypervisor.connection import session
from panel.hypervisor.domains import claim_volume_name
from panel.hypervisor.errors import Conflict
from panel.hypervisor.host import is_local
from panel.hypervisor.qemu_img import PinnedImage, check
from panel.hypervisor.storage.streams import CHUNK, Progress, no_progress

# qemu-img runs here, on the panel's own host.
HERE = "qemu:///system"


def _read(
    conn: libvirt.virConnect, vol: libvirt.virStorageVol, sink: Callable[[bytes], Any]
) -> None:
    """Every byte of the volume, through libvirt's stream (on any host), given to sink."""
    stream = conn.newStream(0)
    vol.download(stream, 0, 0, 0)
    try:
        while True:
            chunk = stream.recv(CHUNK)
            if isinstance(chunk, int):
                if chunk == -2:
                    time.sleep(0.01)
                    continue
                raise Conflict("The host aborted the stream reading the volume.")
            if not chunk:
                break
            sink(chunk)
        stream.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise


def _digest(conn: libvirt.virConnect, vol: libvirt.virStorageVol) -> str:
    """SHA-256 of the volume's bytes."""
    digest = hashlib.sha256()
    _read(conn, vol, digest.update)
    return digest.hexdigest()


def check_copy(uri: str, path: str, fmt: str = "qcow2") -> dict[str, object]:
    """`qemu-img check` of a copy the panel made (a volume of a pool): where it lies on the
    panel's own host, else on its bytes streamed here into a temporary file, deleted after."""
    if is_local(uri):
        return check(uri, path, fmt)
    with tempfile.TemporaryDirectory(prefix="panel-check-") as scratch:
        local = os.path.join(scratch, "copy")
        with session(uri) as conn, open(local, "wb") as out:
            _read(conn, volume_at_path(conn, path), out.write)
        return check(HERE, local, fmt)


def file_digest(uri: str, path: str) -> str:
    """SHA-256 of the file at path (a volume of a pool), as stored."""
    with session(uri) as conn:
        return _digest(conn, volume_at_path(conn, path))


def restored_digest(
    uri: str,
    pool: str,
    image: PinnedImage,
    name: str,
    *,
    progress: Progress = no_progress,
    on_volume: Callable[[str, str], None] | None = None,
) -> str:
    """Restore image (its chain flattened, read as recorded) into a raw scratch volume name
    of pool, and return the SHA-256 of the disk it holds; the scratch volume is deleted.
    on_volume(pool, name) hears of the scratch volume before it is made."""
    with session(uri) as conn:
        dest, _directory = backup_pool(conn, pool)
        claim_volume_name(dest, name, on_volume)
        src = volume_at_path(conn, image.path)
        vol = flat_copy(conn, src, dest, name, progress, image, format="raw")
        try:
            return _digest(conn, vol)
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                vol.delete(0)
