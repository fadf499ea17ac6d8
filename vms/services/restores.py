"""Restoring a VM from one of its backups, as a job: into a new VM (new name, UUID and
MACs, its disks copied into a pool) or in place (the VM's disks replaced); and what is
left when a restore's worker dies."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from django.db import transaction

from panel import hypervisor, jobs, quotas
from panel.actors import Actor
from panel.choices import JobKind
from panel.exceptions import ConflictError, ServiceError
from panel.hostcalls import on_host
from panel.hypervisor import qemu_img
from panel.models import Host, Job
from panel.permissions import BACKUP, VIEW, restrict
from storage import services as storage_services
from storage.models import StoragePool
from storage.services import refresh_pool_row, remove_made_volumes
from vms.choices import BackupState, VMState
from vms.models import Backup, VirtualMachine
from vms.services import chains, placement
from vms.services.backups import NOTHING_TO_COPY, backup_host_errors, backup_pool
from vms.services.common import apply_info, on_vm_host, reread, vm_job
from vms.services.sync import sync_domain
from vms.tasks import vm_backup_task

RESTORE_MODES = ("new", "in_place")
# The job's record of the volumes it makes on another host than the backup's.
MADE_ON_TARGET = "made_on_target"


def _restore_name(host: Host, name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
        raise ServiceError(
            "Name the new VM with 1 to 64 letters, digits, '-', '_' or '.'.", field="name"
        )
    if VirtualMachine.objects.filter(host=host, name=name).exclude(state=VMState.MISSING).exists():
        raise ServiceError(
            f"{host.name} already has a VM named '{name}': choose another name.",
            field="name",
        )
    return name


def restore_backup(
    backup: Backup,
    *,
    mode: str = "new",
    name: str = "",
    pool: StoragePool | None = None,
    start: bool = False,
    disks: list[str] | None = None,
    actor: Actor,
) -> Job:
    """Queue a restore of a good backup: into a new VM (new name, UUID and MACs; its disks
    copied into pool, on the VM's host or another; the project's quota reserved now) or in
    place (the VM shut off, its disks replaced: all, or those disks names; the others stay
    as they are). Each backup file is checked with qemu-img before it is used."""
    vm = backup.vm
    if vm is None:
        raise ConflictError(
            f"The VM of backup #{backup.pk} was deleted: restore from its pool's volumes by hand."
        )
    with vm_job(vm, actor, "vm.backup.restore", "restore backups of", right=BACKUP) as request:
        _check_restorable(backup, mode)
        disks = _chosen_disks(backup, mode, disks or [])
        reserve: quotas.Reservation = {}
        if mode == "new":
            pool = _target_pool(vm, backup, pool, actor)
            placement.refuse_maintenance(pool.host, "restore to")
            name = _restore_name(pool.host, name)
            reserve = _new_vm_reserve(backup, vm)
        elif vm.state != VMState.SHUTOFF:
            raise ConflictError(
                f"{vm.name} is {vm.state}: shut it down before restoring it in place."
            )
        request.ready(NOTHING_TO_COPY)
        with transaction.atomic():
            if reserve and vm.project is not None:
                quotas.reserve(vm.project, **reserve)
            return request.queue(
                JobKind.VM_BACKUP_RESTORE,
                vm_backup_task,
                {
                    "op": "restore",
                    "backup": backup.pk,
                    "mode": mode,
                    "name": name,
                    "pool": pool.name if pool else "",
                    "host": pool.host_id if pool else backup.host_id,
                    "start": start,
                    "disks": disks,
                    "reserve": reserve,
                },
                _described(backup, name, pool if mode == "new" else None, disks, start),
            )


def _described(
    backup: Backup, name: str, pool: StoragePool | None, disks: list[str], start: bool
) -> str:
    """What a restore job does, for its title."""
    if pool is not None:
        where = f"into a new VM {name} in pool {pool.name}"
    else:
        where = f"in place ({', '.join(disks)})" if disks else "in place"
    return f"backup #{backup.pk} {where}" + (", then start" if start else "")


def _check_restorable(backup: Backup, mode: str) -> None:
    """The mode is known and the backup passed its check."""
    if mode not in RESTORE_MODES:
        raise ServiceError("Choose the mode: new (a new VM) or in_place.", field="mode")
    if backup.state != BackupState.GOOD:
        raise ConflictError(
            f"Backup #{backup.pk} is {backup.get_state_display().lower()}, not good: "
            "restore from a backup that passed its check."
        )


def _target_pool(
    vm: VirtualMachine, backup: Backup, pool: StoragePool | None, actor: Actor
) -> StoragePool:
    """The pool a new VM's disks go to: one of the VM's host (as for a backup), or a running
    pool of another host that the actor's project may use (the copies then cross over
    through libvirt's streams, by way of a scratch volume in the backup's own pool)."""
    if pool is None or pool.host_id == vm.host_id:
        return backup_pool(vm, pool, actor)
    if not restrict(StoragePool.objects.filter(pk=pool.pk), actor.user, VIEW).exists():
        raise ServiceError(f"Your project may not use pool {pool.name}.", field="pool")
    if pool.state != "active":
        raise ConflictError(f"Pool {pool.name} is not running: an admin must start it first.")
    if backup.pool is None or backup.pool.state != "active":
        raise ConflictError(
            f"The pool of backup #{backup.pk} is not running: the copies pass through it on "
            "their way to another host."
        )
    return pool


def _chosen_disks(backup: Backup, mode: str, disks: list[str]) -> list[str]:
    """The disks to restore ([] for all): only in place, and only disks the backup has."""
    if not disks:
        return []
    if mode != "in_place":
        raise ServiceError(
            "A new VM gets every disk of the backup: choose disks only for an in-place restore.",
            field="disks",
        )
    held = [d["target"] for d in backup.disks]
    if unknown := [t for t in disks if t not in held]:
        raise ServiceError(
            f"Backup #{backup.pk} holds {', '.join(held)}, not {', '.join(map(str, unknown))}: "
            "choose among those.",
            field="disks",
        )
    return sorted(set(disks))


def _new_vm_reserve(backup: Backup, vm: VirtualMachine) -> quotas.Reservation:
    """What a new VM restored from backup takes of its project's quota: vm's reach, and
    its disks' capacity."""
    disk_gib = -(-sum(int(d.get("capacity", 0)) for d in backup.disks) // (1024**3))
    return {
        "vms": 1,
        "vcpus": max(vm.vcpus, vm.max_vcpus),
        "memory_mib": max(vm.memory_mib, vm.max_memory_mib),
        "disk_gib": disk_gib,
    }


def run_restore_job(job: Job) -> None:
    """The body of a restore job: verify the backup files, copy, define or redefine, start."""
    spec = job.result
    backup = Backup.objects.select_related("vm", "host", "pool").get(pk=spec["backup"])
    vm = backup.vm
    if vm is None:
        raise ServiceError("The VM of this backup was removed.")
    jobs.report(
        job.pk,
        progress=5,
        message=f"Checking backup #{backup.pk} before restoring it",
        log_line=f"restore of backup #{backup.pk} ({spec['mode']}) started",
    )
    chosen = spec.get("disks") or [d["target"] for d in backup.disks]
    _check_backup_files(job, backup, chosen)
    copies = {t: image for t, image in chains.images(backup).items() if t in chosen}
    jobs.report(job.pk, progress=15, message=f"Copying backup #{backup.pk}")
    if spec["mode"] == "new":
        restored = _restore_as_new(job, backup, vm, copies)
    else:
        restored = _restore_in_place(job, backup, vm, copies)
    jobs.report(job.pk, progress=85, message="Checking the restored disks")
    _check_restored_disks(job, backup, restored, copies)
    if spec["start"]:
        with on_vm_host(restored, failed=f"{restored.name} was restored but did not start"):
            uri = restored.host.uri
            restored = apply_info(restored, hypervisor.start_domain(uri, str(restored.pk)))
    if backup.pool is not None:
        hosts = {backup.host_id, restored.host_id}
        for pool in {backup.pool, *StoragePool.objects.filter(host__in=hosts, state="active")}:
            refresh_pool_row(pool)
    jobs.report(
        job.pk,
        progress=100,
        message=f"{restored.name} restored from backup #{backup.pk}"
        + (" and started." if spec["start"] else "."),
    )


def _check_backup_files(job: Job, backup: Backup, chosen: list[str]) -> None:
    """Each file the restore of the chosen disks reads (the backup's, and those of the
    backups it builds on) checked with qemu-img; a failed one fails the backup."""
    for label, disk in [(label, d) for label, d in chains.files(backup) if d["target"] in chosen]:
        with backup_host_errors(backup):
            checked = hypervisor.check_copy(
                backup.host.uri, disk["path"], disk.get("format", "qcow2")
            )
        jobs.report(
            job.pk,
            log_line=f"{disk['target']}: {disk['path']} ({label}): {checked['summary']}",
        )
        if not checked["ok"]:
            Backup.objects.filter(pk=backup.pk).update(
                state=BackupState.FAILED, message=str(checked["summary"])
            )
            raise ServiceError(
                f"Backup #{backup.pk} failed its check ({disk['target']}: {checked['summary']}): "
                "it was not restored. Choose another backup."
            )


def _copy_progress(job: Job) -> Callable[[int, int], None]:
    def progress(done: int, total: int) -> None:
        jobs.report(job.pk, progress=15 + 70 * done // max(total, 1))

    return progress


def _restore_as_new(
    job: Job, backup: Backup, vm: VirtualMachine, copies: dict[str, qemu_img.PinnedImage]
) -> VirtualMachine:
    """The backup copied into a new VM of vm's project, owned by the job's user."""
    spec = job.result
    target = Host.objects.get(pk=spec.get("host") or backup.host_id)
    if target.pk == backup.host_id:
        with on_vm_host(vm, failed=f"Restoring backup #{backup.pk} failed and was undone"):
            uuid, made = hypervisor.restore_as_new(
                target.uri,
                backup.xml,
                copies,
                spec["pool"],
                spec["name"],
                progress=_copy_progress(job),
                on_volume=jobs.recorder(job.pk),  # for the undo should this worker die
            )
    else:
        uuid, made = _restore_on(job, backup, target, copies)
    for path in made:
        jobs.report(job.pk, log_line=f"copied to {path}")
        storage_services.record_made(target, path, "qcow2", [])
    info = hypervisor.get_domain(target.uri, uuid)
    with transaction.atomic():
        restored = sync_domain(target, info)
        restored.project = vm.project
        restored.owner = job.user
        restored.template = vm.template  # its limits follow the copy
        restored.save(update_fields=["project", "owner", "template"])
        job.refresh_from_db(fields=["result"])
        job.result = {**job.result, "restored": uuid, "reserve": {}}
        job.save(update_fields=["result"])
    return restored


def _restore_on(
    job: Job, backup: Backup, target: Host, copies: dict[str, qemu_img.PinnedImage]
) -> tuple[str, list[str]]:
    """The backup restored as a new domain on target, another host than the backup's."""
    assert backup.pool is not None  # checked when the restore was asked for
    jobs.report(job.pk, log_line=f"the copies go from {backup.host.name} to {target.name}")
    with backup_host_errors(backup), on_host(target, f"Restoring backup #{backup.pk} onto it"):
        return hypervisor.restore_on_host(
            backup.host.uri,
            target.uri,
            backup.xml,
            copies,
            backup.pool.name,
            job.result["pool"],
            job.result["name"],
            progress=_copy_progress(job),
            on_volume=jobs.recorder(job.pk),
            on_target_volume=jobs.recorder(job.pk, MADE_ON_TARGET),
        )


def _restore_in_place(
    job: Job, backup: Backup, vm: VirtualMachine, copies: dict[str, qemu_img.PinnedImage]
) -> VirtualMachine:
    """vm's disks replaced by copies of the backup's."""
    with on_vm_host(vm, failed=f"Restoring {vm.name} from backup #{backup.pk} failed"):
        steps = hypervisor.restore_in_place(
            backup.host.uri,
            str(vm.pk),
            copies,
            progress=_copy_progress(job),
            on_volume=jobs.recorder(job.pk),
        )
    for step in steps:
        jobs.report(job.pk, log_line=step)
    return apply_info(vm, None)


def _check_restored_disks(
    job: Job, backup: Backup, restored: VirtualMachine, copies: dict[str, qemu_img.PinnedImage]
) -> None:
    """The restored VM's new disks recorded and checked with qemu-img."""
    for disk in [d for d in restored.disks if d.get("target") in copies]:
        # A standalone qcow2 copy the panel made: recorded so, whatever its content reads as.
        storage_services.record_made(restored.host, disk["source"], "qcow2", [])
        with on_host(restored.host, f"Checking {disk['source']}"):
            checked = hypervisor.check_copy(restored.host.uri, disk["source"], "qcow2")
        jobs.report(job.pk, log_line=f"{disk['target']}: {disk['source']}: {checked['summary']}")
        if not checked["ok"]:
            raise ServiceError(
                f"The restored disk {disk['source']} failed its check: {checked['summary']}"
            )


def undo_restore(job: Job) -> str:
    """A restore whose worker died: the copies it was making that no domain uses yet are
    removed (the VM stays on the disks it had); a restore that had got as far as defining
    its VM is kept, and a new VM gets its row. What to tell the user."""
    spec = job.result
    backup = Backup.objects.select_related("vm", "host").filter(pk=spec.get("backup")).first()
    if backup is None or backup.host is None:
        return "its backup is no longer in the panel"
    host = backup.host
    try:
        removed, kept = remove_made_volumes(host, spec.get(jobs.MADE) or [])
        target = Host.objects.filter(pk=spec.get("host") or host.pk).first() or host
        gone, _kept = remove_made_volumes(target, spec.get(MADE_ON_TARGET) or [])
        removed += gone
        host = target
        named = [d for d in hypervisor.list_domains(host.uri) if d.name == spec.get("name")]
    except (ServiceError, hypervisor.HypervisorError):
        return f"check {host.name}: it could not be read"
    vm = backup.vm
    if spec.get("mode") == "new" and named:
        with transaction.atomic():
            restored = sync_domain(host, named[0])
            restored.project = vm.project if vm else None
            restored.owner = job.user
            restored.template = vm.template if vm else None
            restored.save(update_fields=["project", "owner", "template"])
        return f"the restore had got as far as defining {named[0].name}: check it before use"
    if vm is not None:
        with contextlib.suppress(hypervisor.HypervisorError):
            reread(vm)
    if kept:
        return f"the restore had switched the disks to {', '.join(kept)}: check the VM"
    if removed:
        return f"the restore was undone: its unfinished copies were removed ({', '.join(removed)})"
    return "the restore had made nothing that is left"
