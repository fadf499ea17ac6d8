"""Folding an incremental backup's copy into the copy below it, so that the one below can
go: retention keeps every point it keeps restorable."""

from __future__ import annotations

import contextlib

import libvirt

from panel.hypervisor.backups.common import volume_at_path
from panel.hypervisor.connection import session
from panel.hypervisor.qemu_img import PinnedImage, commit, set_backing
from panel.hypervisor.specs import BackingInfo


def fold_copy(uri: str, top: str, below: str) -> int:
    """Write the incremental copy top into below, the copy it builds on, so that below then
    holds top's point in time; top is deleted. Both are read as recorded (qcow2, chained as
    the panel says, nothing followed from a header). The bytes below takes now."""
    commit(uri, PinnedImage(top, "qcow2", (BackingInfo(below, "qcow2"),)))
    with session(uri) as conn:
        with contextlib.suppress(libvirt.libvirtError):
            volume_at_path(conn, top).delete(0)
        vol = volume_at_path(conn, below)
        with contextlib.suppress(libvirt.libvirtError):
            vol.storagePoolLookupByVolume().refresh(0)
            vol = volume_at_path(conn, below)
        return int(vol.info()[2])


def relink_copy(uri: str, path: str, below: str) -> None:
    """Make the header of the incremental copy at path name below, the copy it now builds
    on (after the one it built on was folded into below)."""
    set_backing(uri, path, BackingInfo(below, "qcow2"))
