"""The core's facts worth telling: a job failed (a backup among them), a host went down
or came back, a project passed 90 % of a quota. The VMs' facts are the VM app's
(vms.services.alerts)."""

from __future__ import annotations

from django.urls import reverse

from panel.choices import HostState, JobKind, JobState, NotificationKind
from panel.models import Host, Job, Project

from .core import Event, emit

NEAR = 0.9  # of a quota's limit


def job_failed(job_id: int) -> None:
    """A job ended failed: its readers hear of it (a backup's as a failed backup). Repeats
    on the same object and of the same kind are throttled together."""
    job = Job.objects.select_related("project").filter(pk=job_id).first()
    if job is None or job.state != JobState.FAILED:
        return
    backup = job.kind == JobKind.VM_BACKUP
    emit(
        Event(
            NotificationKind.BACKUP_FAILED if backup else NotificationKind.JOB_FAILED,
            title=f"{job} failed" + (f" on {job.target}" if job.target else ""),
            body=job.message,
            target=f"{job.target}/{job.kind}" if job.target else f"job:{job.pk}",
            about=job,
            project=job.project,
            link=reverse("job_detail", args=[job.pk]),
        )
    )


def host_state_changed(host: Host, before: str | None, now: str) -> None:
    """A host went down, or came back from down: administrators hear of it."""
    if now == HostState.DOWN and before != HostState.DOWN:
        kind, title = NotificationKind.HOST_DOWN, f"Host {host.name} went down"
    elif now == HostState.UP and before == HostState.DOWN:
        kind, title = NotificationKind.HOST_UP, f"Host {host.name} came back"
    else:
        return
    emit(
        Event(
            kind,
            title=title,
            body=host.last_error,
            target=f"host:{host.pk}",
            about=None,
            link=reverse("host_detail", args=[host.pk]),
        )
    )


def quota_passed(project: Project, label: str, field: str, used: int, limit: int) -> None:
    """A reservation took the project past 90 % of one limit."""
    emit(
        Event(
            NotificationKind.QUOTA_NEAR,
            title=f"Project {project.name} uses {used} of {limit} {label}",
            body=(
                f"Project {project.name} passed 90 % of its {label} quota ({used} of {limit}). "
                "Free some resources or ask an admin to raise the quota."
            ),
            target=f"quota:{project.pk}:{field}",
            about=project,
            project=project,
            link=reverse("project_detail", args=[project.pk]),
        )
    )


def passes_near(used: int, extra: int, limit: int) -> bool:
    """Whether taking extra more crosses 90 % of limit."""
    return extra > 0 and used < NEAR * limit <= used + extra
