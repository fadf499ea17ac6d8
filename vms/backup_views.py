"""The Backups card's forms: back up now, restore, delete, and the VM's schedules."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.permissions import CHANGE, VIEW, get_object_for_user, restrict
from storage.models import StoragePool

from .models import Backup, BackupSchedule, VirtualMachine
from .services import backups, restores, schedules


def _pool(request: HttpRequest) -> StoragePool | None:
    pk = request.POST.get("pool", "")
    pools = restrict(StoragePool.objects.select_related("host"), request.user, VIEW)
    return pools.filter(pk=pk).first() if pk.isdigit() else None


def _int(value: str | None, field: str) -> int:
    try:
        return int(value or 0)
    except ValueError:
        raise ServiceError(f"Give {field} as a whole number.", field=field) from None


@require_POST
def vm_backup_action(request: HttpRequest, vm_id: str, action: str) -> HttpResponse:
    vm = get_object_for_user(
        VirtualMachine.objects.select_related("host", "project"), request.user, vm_id, CHANGE
    )
    try:
        run = BACKUP_ACTIONS.get(action)
        if run is None:
            raise ServiceError(f"Unknown backup action '{action}'.")
        run(request, vm)
    except ServiceError as exc:
        messages.error(request, exc.message)
    except PermissionDenied as exc:
        messages.error(request, str(exc))
    return redirect("vm_detail", vm_id=vm.pk)


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


def _take(request: HttpRequest, vm: VirtualMachine) -> None:
    job = backups.take_backup(
        vm,
        _pool(request),
        method=request.POST.get("method", ""),
        actor=Actor.of(request),
    )
    messages.info(request, f"Backup of {vm.name} started (job #{job.pk}).")


def _restore(request: HttpRequest, vm: VirtualMachine) -> None:
    backup, data = _backup(request, vm), request.POST
    job = restores.restore_backup(
        backup,
        mode=data.get("mode", "new"),
        name=data.get("name", ""),
        pool=_pool(request),
        start=data.get("start") == "1",
        actor=Actor.of(request),
    )
    messages.info(request, f"Restore of backup #{backup.pk} started (job #{job.pk}).")


def _delete(request: HttpRequest, vm: VirtualMachine) -> None:
    backup = _backup(request, vm)
    backups.delete_backup(backup, actor=Actor.of(request))
    messages.info(request, f"Backup #{backup.pk} deleted.")


def _add_schedule(request: HttpRequest, vm: VirtualMachine) -> None:
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


def _delete_schedule(request: HttpRequest, vm: VirtualMachine) -> None:
    schedule = BackupSchedule.objects.filter(
        vm=vm, pk=_int(request.POST.get("schedule"), "schedule")
    ).first()
    if schedule is None:
        raise ServiceError(f"{vm.name} has no such schedule: reload the page.")
    schedules.delete_schedule(schedule, actor=Actor.of(request))
    messages.info(request, f"Schedule #{schedule.pk} deleted.")


BACKUP_ACTIONS: dict[str, Callable[[HttpRequest, VirtualMachine], None]] = {
    "create": _take,
    "restore": _restore,
    "delete": _delete,
    "schedule-add": _add_schedule,
    "schedule-delete": _delete_schedule,
}
