"""Backups of VMs: copies of the disks and the definition into a backup pool (full, or
incremental in a chain: vms/services/chains.py), and their deletion, as jobs. Restoring
them is in vms/services/restores.py; schedules and retention are in
vms/services/schedules.py."""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction

from panel import audit, hypervisor, jobs, quotas
from panel.actors import Actor
from panel.choices import JobKind
from panel.exceptions import ConflictError, ServiceError
from panel.hostcalls import on_host
from panel.hypervisor import storage as hv_storage
from panel.models import Job
from panel.permissions import BACKUP, VIEW, allowed, restrict
from storage import services as storage_services
from storage.models import StoragePool
from storage.services import refresh_pool_row
from vms.choices import BackupState, VMState
from vms.models import Backup, BackupSchedule, VirtualMachine
from vms.services import chains
from vms.services.common import VMJob, on_vm_host, require_right, vm_job

log = logging.getLogger(__name__)
# Why a backup or a restore of a VM missing from its host is refused.
NOTHING_TO_COPY = "there is nothing to copy"


def serialize_backup(backup: Backup) -> dict[str, Any]:
    """A backup as the API shows it."""
    return {
        "id": backup.pk,
        "vm": str(backup.vm_uuid),
        "vm_name": backup.vm_name,
        "state": backup.state,
        "method": backup.method,
        "kind": backup.kind,
        "parent": backup.parent_id,
        "checkpoint": backup.checkpoint,
        "note": backup.note,
        "message": backup.message,
        "pool": backup.pool_id,
        "schedule": backup.schedule_id,
        "job": backup.job_id,
        "disks": backup.disks,
        "size": backup.size,
        "duration": backup.duration,
        "created": backup.created.isoformat() if backup.created else None,
        "consistent_at": backup.consistent_at.isoformat() if backup.consistent_at else None,
        "rpo_seconds": backup.rpo_seconds,
        "verify": backup.verify,
        "verified": backup.verified,
    }


def backup_pool(vm: VirtualMachine, pool: StoragePool | None, actor: Actor) -> StoragePool:
    if pool is None:
        raise ServiceError("Choose the pool the backup goes to.", field="pool")
    if pool.host_id != vm.host_id:
        raise ServiceError(
            f"Pool {pool.name} is on {pool.host.name}, not on {vm.host.name} where {vm.name} "
            "runs: choose a pool of that host.",
            field="pool",
        )
    if not restrict(StoragePool.objects.filter(pk=pool.pk), actor.user, VIEW).exists():
        raise ServiceError(f"Your project may not use pool {pool.name}.", field="pool")
    if pool.state != "active":
        raise ConflictError(f"Pool {pool.name} is not running: an admin must start it first.")
    return pool


def disk_bytes(vm: VirtualMachine) -> int:
    """What vm's disks can hold, read from its host now: the most a copy or a snapshot of
    them may take."""
    with on_vm_host(vm):
        return sum(hypervisor.disk_capacities(vm.host.uri, str(vm.pk)).values())


def take_backup(
    vm: VirtualMachine,
    pool: StoragePool | None,
    *,
    actor: Actor,
    schedule: BackupSchedule | None = None,
    method: str = "",
) -> Job:
    """Queue a full backup of vm's disks and definition into pool: offline when it is shut
    off, through libvirt's backup API when it runs (or snapshot, copy, merge without one);
    method forces one of those ways ('' chooses)."""
    with vm_job(vm, actor, "vm.backup.create", "back up", right=BACKUP) as request:
        pool = backup_pool(vm, pool, actor)
        _check_method(vm, method)
        if not [d for d in vm.disks if d.get("device") == "disk"]:
            raise ServiceError(f"{vm.name} has no disk to back up.", field="vm")
        request.ready(NOTHING_TO_COPY)
        # The copies read each disk as its recorded format: headers checked first.
        storage_services.check_vm_disks(vm.host, vm.disks, "backed up")
        return _queue_backup(request, pool, schedule, method)


def _check_method(vm: VirtualMachine, method: str) -> None:
    """The method asked for ('' chooses) is known and fits vm's state."""
    if method not in ("", *hypervisor.BACKUP_METHODS):
        raise ServiceError(
            "Choose the method: offline, push or snapshot (or leave it empty).", field="method"
        )
    if method and (method == "offline") != (vm.state == VMState.SHUTOFF):
        raise ServiceError(
            f"{vm.name} is {vm.state}: the offline method needs it shut off, push and "
            "snapshot need it running. Leave the method empty to choose by its state.",
            field="method",
        )


def _queue_backup(
    request: VMJob, pool: StoragePool, schedule: BackupSchedule | None, method: str
) -> Job:
    """The backup's row made and its job queued, what it may take reserved."""
    from vms.tasks import vm_backup_task  # vms.tasks imports this module

    # The copies may take up to the disks' capacity: counted from now, against the
    # project's backup quota; once done, the backup counts the size of its copies.
    vm = request.vm
    reserve: quotas.Reservation = {"backup_gib": quotas.backup_reserve(disk_bytes(vm))}
    with transaction.atomic():
        if vm.project is not None:
            quotas.reserve(vm.project, **reserve)
        backup = Backup.objects.create(
            vm=vm,
            vm_uuid=vm.pk,
            vm_name=vm.name,
            project=vm.project,
            host=vm.host,
            pool=pool,
            schedule=schedule,
        )
        job = request.queue(
            JobKind.VM_BACKUP,
            vm_backup_task,
            {
                "op": "backup",
                "backup": backup.pk,
                "pool": pool.name,
                "method": method,
                "reserve": reserve,
            },
            f"backup #{backup.pk} into pool {pool.name}"
            + (f" (schedule #{schedule.pk})" if schedule else ""),
        )
        backup.job = job
        backup.save(update_fields=["job"])
    return job


def run_backup_job(job: Job) -> None:
    """The body of a backup job: copy, verify with qemu-img check, record, prune."""
    spec = job.result
    backup = Backup.objects.select_related("vm", "host", "pool", "schedule").get(pk=spec["backup"])
    vm, pool = backup.vm, backup.pool
    if vm is None:
        raise ServiceError("The VM of this backup was removed.")
    if pool is None:
        raise ServiceError("The pool of this backup was removed from the panel.")
    try:
        _copy_and_verify(job, backup, vm, pool)
    except Exception as exc:
        message = getattr(exc, "message", None) or str(exc)
        Backup.objects.filter(pk=backup.pk).update(
            state=BackupState.FAILED, message=message, parent=None
        )
        raise
    if backup.schedule is not None:
        from vms.services.schedules import prune  # schedules imports this module

        for line in prune(backup.schedule, vm, job):
            jobs.report(job.pk, log_line=line)


def _copy_and_verify(job: Job, backup: Backup, vm: VirtualMachine, pool: StoragePool) -> None:
    """The copies made and recorded, checked with qemu-img, the backup marked good or failed."""
    jobs.report(
        job.pk,
        progress=5,
        message=f"Backing up {vm.name} into {pool.name}",
        log_line=f"backup #{backup.pk} of {vm.name} ({vm.state}) started",
    )
    chain, base, why = chains.plan(backup, vm)
    # Set now, so that the backup it builds on is not deleted while it is taken.
    Backup.objects.filter(pk=backup.pk).update(parent=base)
    started = time.monotonic()
    result = _copy(job, backup, vm, pool, chain)
    duration = time.monotonic() - started
    chains.record(backup, base, result, why)
    jobs.report(job.pk, progress=85, log_line=f"copied by the {result.method} method")
    if result.incremental and base is not None:
        jobs.report(job.pk, log_line=f"incremental: only what changed since backup #{base.pk}")
    elif result.note or (why and result.method == "push"):
        jobs.report(job.pk, log_line=f"full copy: {result.note or why}")
    for disk in result.disks:
        jobs.report(job.pk, log_line=f"{disk.target}: {disk.source} -> {disk.path}")
    for target in result.skipped:
        jobs.report(job.pk, log_line=f"{target}: not a file-backed disk, not copied")
    Backup.objects.filter(pk=backup.pk).update(
        state=BackupState.VERIFYING,
        method=result.method,
        xml=result.xml,
        disks=[d.__dict__ for d in result.disks],
        size=sum(d.size for d in result.disks),
        duration=round(duration, 3),
    )
    jobs.report(job.pk, progress=90, message="Verifying the copies (qemu-img check)")
    verify = _verify(job, vm, result)
    consistent_at = datetime.fromtimestamp(result.consistent_at, tz=UTC)
    rpo = _rpo(backup, consistent_at)
    good = all(v["ok"] for v in verify)
    Backup.objects.filter(pk=backup.pk).update(
        state=BackupState.GOOD if good else BackupState.FAILED,
        verify=verify,
        consistent_at=consistent_at,
        rpo_seconds=rpo,
        message="" if good else "qemu-img check found errors in the copy.",
    )
    refresh_pool_row(pool)
    if not good:
        raise ServiceError(
            f"The backup of {vm.name} was copied but qemu-img check found errors: do not "
            "restore from it; check the backup pool's storage and take a new backup."
        )
    jobs.report(
        job.pk,
        progress=100,
        message=f"Backup #{backup.pk} of {vm.name} is good.",
        log_line=f"{sum(d.size for d in result.disks)} bytes in {duration:.1f} s"
        + (f"; RPO achieved {rpo} s" if rpo is not None else ""),
    )


def _copy(
    job: Job,
    backup: Backup,
    vm: VirtualMachine,
    pool: StoragePool,
    chain: hypervisor.Chain | None,
) -> hypervisor.BackupResult:
    """vm's disks and definition copied into the backup's pool, by the job's method (a
    push backup in its chain)."""

    def progress(done: int, total: int) -> None:
        jobs.report(job.pk, progress=5 + 80 * done // max(total, 1))

    with on_vm_host(vm, failed=f"The backup of {vm.name} failed and was undone"):
        return hypervisor.backup_domain(
            vm.host.uri,
            str(vm.pk),
            pool.name,
            f"{vm.name}-backup-{backup.pk}",
            method=str(job.result.get("method", "")),
            progress=progress,
            recorded=storage_services.recorded_chains(
                vm.host, [d["source"] for d in vm.disks if d.get("source")]
            ),
            chain=chain,
        )


def _verify(job: Job, vm: VirtualMachine, result: hypervisor.BackupResult) -> list[dict[str, Any]]:
    """Each copy checked with qemu-img, and its file's SHA-256 taken (a verification later
    compares it): its target, whether it is ok, the summary and the digest."""
    verify = []
    for disk in result.disks:
        with on_vm_host(vm, failed=f"Checking {disk.path} failed"):
            checked = hypervisor.check_copy(vm.host.uri, disk.path, disk.format)
            digest = hypervisor.file_digest(vm.host.uri, disk.path)
        verify.append({"target": disk.target, **checked, "sha256": digest})
        jobs.report(job.pk, log_line=f"{disk.target}: {checked['summary']}")
    return verify


def _rpo(backup: Backup, consistent_at: datetime) -> int | None:
    """Seconds since the VM's previous good backup was consistent (None: it is the first)."""
    previous = (
        Backup.objects.filter(vm_uuid=backup.vm_uuid, state=BackupState.GOOD)
        .exclude(pk=backup.pk)
        .order_by("-consistent_at")
        .values_list("consistent_at", flat=True)
        .first()
    )
    return int((consistent_at - previous).total_seconds()) if previous else None


def delete_copies(backup: Backup) -> list[str]:
    """Delete a backup's volumes from its pool; returns what was deleted."""
    done: list[str] = []
    if backup.pool is None:
        return done
    for disk in backup.disks:
        try:
            hv_storage.delete_volume(backup.host.uri, backup.pool.name, disk["volume"])
        except hypervisor.NotFound:
            pass
        done.append(f"deleted {disk['path']}")
    refresh_pool_row(backup.pool)
    return done


def delete_backup(backup: Backup, *, actor: Actor) -> None:
    """Delete a backup's copies and its record."""
    vm = backup.vm
    if vm is not None:
        require_right(actor, vm, BACKUP, "delete backups of")
    elif not (backup.project and allowed(actor.user, backup.project, BACKUP)):
        raise PermissionDenied("Your role does not allow you to delete this backup.")
    with audit.refusals_recorded(
        actor, "vm.backup.delete", vm or backup.vm_name, project=backup.project
    ):
        if _in_progress(backup):
            raise ConflictError(f"Backup #{backup.pk} is still being made: wait for its job.")
        with backup_host_errors(backup):
            chains.leave(backup)
            delete_copies(backup)
        with transaction.atomic():
            audit.record(
                actor,
                "vm.backup.delete",
                vm or backup.vm_name,
                project=backup.project,
                detail=f"backup #{backup.pk}",
            )
            backup.delete()


def _in_progress(backup: Backup) -> bool:
    """Whether the backup's job still runs (a backup whose worker died can be deleted)."""
    return backup.state in (BackupState.RUNNING, BackupState.VERIFYING) and (
        backup.job is not None and not backup.job.is_finished
    )


def backup_host_errors(backup: Backup) -> Any:
    return on_host(backup.host, f"Backup #{backup.pk}")


def visible_backups(vm: VirtualMachine) -> Any:
    """The backups of vm, newest first."""
    return Backup.objects.filter(vm_uuid=vm.pk).select_related("pool")


def run_job(job: Job) -> None:
    """The body of a backup job, or of a restore or verification job."""
    if job.result.get("op") == "restore":
        from vms.services.restores import run_restore_job  # restores imports this module

        run_restore_job(job)
    elif job.result.get("op") == "verify":
        from vms.services.verify import run_verify_job  # verify imports this module

        run_verify_job(job)
    else:
        run_backup_job(job)


def undo_abandoned(job: Job) -> str:
    """A backup whose worker died: its job on the VM stopped, its copies deleted, the
    backup marked failed; a restore: see restores.undo_restore. What to tell the user."""
    spec = job.result
    if spec.get("op") == "verify":
        from vms.services.verify import undo_verify  # verify imports this module

        return undo_verify(job)
    if spec.get("op") != "backup":
        from vms.services.restores import undo_restore  # restores imports this module

        return undo_restore(job)
    backup = Backup.objects.select_related("host", "pool").filter(pk=spec.get("backup")).first()
    if backup is None or backup.host is None or backup.pool is None:
        return "its backup is no longer in the panel"
    cleaned = hypervisor.abandon_backup(
        backup.host.uri,
        str(backup.vm_uuid),
        backup.pool.name,
        f"{backup.vm_name}-backup-{backup.pk}",
    )
    with contextlib.suppress(hypervisor.HypervisorError):
        hypervisor.delete_checkpoint(
            backup.host.uri, str(backup.vm_uuid), chains.checkpoint_name(backup)
        )
    message = "The worker taking this backup stopped; its copies were deleted."
    Backup.objects.filter(pk=backup.pk).update(
        state=BackupState.FAILED, message=message, parent=None
    )
    with contextlib.suppress(ServiceError):
        refresh_pool_row(backup.pool)
    for path in cleaned.merged:
        jobs.append_log(job.pk, f"committed the overlay {path} back into its image and removed it")
    merged = f"; {backup.vm_name} runs on its own disk images again" if cleaned.merged else ""
    return (
        f"backup #{backup.pk} was marked failed and its {len(cleaned.deleted)} copies "
        f"deleted{merged}"
    )
