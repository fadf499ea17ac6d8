"""Backup and snapshot schedules: saved with their cron fields, fired by the beat task, and
pruned to their retention (keep last N, daily D, weekly W).

Schedules keep their own `next_run`, computed from their cron fields (vms/services/retention.py),
and one beat entry (`vms.run_backup_schedules`, every minute) fires the due ones. A
django-celery-beat PeriodicTask per schedule would work too, but it would be a second copy of
each schedule to keep in step with the row (created, edited, enabled, deleted together), and
the firing would be out of the panel's hands; a row with `next_run` is checked with one
indexed query, and a test fires it by calling the task with a chosen time.

A schedule acts as the user who made it: when that user may no longer change the VM, the
firing is refused and audited like any other request.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from panel import audit, hypervisor, locks
from panel.actors import Actor
from panel.choices import Via
from panel.exceptions import ConflictError, ServiceError
from panel.models import Job, Project
from panel.permissions import BACKUP, VIEW, allowed, restrict
from storage.models import StoragePool
from vms.choices import BackupState, ScheduleKind, VMState
from vms.models import Backup, BackupSchedule, VirtualMachine
from vms.services import alerts, chains, retention, snapshots
from vms.services.backups import backup_host_errors, backup_pool, delete_copies, take_backup
from vms.services.common import on_vm_host, require_right

if TYPE_CHECKING:
    from panel.permissions import Person


log = logging.getLogger(__name__)


def prune(schedule: BackupSchedule, vm: VirtualMachine, job: Job | None = None) -> list[str]:
    """Delete the schedule's good backups (or snapshots) of vm that its retention no longer
    keeps; job is the caller's own job on vm, if any."""
    if schedule.kind == ScheduleKind.SNAPSHOT:
        return _prune_snapshots(schedule, vm, job)
    backups = list(
        Backup.objects.filter(schedule=schedule, vm=vm, state=BackupState.GOOD).select_related(
            "host", "pool"
        )
    )
    kept = retention.keep(
        [b.consistent_at or b.created for b in backups],
        last=schedule.keep_last,
        daily=schedule.keep_daily,
        weekly=schedule.keep_weekly,
    )
    done = []
    for index, backup in enumerate(backups):
        if index in kept:
            continue
        with backup_host_errors(backup):
            done += chains.leave(backup)
            delete_copies(backup)
        audit.record(
            Actor(None, via=Via.SCHEDULE),
            "vm.backup.prune",
            vm,
            project=backup.project,
            detail=f"backup #{backup.pk} pruned by schedule #{schedule.pk}",
        )
        backup.delete()
        done.append(f"backup #{backup.pk} pruned (retention of schedule #{schedule.pk})")
    return done


def _prune_snapshots(schedule: BackupSchedule, vm: VirtualMachine, job: Job | None) -> list[str]:
    """The schedule's snapshots (named sched<id>-...) beyond its retention, deleted at once
    (an internal snapshot's deletion is quick); skipped while another job runs on the VM,
    to be pruned at the next firing."""
    busy = locks.active_job(f"vm:{vm.pk}")
    if (busy is not None and (job is None or busy.pk != job.pk)) or vm.state == VMState.MISSING:
        return []
    taken = list(
        vm.snapshots.filter(name__startswith=f"sched{schedule.pk}-").order_by("created", "name")
    )
    kept = retention.keep(
        # Ties (libvirt keeps seconds) are broken by the name, which ends in microseconds.
        [(s.created or timezone.now()) + timedelta(microseconds=i) for i, s in enumerate(taken)],
        last=schedule.keep_last,
        daily=schedule.keep_daily,
        weekly=schedule.keep_weekly,
    )
    done = []
    for index, snap in enumerate(taken):
        if index in kept:
            continue
        with on_vm_host(vm, failed=f"Pruning the snapshot {snap.name} of {vm.name} failed"):
            hypervisor.delete_snapshot(vm.host.uri, str(vm.pk), snap.name)
        audit.record(
            Actor(None, via=Via.SCHEDULE),
            "vm.snapshot.prune",
            vm,
            project=vm.project,
            detail=f"snapshot {snap.name} pruned by schedule #{schedule.pk}",
        )
        done.append(f"snapshot {snap.name} pruned (retention of schedule #{schedule.pk})")
    if done:
        snapshots.sync_snapshots(vm)
    return done


def _targets(schedule: BackupSchedule) -> list[VirtualMachine]:
    if schedule.vm is not None:
        return [schedule.vm]
    return list(
        VirtualMachine.objects.filter(project=schedule.project)
        .exclude(state=VMState.MISSING)
        .select_related("host", "project")
    )


# Beat fires due schedules every minute: one due longer ago than this was missed.
LATE = timedelta(minutes=5)


def run_schedules(now: datetime | None = None) -> list[str]:
    """Fire every enabled schedule whose next run is due: queue a backup (or take a
    snapshot) of each of its VMs, prune by its retention, and move its next run on. A run
    due long ago (the scheduler was not running then) is told as missed, then made."""
    now = now or timezone.now()
    done: list[str] = []
    due = BackupSchedule.objects.filter(enabled=True, next_run__lte=now).select_related(
        "vm__host", "vm__project", "project", "pool", "created_by"
    )
    for schedule in due:
        with transaction.atomic():
            claimed = BackupSchedule.objects.filter(
                pk=schedule.pk, next_run=schedule.next_run
            ).update(last_run=now, next_run=_next(schedule, now))
        if not claimed:
            continue  # another beat process fired it
        missed = _missed(schedule, now)
        for vm in _targets(schedule):
            if missed:
                alerts.backup_missed(schedule, vm, missed)
            # Prune first: the job queued next makes the VM busy (each job prunes too).
            try:
                done += prune(schedule, vm)
            except ServiceError as exc:
                done.append(f"schedule #{schedule.pk}: {vm.name}: pruning failed: {exc.message}")
            done.append(_fire(schedule, vm))
    return done


def _missed(schedule: BackupSchedule, now: datetime) -> str:
    """Why this run comes late ('' when it does not): it was due longer ago than LATE."""
    if schedule.next_run is None or now - schedule.next_run <= LATE:
        return ""
    due = timezone.localtime(schedule.next_run).strftime("%Y-%m-%d %H:%M")
    return f"it was due at {due}, when the scheduler was not running; it runs now"


def _next(schedule: BackupSchedule, after: datetime) -> datetime | None:
    cron = retention.parse_cron(
        **{field: getattr(schedule, field) for field in retention.CRON_FIELDS}
    )
    return retention.next_run(cron, timezone.localtime(after))


def _fire(schedule: BackupSchedule, vm: VirtualMachine) -> str:
    actor = Actor.scheduled(schedule.created_by)
    try:
        if schedule.kind == ScheduleKind.BACKUP:
            job = take_backup(vm, schedule.pool, actor=actor, schedule=schedule)
        else:
            job = snapshots.take_snapshot(
                vm,
                name=timezone.localtime().strftime(f"sched{schedule.pk}-%Y%m%d-%H%M%S-%f"),
                description=f"Taken by schedule #{schedule.pk}",
                schedule=schedule.pk,
                actor=actor,
            )
    except (ServiceError, PermissionDenied) as exc:
        message = getattr(exc, "message", None) or str(exc)
        if isinstance(exc, PermissionDenied):
            audit.record(
                actor,
                f"vm.{schedule.kind}.create",
                vm,
                result="denied",
                detail=f"schedule #{schedule.pk}: {message}",
            )
        log.warning("schedule %s: %s not started: %s", schedule.pk, vm.name, message)
        alerts.backup_missed(schedule, vm, message)
        return f"schedule #{schedule.pk}: {vm.name}: {message}"
    return f"schedule #{schedule.pk}: {vm.name}: job #{job.pk}"


SCHEDULE_FIELDS = (
    *retention.CRON_FIELDS,
    "kind",
    "pool",
    "keep_last",
    "keep_daily",
    "keep_weekly",
    "enabled",
)


def serialize_schedule(schedule: BackupSchedule) -> dict[str, Any]:
    """A schedule as the API shows it."""
    return {
        "id": schedule.pk,
        "vm": str(schedule.vm_id) if schedule.vm_id else None,
        "project": schedule.project_id,
        "kind": schedule.kind,
        "pool": schedule.pool_id,
        **{field: getattr(schedule, field) for field in retention.CRON_FIELDS},
        "cron": schedule.cron,
        "keep_last": schedule.keep_last,
        "keep_daily": schedule.keep_daily,
        "keep_weekly": schedule.keep_weekly,
        "enabled": schedule.enabled,
        "last_run": schedule.last_run.isoformat() if schedule.last_run else None,
        "next_run": schedule.next_run.isoformat() if schedule.next_run else None,
    }


def _require_schedule(actor: Actor, vm: VirtualMachine | None, project: Any, verb: str) -> None:
    if vm is not None:
        require_right(actor, vm, BACKUP, verb)
    elif not allowed(actor.user, project, BACKUP):
        raise PermissionDenied(
            f"Your role does not allow you to {verb} project {project.name}: operators may."
        )


def schedules_for_user(user: Person) -> Any:
    """The schedules user may see: those of the VMs and projects they see."""
    vms = restrict(VirtualMachine.objects.all(), user, VIEW).values("pk")
    projects = restrict(Project.objects.all(), user, VIEW).values("pk")
    return BackupSchedule.objects.filter(
        Q(vm__in=vms) | Q(vm__isnull=True, project__in=projects)
    ).select_related("vm", "project", "pool")


def save_schedule(
    data: dict[str, Any],
    *,
    vm: VirtualMachine | None = None,
    project: Any = None,
    schedule: BackupSchedule | None = None,
    actor: Actor,
) -> BackupSchedule:
    """Create a schedule for vm or for every VM of project, or change schedule; data holds
    any of SCHEDULE_FIELDS (pool: a StoragePool or None)."""
    if schedule is not None:
        vm, project = schedule.vm, schedule.project
    elif vm is not None:
        project = vm.project
        if project is None:
            raise ConflictError(f"{vm.name} belongs to no project: assign it to one first.")
    _require_schedule(actor, vm, project, "schedule backups of")
    target = vm if vm is not None else project
    action = "vm.backup_schedule." + ("update" if schedule else "create")
    with audit.refusals_recorded(actor, action, target, project=project):
        values = {
            field: data[field] if field in data else getattr(schedule, field)
            for field in SCHEDULE_FIELDS
            if field in data or schedule is not None
        }
        kind = values.get("kind", ScheduleKind.BACKUP)
        if kind not in ScheduleKind.values:
            raise ServiceError("Choose the kind: snapshot or backup.", field="kind")
        cron = _checked_cron(values)
        _check_retention(values)
        if kind == ScheduleKind.BACKUP:
            _check_pool(values.get("pool"), vm, actor)
        else:
            values["pool"] = None
        values.update(cron)
        with transaction.atomic():
            if schedule is None:
                schedule = BackupSchedule(vm=vm, project=project, created_by=actor.person)
            for field, value in values.items():
                setattr(schedule, field, value)
            schedule.next_run = _next(schedule, timezone.now()) if schedule.enabled else None
            schedule.save()
            audit.record(
                actor,
                action,
                target,
                project=project,
                detail=f"schedule #{schedule.pk}: {schedule.kind} at '{schedule.cron}', keep "
                f"last {schedule.keep_last}, daily {schedule.keep_daily}, weekly "
                f"{schedule.keep_weekly}" + ("" if schedule.enabled else " (disabled)"),
            )
    return schedule


def _checked_cron(values: dict[str, Any]) -> dict[str, str]:
    """The schedule's cron fields (defaults for those not given), once they parse."""
    cron = {f: str(values.get(f, _default(f))).strip() for f in retention.CRON_FIELDS}
    try:
        retention.parse_cron(**cron)
    except ValueError as exc:
        field, _, reason = str(exc).partition(": ")
        raise ServiceError(
            f"{reason} Use cron syntax: a number, *, a range a-b, a list a,b or a step */n.",
            field=field,
        ) from None
    return cron


def _default(name: str) -> Any:
    """The default of a schedule's field."""
    field = BackupSchedule._meta.get_field(name)
    return field.default if isinstance(field, models.Field) else None


def _check_retention(values: dict[str, Any]) -> None:
    """keep_last, keep_daily and keep_weekly are whole numbers from 0 to 1000."""
    for field in ("keep_last", "keep_daily", "keep_weekly"):
        value = values.get(field, _default(field))
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 1000:
            raise ServiceError(f"Give {field} as a whole number from 0 to 1000.", field=field)


def _check_pool(pool: StoragePool | None, vm: VirtualMachine | None, actor: Actor) -> None:
    """A backup schedule's pool: given, and one the VM (or the project) may back up into."""
    if pool is None:
        raise ServiceError("Choose the pool the backups go to.", field="pool")
    if vm is not None:
        backup_pool(vm, pool, actor)
    elif not restrict(StoragePool.objects.filter(pk=pool.pk), actor.user, VIEW).exists():
        raise ServiceError(f"Your project may not use pool {pool.name}.", field="pool")


def delete_schedule(schedule: BackupSchedule, *, actor: Actor) -> None:
    """Delete a schedule; the backups it made stay."""
    _require_schedule(actor, schedule.vm, schedule.project, "change the schedules of")
    with transaction.atomic():
        audit.record(
            actor,
            "vm.backup_schedule.delete",
            schedule.vm or schedule.project,
            project=schedule.project,
            detail=f"schedule #{schedule.pk}",
        )
        schedule.delete()
