"""What the VM app tells subscribers (panel.notifications): a VM that crashed, one
stopped outside the panel (shut down from inside the guest, `virsh destroy`), and a
scheduled backup that could not start."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from panel.choices import AuditResult, JobState, NotificationKind
from panel.models import ActionLock, AuditEvent, Host, Job
from panel.notifications import Event, emit
from vms.models import BackupSchedule, VirtualMachine

# A job or an action on the VM that ended this recently may still be what stopped it:
# the watcher applies events in turn, and may be behind.
AFTERGLOW = timedelta(seconds=60)
# The quick actions that stop a VM (the others are jobs).
PANEL_STOPS = ("vm.force-off",)
HOW = {
    "shutdown": "It was shut down from inside the guest or by another tool.",
    "destroyed": "It was powered off by another tool (virsh destroy or the like).",
}


def _by_panel(vm: VirtualMachine) -> bool:
    """Whether the panel itself stopped the VM: an action's claim on it now, a job on it
    running or just ended, or a power-off it recorded moments ago (the watcher may apply
    the event after the action's claim is gone)."""
    target = f"vm:{vm.pk}"
    if ActionLock.objects.filter(target=target).exists():
        return True
    since = timezone.now() - AFTERGLOW
    recent = Q(state__in=[JobState.QUEUED, JobState.RUNNING]) | Q(finished__gte=since)
    if Job.objects.filter(recent, target=target).exists():
        return True
    return AuditEvent.objects.filter(
        action__in=PANEL_STOPS,
        target=vm.name,
        project=vm.project_id,
        result=AuditResult.SUCCESS,
        time__gte=since,
    ).exists()


def domain_stopped(host: Host, uuid: str, how: str) -> None:
    """The watcher's word that a domain stopped (how: libvirt's reason): a crash is told
    always, a shutdown or a power-off that the panel did not make as stopped outside."""
    vm = VirtualMachine.objects.select_related("project").filter(pk=uuid, host=host).first()
    if vm is None:
        return
    link = reverse("vm_detail", args=[vm.pk])
    if how in ("crashed", "failed"):
        emit(
            Event(
                NotificationKind.VM_CRASHED,
                title=f"VM {vm.name} crashed on {host.name}",
                body=f"{vm.name} stopped: its guest or its emulator failed ({how}).",
                target=f"vm:{vm.pk}",
                about=vm,
                project=vm.project,
                link=link,
            )
        )
        return
    if how not in HOW or _by_panel(vm):
        return
    emit(
        Event(
            NotificationKind.VM_STOPPED,
            title=f"VM {vm.name} was stopped outside the panel",
            body=f"{vm.name} on {host.name} stopped without a request through the panel. "
            + HOW[how],
            target=f"vm:{vm.pk}",
            about=vm,
            project=vm.project,
            link=link,
        )
    )


def backup_missed(schedule: BackupSchedule, vm: VirtualMachine, why: str) -> None:
    """A schedule's run found it could not start the VM's backup (or snapshot)."""
    emit(
        Event(
            NotificationKind.BACKUP_MISSED,
            title=f"Scheduled {schedule.kind} of {vm.name} was missed",
            body=f"Schedule #{schedule.pk} could not start it: {why}",
            target=f"schedule:{schedule.pk}:vm:{vm.pk}",
            about=vm,
            project=vm.project,
            link=reverse("vm_detail", args=[vm.pk]),
        )
    )
