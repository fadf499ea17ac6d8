"""Backups of VMs: full copies of the disks and the definition into a backup pool, and
restores from them, as jobs. Schedules and retention are in vms/services/schedules.py."""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction

from panel import audit, hypervisor, jobs, locks, quotas
from panel.choices import JobKind
from panel.exceptions import ConflictError, ServiceError
from panel.hostcalls import on_host
from panel.hypervisor import qemu_img
from panel.hypervisor import storage as hv_storage
from panel.models import Job
from panel.permissions import CHANGE, MANAGE, VIEW, allowed, restrict
from storage import services as storage_services
from storage.models import StoragePool
from vms.choices import BackupState, VMState
from vms.models import Backup, BackupSchedule, VirtualMachine
from vms.services.common import apply_info, on_vm_host, queue_vm_job, require_right, reread
from vms.services.sync import sync_domain

log = logging.getLogger(__name__)


def serialize_backup(backup: Backup) -> dict[str, Any]:
    """A backup as the API shows it."""
    return {
        "id": backup.pk,
        "vm": str(backup.vm_uuid),
        "vm_name": backup.vm_name,
        "state": backup.state,
        "method": backup.method,
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
    }


def backup_pool(vm: VirtualMachine, pool: StoragePool | None, actor: Any) -> StoragePool:
    if pool is None:
        raise ServiceError("Choose the pool the backup goes to.", field="pool")
    if pool.host_id != vm.host_id:
        raise ServiceError(
            f"Pool {pool.name} is on {pool.host.name}, not on {vm.host.name} where {vm.name} "
            "runs: choose a pool of that host.",
            field="pool",
        )
    if not restrict(StoragePool.objects.filter(pk=pool.pk), actor, VIEW).exists():
        raise ServiceError(f"Your project may not use pool {pool.name}.", field="pool")
    if pool.state != "active":
        raise ConflictError(f"Pool {pool.name} is not running: an admin must start it first.")
    return pool


def disk_bytes(vm: VirtualMachine) -> int:
    """What vm's disks can hold, read from its host now: the most a copy or a snapshot of
    them may take."""
    with on_vm_host(vm):
        return sum(hypervisor.disk_capacities(vm.host.uri, str(vm.pk)).values())


def _idle(vm: VirtualMachine) -> None:
    if vm.state == VMState.MISSING:
        raise ConflictError(f"{vm.name} is missing from its host: there is nothing to copy.")
    locks.refuse_if_busy(f"vm:{vm.pk}", vm.name)


def take_backup(
    vm: VirtualMachine,
    pool: StoragePool | None,
    *,
    actor: Any,
    schedule: BackupSchedule | None = None,
    method: str = "",
    source_ip: str | None = None,
) -> Job:
    """Queue a full backup of vm's disks and definition into pool: offline when it is shut
    off, through libvirt's backup API when it runs (or snapshot, copy, merge without one);
    method forces one of those ways ('' chooses)."""
    from vms.tasks import vm_backup_task

    require_right(actor, vm, CHANGE, "back up")
    with audit.refusals_recorded(
        actor, "vm.backup.create", vm, project=vm.project, source_ip=source_ip
    ):
        pool = backup_pool(vm, pool, actor)
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
        if not [d for d in vm.disks if d.get("device") == "disk"]:
            raise ServiceError(f"{vm.name} has no disk to back up.", field="vm")
        _idle(vm)
        # The copies read each disk as its recorded format: headers checked first.
        storage_services.check_vm_disks(vm.host, vm.disks, "backed up")
        # The copies may take up to the disks' capacity: counted from now, against the
        # project's backup quota; once done, the backup counts the size of its copies.
        reserve = {"backup_gib": quotas.backup_reserve(disk_bytes(vm))}
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
            job = queue_vm_job(
                vm,
                JobKind.VM_BACKUP,
                vm_backup_task,
                {
                    "op": "backup",
                    "backup": backup.pk,
                    "pool": pool.name,
                    "method": method,
                    "reserve": reserve,
                },
                actor=actor,
                action="vm.backup.create",
                detail=f"backup #{backup.pk} into pool {pool.name}"
                + (f" (schedule #{schedule.pk})" if schedule else ""),
                source_ip=source_ip,
            )
            backup.job = job
            backup.save(update_fields=["job"])
    return job


def run_backup_job(job: Job) -> None:
    """The body of a backup job: copy, verify with qemu-img check, record, prune."""
    spec = job.result
    backup = Backup.objects.select_related("vm", "host", "pool", "schedule").get(pk=spec["backup"])
    vm = backup.vm
    if vm is None:
        raise ServiceError("The VM of this backup was removed.")
    try:
        _copy_and_verify(job, backup, vm)
    except Exception as exc:
        message = getattr(exc, "message", None) or str(exc)
        Backup.objects.filter(pk=backup.pk).update(state=BackupState.FAILED, message=message)
        raise
    if backup.schedule is not None:
        from vms.services.schedules import prune

        for line in prune(backup.schedule, vm, job):
            jobs.report(job.pk, log_line=line)


def _copy_and_verify(job: Job, backup: Backup, vm: VirtualMachine) -> None:
    uri = vm.host.uri
    jobs.report(
        job.pk,
        progress=5,
        message=f"Backing up {vm.name} into {backup.pool.name}",
        log_line=f"backup #{backup.pk} of {vm.name} ({vm.state}) started",
    )

    def progress(done: int, total: int) -> None:
        jobs.report(job.pk, progress=5 + 80 * done // max(total, 1))

    started = time.monotonic()
    with on_vm_host(vm, failed=f"The backup of {vm.name} failed and was undone"):
        result = hypervisor.backup_domain(
            uri,
            str(vm.pk),
            backup.pool.name,
            f"{vm.name}-backup-{backup.pk}",
            method=str(job.result.get("method", "")),
            progress=progress,
            recorded=storage_services.recorded_chains(
                vm.host, [d["source"] for d in vm.disks if d.get("source")]
            ),
        )
    duration = time.monotonic() - started
    jobs.report(job.pk, progress=85, log_line=f"copied by the {result.method} method")
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
    verify = []
    for disk in result.disks:
        with on_vm_host(vm, failed=f"Checking {disk.path} failed"):
            checked = qemu_img.check(uri, disk.path, disk.format)
        verify.append({"target": disk.target, **checked})
        jobs.report(job.pk, log_line=f"{disk.target}: {checked['summary']}")
    consistent_at = datetime.fromtimestamp(result.consistent_at, tz=UTC)
    previous = (
        Backup.objects.filter(vm_uuid=backup.vm_uuid, state=BackupState.GOOD)
        .exclude(pk=backup.pk)
        .order_by("-consistent_at")
        .values_list("consistent_at", flat=True)
        .first()
    )
    rpo = int((consistent_at - previous).total_seconds()) if previous else None
    good = all(v["ok"] for v in verify)
    Backup.objects.filter(pk=backup.pk).update(
        state=BackupState.GOOD if good else BackupState.FAILED,
        verify=verify,
        consistent_at=consistent_at,
        rpo_seconds=rpo,
        message="" if good else "qemu-img check found errors in the copy.",
    )
    from storage.services import refresh_pool_row

    refresh_pool_row(backup.pool)
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


def delete_copies(backup: Backup) -> list[str]:
    """Delete a backup's volumes from its pool; returns what was deleted."""
    done = []
    if backup.pool is None:
        return done
    for disk in backup.disks:
        try:
            hv_storage.delete_volume(backup.host.uri, backup.pool.name, disk["volume"])
        except hypervisor.NotFound:
            pass
        done.append(f"deleted {disk['path']}")
    from storage.services import refresh_pool_row

    refresh_pool_row(backup.pool)
    return done


def delete_backup(backup: Backup, *, actor: Any, source_ip: str | None = None) -> None:
    """Delete a backup's copies and its record."""
    vm = backup.vm
    if vm is not None:
        require_right(actor, vm, CHANGE, "delete backups of")
    elif not (backup.project and allowed(actor, backup.project, MANAGE)):
        raise PermissionDenied("Your role does not allow you to delete this backup.")
    with audit.refusals_recorded(
        actor, "vm.backup.delete", vm or backup.vm_name, project=backup.project, source_ip=source_ip
    ):
        if _in_progress(backup):
            raise ConflictError(f"Backup #{backup.pk} is still being made: wait for its job.")
        with backup_host_errors(backup):
            delete_copies(backup)
        with transaction.atomic():
            audit.record(
                actor,
                "vm.backup.delete",
                vm or backup.vm_name,
                project=backup.project,
                detail=f"backup #{backup.pk}",
                source_ip=source_ip,
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


def _restore_name(backup: Backup, name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
        raise ServiceError(
            "Name the new VM with 1 to 64 letters, digits, '-', '_' or '.'.", field="name"
        )
    if (
        VirtualMachine.objects.filter(host=backup.host, name=name)
        .exclude(state=VMState.MISSING)
        .exists()
    ):
        raise ServiceError(
            f"{backup.host.name} already has a VM named '{name}': choose another name.",
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
    actor: Any,
    source_ip: str | None = None,
) -> Job:
    """Queue a restore of a good backup: into a new VM (new name, UUID and MACs; its disks
    copied into pool; the project's quota reserved now) or in place (the VM shut off, its
    disks replaced). Each backup file is checked with qemu-img before it is used."""
    from vms.tasks import vm_backup_task

    vm = backup.vm
    if vm is None:
        raise ConflictError(
            f"The VM of backup #{backup.pk} was deleted: restore from its pool's volumes by hand."
        )
    require_right(actor, vm, CHANGE, "restore backups of")
    with audit.refusals_recorded(
        actor, "vm.backup.restore", vm, project=vm.project, source_ip=source_ip
    ):
        if mode not in RESTORE_MODES:
            raise ServiceError("Choose the mode: new (a new VM) or in_place.", field="mode")
        if backup.state != BackupState.GOOD:
            raise ConflictError(
                f"Backup #{backup.pk} is {backup.get_state_display().lower()}, not good: "
                "restore from a backup that passed its check."
            )
        reserve: dict[str, int] = {}
        if mode == "new":
            name = _restore_name(backup, name)
            pool = backup_pool(vm, pool, actor)
            disk_gib = -(-sum(int(d.get("capacity", 0)) for d in backup.disks) // (1024**3))
            reserve = {
                "vms": 1,
                "vcpus": max(vm.vcpus, vm.max_vcpus),
                "memory_mib": max(vm.memory_mib, vm.max_memory_mib),
                "disk_gib": disk_gib,
            }
        else:
            if vm.state != VMState.SHUTOFF:
                raise ConflictError(
                    f"{vm.name} is {vm.state}: shut it down before restoring it in place."
                )
        _idle(vm)
        with transaction.atomic():
            if reserve and vm.project is not None:
                quotas.reserve(vm.project, **reserve)
            job = queue_vm_job(
                vm,
                JobKind.VM_BACKUP_RESTORE,
                vm_backup_task,
                {
                    "op": "restore",
                    "backup": backup.pk,
                    "mode": mode,
                    "name": name,
                    "pool": pool.name if pool else "",
                    "start": start,
                    "reserve": reserve,
                },
                actor=actor,
                action="vm.backup.restore",
                detail=f"backup #{backup.pk} "
                + (f"into a new VM {name} in pool {pool.name}" if mode == "new" else "in place")
                + (", then start" if start else ""),
                source_ip=source_ip,
            )
    return job


RESTORE_MODES = ("new", "in_place")


def run_job(job: Job) -> None:
    """The body of a backup job, or of a restore job."""
    if job.result.get("op") == "restore":
        run_restore_job(job)
    else:
        run_backup_job(job)


def run_restore_job(job: Job) -> None:
    """The body of a restore job: verify the backup files, copy, define or redefine, start."""
    spec = job.result
    backup = Backup.objects.select_related("vm", "host", "pool").get(pk=spec["backup"])
    vm = backup.vm
    if vm is None:
        raise ServiceError("The VM of this backup was removed.")
    uri = backup.host.uri
    jobs.report(
        job.pk,
        progress=5,
        message=f"Checking backup #{backup.pk} before restoring it",
        log_line=f"restore of backup #{backup.pk} ({spec['mode']}) started",
    )
    for disk in backup.disks:
        with backup_host_errors(backup):
            checked = qemu_img.check(uri, disk["path"], disk.get("format", "qcow2"))
        jobs.report(job.pk, log_line=f"{disk['target']}: {disk['path']}: {checked['summary']}")
        if not checked["ok"]:
            Backup.objects.filter(pk=backup.pk).update(
                state=BackupState.FAILED, message=str(checked["summary"])
            )
            raise ServiceError(
                f"Backup #{backup.pk} failed its check ({disk['target']}: {checked['summary']}): "
                "it was not restored. Choose another backup."
            )
    copies = {d["target"]: d["path"] for d in backup.disks}

    def progress(done: int, total: int) -> None:
        jobs.report(job.pk, progress=15 + 70 * done // max(total, 1))

    jobs.report(job.pk, progress=15, message=f"Copying backup #{backup.pk}")
    if spec["mode"] == "new":
        with on_vm_host(vm, failed=f"Restoring backup #{backup.pk} failed and was undone"):
            uuid, made = hypervisor.restore_as_new(
                uri,
                backup.xml,
                copies,
                spec["pool"],
                spec["name"],
                progress=progress,
                on_volume=jobs.recorder(job.pk),  # for the undo should this worker die
            )
        for path in made:
            jobs.report(job.pk, log_line=f"copied to {path}")
            storage_services.record_made(backup.host, path, "qcow2", [])
        info = hypervisor.get_domain(uri, uuid)
        with transaction.atomic():
            restored = sync_domain(backup.host, info)
            restored.project = vm.project
            restored.owner = job.user
            restored.template = vm.template  # its limits follow the copy
            restored.save(update_fields=["project", "owner", "template"])
            job.refresh_from_db(fields=["result"])
            job.result = {**job.result, "restored": uuid, "reserve": {}}
            job.save(update_fields=["result"])
    else:
        with on_vm_host(vm, failed=f"Restoring {vm.name} from backup #{backup.pk} failed"):
            steps = hypervisor.restore_in_place(
                uri, str(vm.pk), copies, progress=progress, on_volume=jobs.recorder(job.pk)
            )
        for step in steps:
            jobs.report(job.pk, log_line=step)
        restored = apply_info(vm, None)
    jobs.report(job.pk, progress=85, message="Checking the restored disks")
    for disk in [d for d in restored.disks if d.get("target") in copies]:
        # A standalone qcow2 copy the panel made: recorded so, whatever its content reads as.
        storage_services.record_made(backup.host, disk["source"], "qcow2", [])
        with backup_host_errors(backup):
            checked = qemu_img.check(uri, disk["source"], "qcow2")
        jobs.report(job.pk, log_line=f"{disk['target']}: {disk['source']}: {checked['summary']}")
        if not checked["ok"]:
            raise ServiceError(
                f"The restored disk {disk['source']} failed its check: {checked['summary']}"
            )
    if spec["start"]:
        with on_vm_host(restored, failed=f"{restored.name} was restored but did not start"):
            restored = apply_info(restored, hypervisor.start_domain(uri, str(restored.pk)))
    if backup.pool is not None:
        from storage.services import refresh_pool_row

        for pool in {backup.pool, *StoragePool.objects.filter(host=backup.host, state="active")}:
            refresh_pool_row(pool)
    jobs.report(
        job.pk,
        progress=100,
        message=f"{restored.name} restored from backup #{backup.pk}"
        + (" and started." if spec["start"] else "."),
    )


def undo_abandoned(job: Job) -> str:
    """A backup whose worker died: its job on the VM stopped, its copies deleted, the
    backup marked failed; a restore: see _undo_restore. What to tell the user."""
    spec = job.result
    if spec.get("op") != "backup":
        return _undo_restore(job)
    backup = Backup.objects.select_related("host", "pool").filter(pk=spec.get("backup")).first()
    if backup is None or backup.host is None or backup.pool is None:
        return "its backup is no longer in the panel"
    cleaned = hypervisor.abandon_backup(
        backup.host.uri,
        str(backup.vm_uuid),
        backup.pool.name,
        f"{backup.vm_name}-backup-{backup.pk}",
    )
    message = "The worker taking this backup stopped; its copies were deleted."
    Backup.objects.filter(pk=backup.pk).update(state=BackupState.FAILED, message=message)
    from storage.services import refresh_pool_row

    with contextlib.suppress(ServiceError):
        refresh_pool_row(backup.pool)
    for path in cleaned.merged:
        jobs.append_log(job.pk, f"committed the overlay {path} back into its image and removed it")
    merged = f"; {backup.vm_name} runs on its own disk images again" if cleaned.merged else ""
    return (
        f"backup #{backup.pk} was marked failed and its {len(cleaned.deleted)} copies "
        f"deleted{merged}"
    )


def _undo_restore(job: Job) -> str:
    """A restore whose worker died: the copies it was making that no domain uses yet are
    removed (the VM stays on the disks it had); a restore that had got as far as defining
    its VM is kept, and a new VM gets its row. What to tell the user."""
    from storage.services import remove_made_volumes

    spec = job.result
    backup = Backup.objects.select_related("vm", "host").filter(pk=spec.get("backup")).first()
    if backup is None or backup.host is None:
        return "its backup is no longer in the panel"
    host = backup.host
    try:
        removed, kept = remove_made_volumes(host, spec.get(jobs.MADE) or [])
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
