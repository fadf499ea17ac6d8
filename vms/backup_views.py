"""The Backups card's forms: back up now, restore, verify, delete, and the VM's schedules."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest

from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.permissions import BACKUP, VIEW, restrict
from storage.models import StoragePool

from .models import Backup, BackupSchedule, VirtualMachine
from .page_forms import vm_form
from .services import backups, restores, schedules, verify


def _pool(request: HttpRequest) -> StoragePool | None:
    pk = request.POST.get("pool", "")
    pools = restrict(StoragePool.objects.select_related("host"), request.user, VIEW)
    return pools.filter(pk=pk).first() if pk.isdigit() else None


def _int(value: str | None, field: str) -> int:
    try:
        return int(value or 0)
    except ValueError:
        raise ServiceError(f"Give {field} as a whole number.", field=field) from None


def _backup(request: HttpRequest, vm: VirtualMachine) -> Backup:
    """The backup of vm the form names."""
    backup = (
        Backup.objects.filter(vm_uuid=vm.pk, pk=_int(request.POST.get("backup"), "backup"))
        .select_related("vm__host", "vm__project", "host", "pool")
        .first()
    )
    if backup is None:
        raise ServiceError(f"{vm.name} has no such backup: reload the page.")
    return backup


@vm_form(BACKUP, denied_as_message=True)
def vm_backup_create(request: HttpRequest, vm: VirtualMachine) -> None:
    """Back up now into the pool chosen (a pool of the VM's host)."""
    job = backups.take_backup(
        vm,
        _pool(request),
        method=request.POST.get("method", ""),
        actor=Actor.of(request),
    )
    messages.info(request, f"Backup of {vm.name} started (job #{job.pk}).")


@vm_form(BACKUP, denied_as_message=True)
def vm_backup_restore(request: HttpRequest, vm: VirtualMachine) -> None:
    """Restore a backup into a new VM or in place."""
    backup, data = _backup(request, vm), request.POST
    job = restores.restore_backup(
        backup,
        mode=data.get("mode", "new"),
        name=data.get("name", ""),
        pool=_pool(request),
        start=data.get("start") == "1",
        disks=[t for t in data.getlist("disks") if t],
        actor=Actor.of(request),
    )
    messages.info(request, f"Restore of backup #{backup.pk} started (job #{job.pk}).")


@vm_form(BACKUP, denied_as_message=True)
def vm_backup_verify(request: HttpRequest, vm: VirtualMachine) -> None:
    """Verify a backup: its files against their digests, and a restore read back."""
    backup = _backup(request, vm)
    job = verify.verify_backup(backup, actor=Actor.of(request))
    messages.info(request, f"Verification of backup #{backup.pk} started (job #{job.pk}).")


@vm_form(BACKUP, denied_as_message=True)
def vm_backup_delete(request: HttpRequest, vm: VirtualMachine) -> None:
    """Delete a backup and its copies."""
    backup = _backup(request, vm)
    backups.delete_backup(backup, actor=Actor.of(request))
    messages.info(request, f"Backup #{backup.pk} deleted.")


@vm_form(BACKUP, denied_as_message=True)
def vm_backup_schedule_add(request: HttpRequest, vm: VirtualMachine) -> None:
    """Add a backup or snapshot schedule to the VM."""
    data = request.POST
    fields = {f: data.get(f, "") for f in ("minute", "hour", "day_of_month")}
    fields |= {f: data.get(f, "") for f in ("month_of_year", "day_of_week")}
    schedule = schedules.save_schedule(
        {
            "kind": data.get("kind", "backup"),
            "pool": _pool(request),
            **fields,
            **{f: _int(data.get(f, "0"), f) for f in ("keep_last", "keep_daily", "keep_weekly")},
        },
        vm=vm,
        actor=Actor.of(request),
    )
    messages.info(request, f"Schedule #{schedule.pk} added: {schedule.cron}.")


@vm_form(BACKUP, denied_as_message=True)
def vm_backup_schedule_delete(request: HttpRequest, vm: VirtualMachine) -> None:
    """Delete one of the VM's schedules."""
    schedule = BackupSchedule.objects.filter(
        vm=vm, pk=_int(request.POST.get("schedule"), "schedule")
    ).first()
    if schedule is None:
        raise ServiceError(f"{vm.name} has no such schedule: reload the page.")
    schedules.delete_schedule(schedule, actor=Actor.of(request))
    messages.info(request, f"Schedule #{schedule.pk} deleted.")
