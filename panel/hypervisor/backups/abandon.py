"""Cleaning up after a backup whose process died: its job stopped, its copies deleted, and
a domain the snapshot method left on overlays put back onto its own images.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import libvirt

from panel.hypervisor.backups.common import file_disks, volume_at_path
from panel.hypervisor.blockjobs import wait_for_block_job
from panel.hypervisor.connection import session
from panel.hypervisor.errors import HypervisorError
from panel.hypervisor.storage.streams import no_progress
from panel.hypervisor.storage.volumes import delete_volume


@dataclass(frozen=True)
class Abandoned:
    """What was cleaned up after a backup whose process died."""

    deleted: tuple[str, ...]  # its copies, in the backup pool
    merged: tuple[str, ...]  # overlays of the snapshot method, committed back and removed


def _overlay_stamp(path: str) -> bool:
    """Whether path is an overlay the snapshot method made (`<image>.backup-<14 digits>`)."""
    _head, _dot, tail = path.rpartition(".backup-")
    return bool(_dot) and len(tail) == 14 and tail.isdigit()


def _merge_back(conn: libvirt.virConnect, dom: libvirt.virDomain) -> list[str]:
    """The running domain's disks left on a snapshot-method overlay: committed back into
    their own images (a commit already under way is finished) and the overlays deleted."""
    merged = []
    disks, _skipped = file_disks(dom)
    for target, source in disks:
        if not _overlay_stamp(source):
            continue
        if not dom.blockJobInfo(target, 0):
            dom.blockCommit(target, None, None, 0, libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE)
        wait_for_block_job(dom, target, no_progress, pivot=True)
        with contextlib.suppress(libvirt.libvirtError, HypervisorError):
            volume_at_path(conn, source).delete(0)
        merged.append(source)
    return merged


def abandon_backup(uri: str, uuid: str, pool: str, prefix: str) -> Abandoned:
    """After the process taking a backup died: stop its backup job on the domain, delete
    the copies it started (`<prefix>-*` in pool), and put a domain the snapshot method left
    on overlays back onto its own images."""
    deleted: list[str] = []
    with session(uri) as conn:
        with contextlib.suppress(libvirt.libvirtError):
            dom = conn.lookupByUUIDString(uuid)
            if dom.isActive() and dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
                dom.abortJob()
        dest = conn.storagePoolLookupByName(pool)
        # Refused while libvirtd still writes a copy the dead process started; the copies
        # made through libvirt are listed without a refresh.
        with contextlib.suppress(libvirt.libvirtError):
            dest.refresh(0)
        names = [n for n in dest.listVolumes() if n.startswith(f"{prefix}-")]
    # The copies first: libvirtd finishes writing one (reading the frozen image) before
    # it can be deleted, and only then may the overlay be committed into that image.
    for name in names:
        with contextlib.suppress(HypervisorError):
            delete_volume(uri, pool, name, wait=600)
            deleted.append(name)
    merged: list[str] = []
    with session(uri) as conn:
        with contextlib.suppress(libvirt.libvirtError):
            dom = conn.lookupByUUIDString(uuid)
            if dom.isActive():
                merged = _merge_back(conn, dom)
    return Abandoned(deleted=tuple(deleted), merged=tuple(merged))
