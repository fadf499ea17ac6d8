"""Checkpoints: the points incremental backups start from.

A push backup (libvirt's backup API) also makes a checkpoint: a dirty bitmap in each qcow2
disk that qemu keeps up to date from then on. The next backup names that checkpoint and
copies only the clusters written since. Whatever changes a disk behind qemu's back, or
moves the domain away from its images (reverting a snapshot, restoring in place, moving
storage, migrating), deletes the domain's checkpoints first: their bitmaps no longer say
what changed, and qemu refuses to revert an internal snapshot while a disk has bitmaps.
The next backup is then a full one.
"""

from __future__ import annotations

import contextlib

import libvirt
from lxml import etree

from panel.hypervisor.connection import session


def checkpoint_xml(name: str, targets: list[str]) -> str:
    """A checkpoint named name with a bitmap on each of targets."""
    root = etree.Element("domaincheckpoint")
    etree.SubElement(root, "name").text = name
    listed = etree.SubElement(root, "disks")
    for target in targets:
        etree.SubElement(listed, "disk", name=target, checkpoint="bitmap")
    return etree.tostring(root, encoding="unicode")


def has_checkpoint(dom: libvirt.virDomain, name: str) -> bool:
    try:
        dom.checkpointLookupByName(name, 0)
    except libvirt.libvirtError:
        return False
    return True


def delete_checkpoint(uri: str, uuid: str, name: str) -> bool:
    """Delete the domain's checkpoint name (its bitmap merged into the one before it, so
    later incrementals stay whole); False when the domain or the checkpoint is gone."""
    with session(uri) as conn:
        try:
            dom = conn.lookupByUUIDString(uuid)
            checkpoint = dom.checkpointLookupByName(name, 0)
        except libvirt.libvirtError:
            return False
        _delete(checkpoint, 0)
        return True


def _delete(checkpoint: libvirt.virDomainCheckpoint, flags: int) -> None:
    """Delete with its bitmaps; only its record when the bitmaps are already gone (the
    image that held them was replaced)."""
    try:
        checkpoint.delete(flags)
    except libvirt.libvirtError:
        checkpoint.delete(flags | libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY)


def drop_checkpoints(dom: libvirt.virDomain) -> list[str]:
    """Delete every checkpoint of the domain with its bitmaps; their names."""
    names = [c.getName() for c in dom.listAllCheckpoints(0)]
    for root in dom.listAllCheckpoints(libvirt.VIR_DOMAIN_CHECKPOINT_LIST_ROOTS):
        with contextlib.suppress(libvirt.libvirtError):
            _delete(root, libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_CHILDREN)
    return names


def dropped_line(names: list[str]) -> list[str]:
    """What a job's log says when checkpoints were dropped."""
    if not names:
        return []
    return [f"deleted the backup checkpoint(s) {', '.join(names)}: the next backup is a full copy"]
