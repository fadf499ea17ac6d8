"""Project quotas: usage computed from the inventory, reservations checked atomically.

`reserve()` runs inside the caller's transaction, after locking the project's
quota row, and the caller creates the rows that use the resources in that same
transaction. Two parallel requests therefore cannot both take the last slot:
on PostgreSQL the row lock serializes them, on SQLite the write transaction
(BEGIN IMMEDIATE) does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.db import transaction
from django.db.models import Count, Sum
from django.db.models.functions import Coalesce

from .exceptions import ServiceError
from .models import Project, Quota

GIB = 1024**3
FIELDS = ("vms", "vcpus", "memory_mib", "disk_gib")
LABELS = {"vms": "VMs", "vcpus": "vCPUs", "memory_mib": "memory (MiB)", "disk_gib": "disk (GiB)"}


class QuotaExceeded(ServiceError):
    """The request would take the project past one of its limits."""

    status_code = 403


@dataclass(frozen=True)
class Usage:
    """What a project uses, in the quota's units."""

    vms: int = 0
    vcpus: int = 0
    memory_mib: int = 0
    disk_gib: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def usage(project: Project) -> Usage:
    """Current use: the project's VMs (except vanished ones) and its volumes."""
    from storage.models import Volume
    from vms.choices import VMState
    from vms.models import VirtualMachine

    vms = VirtualMachine.objects.filter(project=project).exclude(state=VMState.MISSING)
    agg = vms.aggregate(
        n=Count("pk"), cpus=Coalesce(Sum("vcpus"), 0), mem=Coalesce(Sum("memory_mib"), 0)
    )
    disk = Volume.objects.filter(project=project).aggregate(b=Coalesce(Sum("capacity"), 0))["b"]
    pending = pending_creates(project)
    return Usage(
        vms=agg["n"] + pending.vms,
        vcpus=agg["cpus"] + pending.vcpus,
        memory_mib=agg["mem"] + pending.memory_mib,
        disk_gib=-(-int(disk) // GIB) + pending.disk_gib,
    )


def pending_creates(project: Project) -> Usage:
    """What VM creations (and restores of backups into new VMs) still queued or running
    hold: their rows do not exist yet."""
    from .choices import JobKind, JobState
    from .models import Job

    held = {f: 0 for f in FIELDS}
    reservations = Job.objects.filter(
        project=project,
        kind__in=[JobKind.VM_CREATE, JobKind.VM_BACKUP_RESTORE],
        state__in=[JobState.QUEUED, JobState.RUNNING],
    ).values_list("result", flat=True)
    for result in reservations:
        for field, amount in (result or {}).get("reserve", {}).items():
            if field in held:
                held[field] += int(amount)
    return Usage(**held)


def quota_of(project: Project) -> Quota:
    quota, _ = Quota.objects.get_or_create(project=project)
    return quota


def limits(project: Project) -> dict[str, int | None]:
    quota = quota_of(project)
    return {f: getattr(quota, f) for f in FIELDS}


def reserve(
    project: Project,
    *,
    vms: int = 0,
    vcpus: int = 0,
    memory_mib: int = 0,
    disk_gib: int = 0,
) -> Usage:
    """Check that the project can take this much more; call inside the creating transaction.

    Raises QuotaExceeded (403) naming the quota and the numbers. Wrap the
    caller's transaction in audit.refusals_recorded() so the refusal is logged
    after the rollback.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError(
            "quotas.reserve() must run inside the transaction that creates the resources"
        )
    quota_of(project)
    quota = Quota.objects.select_for_update().get(project=project)
    current = usage(project)
    wanted = {"vms": vms, "vcpus": vcpus, "memory_mib": memory_mib, "disk_gib": disk_gib}
    for field, extra in wanted.items():
        limit = getattr(quota, field)
        if limit is None or extra <= 0:
            continue
        used = getattr(current, field)
        if used + extra > limit:
            message = (
                f"Quota exceeded for project {project.name}: {LABELS[field]} would be "
                f"{used + extra} of {limit} allowed ({used} in use, {extra} requested). "
                "Free some resources or ask an admin to raise the quota."
            )
            raise QuotaExceeded(message)
    return current
