"""Shortening a disk's backing chain with libvirt block jobs: block commit (an upper layer's
data written down into a lower image) and block pull (the data of the lower images copied up
into the active one), as `virsh blockcommit` / `virsh blockpull` do them, with progress read
from the block job (cur/end).

What becomes of the external snapshots: a snapshot's state lives in the image that was the
disk's source when it was taken. A commit writes into its base image and drops the layers
above it from the chain, so every snapshot whose state image is one of the dropped layers,
or whose own chain runs through the base, no longer describes what it did: reverting to it
would bring back the merged data, not its own. Those snapshots lose their metadata
(VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY: libvirt cannot delete an external snapshot's files
itself) and the panel deletes the overlay files nothing uses any more. A pull only writes into
the active image, which no snapshot's state lives in, so every snapshot stays valid: the
images it dropped from the chain are unchanged, and reverting to them still works.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import libvirt
from lxml import etree

from .connection import session
from .errors import Conflict, HypervisorError

MODES = ("commit", "pull")
POLL = 0.2
Progress = Callable[[int, int], None]


def _noop(_cur: int, _end: int) -> None:
    return None


def _chain_of(disk: etree._Element) -> tuple[str, ...]:
    chain: list[str] = []
    node: etree._Element | None = disk
    while node is not None:
        source = node.find("source")
        if source is None or not source.get("file"):
            break
        chain.append(source.get("file", ""))
        node = node.find("backingStore")
    return tuple(chain)


def disk_chains(uri: str, uuid: str) -> dict[str, tuple[str, ...]]:
    """Each file-backed disk's backing chain from the running domain: active image first."""
    with session(uri) as conn:
        return _chains(conn.lookupByUUIDString(uuid), 0)


def _chains(dom: libvirt.virDomain, flags: int) -> dict[str, tuple[str, ...]]:
    root = etree.fromstring(dom.XMLDesc(flags).encode())
    chains = {}
    for disk in root.iterfind("./devices/disk[@device='disk']"):
        target = disk.find("target")
        if target is not None and (chain := _chain_of(disk)):
            chains[target.get("dev", "")] = chain
    return chains


def _image_chain(conn: libvirt.virConnect, path: str) -> tuple[str, ...]:
    """path and the images below it, from the volumes' own XML (works on remote hosts)."""
    chain: list[str] = []
    while path and path not in chain:
        chain.append(path)
        try:
            vol = conn.storageVolLookupByPath(path)
        except libvirt.libvirtError:
            break
        path = etree.fromstring(vol.XMLDesc(0).encode()).findtext("./backingStore/path") or ""
    return tuple(chain)


def wait_for_block_job(
    dom: libvirt.virDomain, disk: str, progress: Progress, *, pivot: bool
) -> None:
    """Follow the block job until it ends (or, for an active commit, until it is ready and
    pivoted)."""
    while True:
        info = dom.blockJobInfo(disk, 0)
        if not info:
            return  # finished, and libvirt already rewrote the chain
        cur, end = int(info.get("cur", 0)), int(info.get("end", 0))
        progress(cur, end)
        if pivot and end and cur == end:
            # An active commit never ends by itself: the guest keeps writing into the top
            # layer, which the job mirrors down, until it is told to switch to the base.
            dom.blockJobAbort(disk, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
            pivot = False
        time.sleep(POLL)


def merge_chain(
    uri: str,
    uuid: str,
    disk: str,
    mode: str,
    *,
    base: str = "",
    top: str = "",
    progress: Progress = _noop,
) -> list[str]:
    """Shorten disk's backing chain of the running domain; returns what was done.

    commit: the layers from top (default: the active image, an active commit that pivots
    onto base) down to just above base (default: the bottom image) are written into base.
    pull: the layers above base (default: all of them) are copied into the active image,
    which then backs directly on base (or on nothing)."""
    if mode not in MODES:
        raise HypervisorError(f"Unknown merge mode '{mode}': use commit or pull.")
    with session(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        if not dom.isActive():
            raise Conflict(
                "Block commit and block pull run inside the guest's QEMU: start the VM first."
            )
        chain = _chains(dom, 0).get(disk, ())
        if len(chain) < 2:
            raise Conflict(f"The disk {disk} has no backing chain to shorten.")
        if dom.blockJobInfo(disk, 0):
            raise Conflict(f"A block job is already running on {disk}.")
        done: list[str] = []
        if mode == "pull":
            if top and top != chain[0]:
                raise HypervisorError("A block pull always copies into the active image.")
            if base and base not in chain[1:]:
                raise HypervisorError(f"{base} is not below the active image of {disk}.")
            pulled = chain[1 : chain.index(base)] if base else chain[1:]
            dom.blockRebase(disk, base or None, 0, 0)
            wait_for_block_job(dom, disk, progress, pivot=False)
            done.append(f"{disk}: pulled {', '.join(pulled)} into {chain[0]}")
            done += _forget_snapshots(conn, dom, modified=set(), dropped=set())
            return done
        top = top or chain[0]
        base = base or chain[-1]
        if top not in chain or base not in chain or chain.index(base) <= chain.index(top):
            raise HypervisorError(f"{base} must be an image below {top} in the chain of {disk}.")
        active = top == chain[0]
        dropped = set(chain[chain.index(top) : chain.index(base)])
        flags = libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE if active else 0
        dom.blockCommit(disk, base, None if active else top, 0, flags)
        wait_for_block_job(dom, disk, progress, pivot=active)
        done.append(
            f"{disk}: committed {', '.join(sorted(dropped))} into {base}"
            + (" and pivoted onto it" if active else "")
        )
        done += _forget_snapshots(conn, dom, modified={base}, dropped=dropped)
        return done


def _forget_snapshots(
    conn: libvirt.virConnect, dom: libvirt.virDomain, *, modified: set[str], dropped: set[str]
) -> list[str]:
    """Remove the metadata of the external snapshots the merge invalidated (see the module
    docstring) and delete the overlay files neither the disk nor a remaining snapshot uses."""
    done: list[str] = []
    if not modified and not dropped:
        return done
    touched = modified | dropped
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        # The snapshot overlays were made behind the pools' backs: let them see the files.
        with contextlib.suppress(libvirt.libvirtError):
            pool.refresh(0)
    files: set[str] = set(dropped)
    keep: set[str] = set()
    for snap in dom.listAllSnapshots(0):
        root = etree.fromstring(snap.getXMLDesc(0).encode())
        external = root.find("./disks/disk[@snapshot='external']") is not None
        states = [s.get("file", "") for s in root.iterfind("./domain/devices/disk/source")]
        states = [s for s in states if s]
        chains = {s: _image_chain(conn, s) for s in states}
        if external and any(touched & set(c) for c in chains.values()):
            files |= set(states)
            files |= {
                s.get("file", "") for s in root.iterfind("./disks/disk/source") if s.get("file")
            }
            snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
            done.append(f"snapshot {root.findtext('name')} forgotten (its state was merged)")
        else:
            keep |= {p for c in chains.values() for p in c}
    in_use = {
        p
        for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE)
        for c in _chains(dom, flags).values()
        for p in c
    }
    for path in sorted(files - keep - in_use - modified):
        with contextlib.suppress(libvirt.libvirtError):
            conn.storageVolLookupByPath(path).delete(0)
            done.append(f"deleted {path}")
    return done
