"""Incremental backup chains: what a new backup builds on, how a point is read back, and how
a backup leaves its chain.

The first backup of a running VM is a full copy and makes a checkpoint; each next one copies
only what changed since the last good backup's checkpoint and records it as its parent. A
chain lives in one pool of the VM's host. Deleting a backup that another builds on folds it
into that one (the child's clusters written into the parent's file, which the child then
takes over), so every point still kept restores. Whatever breaks the chain (the VM's disks
or pool changed, its checkpoints gone) makes the next backup full, and its note says why.
"""

from __future__ import annotations

from typing import Any

from panel import hypervisor
from panel.choices import JobState
from panel.exceptions import ConflictError
from panel.hypervisor.qemu_img import PinnedImage
from panel.hypervisor.specs import BackingInfo
from vms.choices import BackupKind, BackupState
from vms.models import Backup, VirtualMachine

# Checkpoints the panel makes are named after their backup.
CHECKPOINT_PREFIX = "panel-backup-"


def checkpoint_name(backup: Backup) -> str:
    return f"{CHECKPOINT_PREFIX}{backup.pk}"


def last_good(backup: Backup) -> Backup | None:
    """The VM's newest good backup before this one."""
    return (
        Backup.objects.filter(vm_uuid=backup.vm_uuid, state=BackupState.GOOD)
        .exclude(pk=backup.pk)
        .select_related("pool")
        .order_by("-consistent_at", "-pk")
        .first()
    )


def plan(backup: Backup, vm: VirtualMachine) -> tuple[hypervisor.Chain | None, Backup | None, str]:
    """What the backup being taken builds on: the chain to ask the host for, the backup it
    would build on, and why it cannot build on the last one ('' when it can or there is
    none). The host may still take a full copy (see hypervisor.Chain)."""
    if not hypervisor.is_local(vm.host.uri):
        # No checkpoint either: nothing would ever start from it.
        why = (
            "incremental backups are made on the panel's own host only (their copies are "
            "chained with qemu-img there): this is a full copy"
        )
        return None, None, why
    fresh = hypervisor.Chain(checkpoint_name(backup))
    base = last_good(backup)
    if base is None:
        return fresh, None, ""
    if not base.checkpoint:
        why = (
            f"the last backup (#{base.pk}, {base.method} method) left no checkpoint to start "
            "from: this full copy starts a chain"
        )
        return fresh, None, why
    if base.pool_id != backup.pool_id or base.host_id != vm.host_id:
        where = base.pool.name if base.pool else "a pool no longer in the panel"
        why = (
            f"the last backup (#{base.pk}) is in {where}: a chain stays in one pool, so this "
            "full copy starts a new one here"
        )
        return fresh, None, why
    chain = hypervisor.Chain(
        checkpoint_name(backup),
        since=base.checkpoint,
        parents={d["target"]: d["path"] for d in base.disks},
        sources={d["target"]: d["source"] for d in base.disks},
    )
    return chain, base, ""


def record(backup: Backup, base: Backup | None, result: hypervisor.BackupResult, why: str) -> None:
    """The backup's place in its chain, from what the host did."""
    incremental = result.incremental and base is not None
    note = result.note or (why if result.method == "push" else "")
    Backup.objects.filter(pk=backup.pk).update(
        kind=BackupKind.INCREMENTAL if incremental else BackupKind.FULL,
        parent=base if incremental else None,
        checkpoint=result.checkpoint,
        note=note,
    )


def lineage(backup: Backup) -> list[Backup]:
    """The backup and those it builds on, nearest first, down to its full copy."""
    chain = [backup]
    while chain[-1].parent_id is not None:
        parent = Backup.objects.select_related("host", "pool").get(pk=chain[-1].parent_id)
        chain.append(parent)
    return chain


def images(backup: Backup) -> dict[str, PinnedImage]:
    """Each disk's copy (target -> image) as qemu must read it: the backup's file with the
    files of the backups it builds on below it, as recorded."""
    chain = lineage(backup)
    below = [{d["target"]: d["path"] for d in b.disks} for b in chain[1:]]
    return {
        d["target"]: PinnedImage(
            d["path"],
            "qcow2",
            tuple(BackingInfo(paths[d["target"]], "qcow2") for paths in below),
        )
        for d in backup.disks
    }


def files(backup: Backup) -> list[tuple[str, dict[str, Any]]]:
    """(backup label, disk record) of every file a restore of the backup reads."""
    return [(f"backup #{b.pk}", disk) for b in lineage(backup) for disk in b.disks]


def leave(backup: Backup) -> list[str]:
    """Take the backup out of its chain before it is deleted: a backup built on it takes
    over its files, with its own clusters written into them (so that it still restores);
    the checkpoint the backup made is deleted (its bitmap merged into the one before, so
    later incrementals stay whole). What was done."""
    done: list[str] = []
    children = list(backup.children.exclude(state=BackupState.FAILED))
    if len(children) > 1:
        raise ConflictError(
            f"Backups {', '.join(f'#{c.pk}' for c in children)} all build on backup "
            f"#{backup.pk}: delete all but one of them first."
        )
    if children:
        _refuse_while_taking(backup)
        done += _fold(backup, children[0])
    backup.children.update(parent=None)  # failed ones: nothing of theirs is left
    if backup.checkpoint and backup.vm_id is not None:
        if hypervisor.delete_checkpoint(backup.host.uri, str(backup.vm_uuid), backup.checkpoint):
            done.append(f"checkpoint {backup.checkpoint} deleted")
    return done


def _refuse_while_taking(backup: Backup) -> None:
    """Folding moves copies a backup being taken now may build on: refused meanwhile."""
    taking = (
        Backup.objects.filter(
            vm_uuid=backup.vm_uuid, state__in=(BackupState.RUNNING, BackupState.VERIFYING)
        )
        .exclude(job__state__in=(JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED))
        .exclude(job=None)
        .first()
    )
    if taking is not None:
        raise ConflictError(
            f"Backup #{taking.pk} of {backup.vm_name} is being taken and may build on backup "
            f"#{backup.pk}: wait for its job, then delete it."
        )


def _fold(backup: Backup, child: Backup) -> list[str]:
    """child's copies written into backup's files, which child then keeps; backup is
    marked so that nothing restores from it meanwhile."""
    if child.state in (BackupState.RUNNING, BackupState.VERIFYING):
        raise ConflictError(
            f"Backup #{child.pk} is being made on top of backup #{backup.pk}: wait for its "
            "job, then delete it."
        )
    Backup.objects.filter(pk=backup.pk).update(
        state=BackupState.FAILED, message=f"Being folded into backup #{child.pk}."
    )
    mine = {d["target"]: d for d in backup.disks}
    disks, digests = [], {}
    for disk in child.disks:
        below = mine[disk["target"]]
        size = hypervisor.fold_copy(backup.host.uri, disk["path"], below["path"])
        disks.append({**disk, "volume": below["volume"], "path": below["path"], "size": size})
        digests[disk["target"]] = hypervisor.file_digest(backup.host.uri, below["path"])
    Backup.objects.filter(pk=child.pk).update(
        disks=disks,
        size=sum(d["size"] for d in disks),
        parent=backup.parent_id,
        kind=backup.kind,
        # The digests of the files it keeps now, as the fold left them.
        verify=[{**v, "sha256": digests.get(v.get("target"))} for v in child.verify],
    )
    # Its files are the child's now: deleting the backup must leave them.
    backup.disks = []
    Backup.objects.filter(pk=backup.pk).update(disks=[])
    moved = {d["target"]: d["path"] for d in disks}
    for grandchild in child.children.exclude(state=BackupState.FAILED):
        for disk in grandchild.disks:
            hypervisor.relink_copy(backup.host.uri, disk["path"], moved[disk["target"]])
    return [f"backup #{child.pk} took over the copies of backup #{backup.pk} (folded into them)"]
