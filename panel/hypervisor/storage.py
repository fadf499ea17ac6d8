"""Storage pools and volumes on a host, and disks on domains.

Pools and volumes are named by (pool name, volume name), as virsh does. Long
operations (copy, convert, upload, download) take a `progress(done, total)`
callback; it runs in the caller's thread and may raise to stop the work.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import libvirt
from lxml import etree

from . import images, qemu_img, xml
from .connection import libvirt_errors, session
from .domains import affect_flags, domain_info
from .errors import Conflict, HypervisorError, NotFound
from .host import is_local
from .inventory import pool_info, volume_info
from .qemu_img import PinnedImage
from .specs import DiskSpec, DomainInfo, PoolInfo, PoolSpec, VolumeInfo, VolumeSpec

Progress = Callable[[int, int], None]
CHUNK = 1024 * 1024

POOL_TYPES = (
    "dir",
    "fs",
    "netfs",
    "logical",
    "disk",
    "iscsi",
    "iscsi-direct",
    "scsi",
    "mpath",
    "rbd",
    "gluster",
    "zfs",
)


def _noop(_done: int, _total: int) -> None:
    return None


# --- pools ---


def pool_capabilities(uri: str) -> dict[str, bool]:
    """{pool type: supported} as the host's libvirt reports; empty when it cannot say."""
    with session(uri) as conn:
        try:
            caps = conn.getStoragePoolCapabilities(0)
        except libvirt.libvirtError:
            return {}
    root = etree.fromstring(caps.encode())
    return {p.get("type", ""): p.get("supported") == "yes" for p in root.iterfind("pool")}


def _pool(conn: libvirt.virConnect, name: str) -> libvirt.virStoragePool:
    return conn.storagePoolLookupByName(name)


def get_pool(uri: str, name: str) -> PoolInfo:
    with session(uri) as conn:
        return pool_info(_pool(conn, name))


def pool_xml(uri: str, name: str) -> str:
    with session(uri) as conn:
        return _pool(conn, name).XMLDesc(0)


def define_pool(
    uri: str,
    spec: PoolSpec,
    *,
    persistent: bool = True,
    build: bool = False,
    start: bool = True,
    autostart: bool = False,
) -> PoolInfo:
    """Define (or, not persistent, create) a pool, build and start it; undone on failure."""
    document = xml.build_pool(spec)
    with session(uri) as conn:
        with contextlib.suppress(libvirt.libvirtError):
            _pool(conn, spec.name)
            raise Conflict(f"A storage pool named '{spec.name}' already exists on this host.")
        if not persistent:
            flags = libvirt.VIR_STORAGE_POOL_CREATE_WITH_BUILD if build else 0
            return pool_info(conn.storagePoolCreateXML(document, flags))
        pool = conn.storagePoolDefineXML(document, 0)
        try:
            if build:
                pool.build(0)
            if start:
                pool.create(0)
            if autostart:
                pool.setAutostart(1)
            return pool_info(pool)
        except Exception:
            with contextlib.suppress(libvirt.libvirtError):
                if pool.isActive():
                    pool.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                pool.undefine()
            raise


def pool_action(uri: str, name: str, action: str) -> PoolInfo:
    """build, start, stop or refresh a pool."""
    with session(uri) as conn:
        pool = _pool(conn, name)
        persistent = bool(pool.isPersistent())
        if action == "build":
            if pool.isActive():
                raise Conflict(f"Pool '{name}' is running: stop it before building it.")
            pool.build(0)
        elif action == "start":
            if pool.isActive():
                raise Conflict(f"Pool '{name}' is already running.")
            pool.create(0)
        elif action == "stop":
            if not pool.isActive():
                raise Conflict(f"Pool '{name}' is not running.")
            pool.destroy()
        elif action == "refresh":
            if not pool.isActive():
                raise Conflict(f"Pool '{name}' is not running: start it to refresh it.")
            pool.refresh(0)
        else:
            raise ValueError(f"unknown pool action {action!r}")
        if not persistent and action == "stop":
            # A transient pool is gone once stopped.
            return PoolInfo("", name, "", "gone", "", 0, 0, 0, False, False)
        return pool_info(pool)


def set_pool_autostart(uri: str, name: str, on: bool) -> PoolInfo:
    with session(uri) as conn:
        pool = _pool(conn, name)
        if not pool.isPersistent():
            raise Conflict(f"Pool '{name}' is transient: only persistent pools can autostart.")
        pool.setAutostart(1 if on else 0)
        return pool_info(pool)


def delete_pool(uri: str, name: str, *, delete_target: bool = False) -> None:
    """Stop and undefine a pool; with delete_target, remove its directory (or VG) too."""
    with session(uri) as conn:
        pool = _pool(conn, name)
        persistent = pool.isPersistent()
        if pool.isActive():
            pool.destroy()
        if not persistent:
            return
        if delete_target:
            pool.delete(libvirt.VIR_STORAGE_POOL_DELETE_NORMAL)
        pool.undefine()


# --- volumes ---


def _vol(conn: libvirt.virConnect, pool: str, name: str) -> libvirt.virStorageVol:
    p = _pool(conn, pool)
    if not p.isActive():
        raise Conflict(f"Pool '{pool}' is not running: start it first.")
    return p.storageVolLookupByName(name)


def get_volume(uri: str, pool: str, name: str) -> VolumeInfo:
    with session(uri) as conn:
        return volume_info(_pool(conn, pool), _vol(conn, pool, name))


def list_volumes(uri: str, pool: str) -> list[VolumeInfo]:
    """The pool's volumes, after a refresh so files added outside libvirt show up."""
    with session(uri) as conn:
        p = _pool(conn, pool)
        if not p.isActive():
            raise Conflict(f"Pool '{pool}' is not running: start it first.")
        p.refresh(0)
        return [volume_info(p, v) for v in p.listAllVolumes(0)]


def volume_xml(uri: str, pool: str, name: str) -> str:
    with session(uri) as conn:
        return _vol(conn, pool, name).XMLDesc(0)


def _exists(p: libvirt.virStoragePool, name: str) -> bool:
    try:
        p.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return False
        raise
    return True


def create_volume(uri: str, pool: str, spec: VolumeSpec) -> VolumeInfo:
    """Create a volume. Preallocation: off (thin), metadata (qcow2 only), falloc
    (space reserved, not written) or full (space written with zeros)."""
    with session(uri) as conn:
        p = _pool(conn, pool)
        if not p.isActive():
            raise Conflict(f"Pool '{pool}' is not running: start it first.")
        if _exists(p, spec.name):
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


def refresh_pool(uri: str, pool: str) -> None:
    with session(uri) as conn:
        _pool(conn, pool).refresh(0)


def _watch_copy(
    conn: libvirt.virConnect,
    work: Callable[[], libvirt.virStorageVol],
    pool: libvirt.virStoragePool,
    new_name: str,
    total: int,
    progress: Progress,
) -> libvirt.virStorageVol:
    """Run a blocking copy in a thread; report the new volume's growing allocation."""
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["vol"] = work()
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

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
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["vol"]  # type: ignore[return-value]


def _read_head(conn: libvirt.virConnect, vol: libvirt.virStorageVol, length: int) -> bytes:
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


def inspect_volume(uri: str, pool: str, name: str, declared: str) -> images.ImageFacts:
    """Check the volume's header against the format it was declared (nothing followed)."""
    with session(uri) as conn:
        head = _read_head(conn, _vol(conn, pool, name), images.HEAD_BYTES)
    return images.inspect_head(head, declared, whole=len(head) < images.HEAD_BYTES)


def recorded_capacity(vol: libvirt.virStorageVol, fmt: str) -> int:
    """The size of a volume as its recorded format has it: a raw image is as large as its
    file (libvirt's capacity would come from a header the content may fake)."""
    _type, capacity, _alloc = vol.info()
    if fmt in ("raw", "iso"):
        with contextlib.suppress(libvirt.libvirtError, AttributeError):
            return int(vol.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2])
    return int(capacity)


def _require_view(vol: libvirt.virStorageVol, source: PinnedImage) -> None:
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
    head = _read_head(conn, vol, images.HEAD_BYTES)
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
        _require_view(src, source)

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
    progress: Progress = _noop,
) -> VolumeInfo:
    """Copy a volume (clone), converting its format when format differs; undone on failure.
    source: the volume as recorded (its format and backing chain), never its header."""
    with session(uri) as conn:
        src = _vol(conn, pool, name)
        dest = _pool(conn, target_pool or pool)
        if not dest.isActive():
            raise Conflict(f"Pool '{target_pool}' is not running: start it first.")
        if _exists(dest, new_name):
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


def resize_volume(
    uri: str, pool: str, name: str, capacity: int, *, shrink: bool, source: PinnedImage
) -> VolumeInfo:
    """Resize a volume as its recorded format (source), never as its content reads."""
    with session(uri) as conn:
        vol = _vol(conn, pool, name)
        try:
            _require_view(vol, source)
        except Conflict:
            # libvirt would resize it as the format it guessed: qemu-img is told instead.
            if not (is_local(uri) and os.path.exists(source.path)):
                raise
            qemu_img.resize(uri, source, capacity, shrink=shrink)
            return volume_info(_pool(conn, pool), vol)
        flags = libvirt.VIR_STORAGE_VOL_RESIZE_SHRINK if shrink else 0
        vol.resize(capacity, flags)
        return volume_info(_pool(conn, pool), vol)


def wipe_volume(uri: str, pool: str, name: str, *, source: PinnedImage) -> VolumeInfo:
    """Write zeros over the volume's data. A volume of another format than raw is
    recreated empty instead, with the same size and recorded backing file, since zeroing
    it would destroy its header. source: the format and chain as recorded."""
    with session(uri) as conn:
        p = _pool(conn, pool)
        vol = _vol(conn, pool, name)
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
                        _pool(conn, pool).refresh(0)
                _vol(conn, pool, name).delete(0)
            return
        except (Conflict, HypervisorError) as exc:
            if isinstance(exc, NotFound) or time.monotonic() > deadline:
                raise
            if "being" not in str(exc) and "in use" not in str(exc):
                raise
            time.sleep(0.5)


def upload_volume(
    uri: str,
    pool: str,
    name: str,
    chunks: Iterable[bytes],
    length: int,
    *,
    progress: Progress = _noop,
) -> VolumeInfo:
    """Stream length bytes from chunks into the volume through libvirt (remote hosts too).

    Fewer bytes than announced, or an exception from chunks or progress, aborts
    the stream and raises; the caller decides what to do with the volume.
    """
    with session(uri) as conn:
        p = _pool(conn, pool)
        vol = _vol(conn, pool, name)
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
        vol = _vol(conn, pool, name)
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


def volume_by_path(uri: str, path: str) -> VolumeInfo:
    """The pool volume at path, or NotFound."""
    with session(uri) as conn:
        try:
            vol = conn.storageVolLookupByPath(path)
        except libvirt.libvirtError as exc:
            raise NotFound(f"{path} is not a volume of a running pool.") from exc
        return volume_info(vol.storagePoolLookupByVolume(), vol)


# --- disks on domains ---


def attach_disk(uri: str, uuid: str, disk: DiskSpec, *, live: bool, persistent: bool) -> DomainInfo:
    """Attach a disk or CD-ROM to the running guest and/or its definition."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        dom.attachDeviceFlags(xml.disk_xml(disk), affect_flags(dom, live, persistent))
        return domain_info(dom)


def _disk_element(dom: libvirt.virDomain, target: str, inactive: bool) -> etree._Element | None:
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
    root = etree.fromstring(dom.XMLDesc(flags).encode())
    for disk in root.iterfind("./devices/disk"):
        t = disk.find("target")
        if t is not None and t.get("dev") == target:
            return disk
    return None


def detach_disk(uri: str, uuid: str, target: str, *, live: bool, persistent: bool) -> DomainInfo:
    """Detach the disk the guest sees as target (vdb, sda...) live and/or from the definition."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        affect_flags(dom, live, persistent)
        for scope, wanted in ((False, live), (True, persistent)):
            if not wanted:
                continue
            element = _disk_element(dom, target, inactive=scope)
            if element is None:
                where = "definition" if scope else "running guest"
                raise Conflict(f"'{dom.name()}' has no disk {target} in its {where}.")
            flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG if scope else libvirt.VIR_DOMAIN_AFFECT_LIVE
            dom.detachDeviceFlags(etree.tostring(element, encoding="unicode"), flags)
        return domain_info(dom)


def change_media(
    uri: str, uuid: str, target: str, path: str, *, live: bool, persistent: bool
) -> DomainInfo:
    """Insert the image at path into a CD-ROM drive, or eject it (path empty)."""
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        flags = affect_flags(dom, live, persistent) | libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE
        element = _disk_element(dom, target, inactive=not live)
        if element is None or element.get("device") != "cdrom":
            raise Conflict(f"'{dom.name()}' has no CD-ROM drive {target}.")
        source = element.find("source")
        if source is not None:
            element.remove(source)
        if path:
            kind = "block" if path.startswith("/dev/") else "file"
            element.set("type", kind)
            source = etree.Element("source", {"dev" if kind == "block" else "file": path})
            element.insert(1, source)
        dom.updateDeviceFlags(etree.tostring(element, encoding="unicode"), flags)
        return domain_info(dom)
