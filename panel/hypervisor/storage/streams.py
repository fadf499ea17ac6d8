"""Volume contents through libvirt streams (remote hosts too): reading a volume's head,
uploading into a volume and downloading one.

Long transfers take a `progress(done, total)` callback; it runs in the caller's thread
and may raise to stop the work.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator

import libvirt

from panel.hypervisor.connection import libvirt_errors, session
from panel.hypervisor.errors import Conflict
from panel.hypervisor.inventory import volume_info
from panel.hypervisor.specs import VolumeInfo
from panel.hypervisor.storage.pools import pool_by_name, running_volume

Progress = Callable[[int, int], None]
CHUNK = 1024 * 1024


def no_progress(_done: int, _total: int) -> None:
    """A progress callback that ignores what it is told."""
    return None


def read_head(conn: libvirt.virConnect, vol: libvirt.virStorageVol, length: int) -> bytes:
    """The first length bytes of a volume (fewer when it is shorter), through libvirt."""
    stream = conn.newStream(0)
    vol.download(stream, 0, length, 0)
    data = bytearray()
    try:
        while len(data) < length:
            chunk = stream.recv(min(CHUNK, length - len(data)))
            if isinstance(chunk, int):
                if chunk == -2:
                    time.sleep(0.01)
                    continue
                raise Conflict("The host aborted the stream reading the volume's header.")
            if not chunk:
                break
            data += chunk
        stream.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise
    return bytes(data)


def upload_volume(
    uri: str,
    pool: str,
    name: str,
    chunks: Iterable[bytes],
    length: int,
    *,
    progress: Progress = no_progress,
) -> VolumeInfo:
    """Stream length bytes from chunks into the volume through libvirt (remote hosts too).

    Fewer bytes than announced, or an exception from chunks or progress, aborts
    the stream and raises; the caller decides what to do with the volume.
    """
    with session(uri) as conn:
        p = pool_by_name(conn, pool)
        vol = running_volume(conn, pool, name)
        stream = conn.newStream(0)
        vol.upload(stream, 0, length, 0)
        sent = 0
        try:
            for chunk in chunks:
                if not chunk:
                    continue
                if sent + len(chunk) > length:
                    raise Conflict(f"More data than the announced {length} bytes.")
                view = memoryview(chunk)
                while view:
                    n = stream.send(bytes(view))
                    if n < 0:
                        raise Conflict("The host refused the upload stream.")
                    view = view[n:]
                sent += len(chunk)
                progress(sent, length)
            if sent != length:
                raise Conflict(f"The upload ended after {sent} of {length} bytes.")
            stream.finish()
        except BaseException:
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
            raise
        p.refresh(0)
        return volume_info(p, p.storageVolLookupByName(name))


def download_volume(uri: str, pool: str, name: str) -> tuple[int, Iterator[bytes]]:
    """(size in bytes, chunks) of the volume's contents, streamed through libvirt."""
    with session(uri) as conn:
        vol = running_volume(conn, pool, name)
        _type, capacity, _alloc = vol.info()
        stream = conn.newStream(0)
        vol.download(stream, 0, 0, 0)

    def chunks() -> Iterator[bytes]:
        done = False
        try:
            with libvirt_errors():
                while True:
                    data = stream.recv(CHUNK)
                    if isinstance(data, int):
                        if data == -2:  # would block: a non-blocking stream only
                            time.sleep(0.01)
                            continue
                        raise Conflict("The host aborted the download stream.")
                    if not data:
                        break
                    yield data
                stream.finish()
                done = True
        finally:
            if not done:
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()

    return capacity, chunks()
