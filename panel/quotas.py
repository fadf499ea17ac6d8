"""Project quotas: usage computed from the inventory, reservations checked atomically.

`reserve()` runs inside the caller's transaction, after locking the project's
quota row, and the caller creates the rows that use the resources in that same
transaction. Two parallel requests therefore cannot both take the last slot:
on PostgreSQL the row lock serializes them, on SQLite the write transaction
(BEGIN IMMEDIATE) does.

What counts is what a project can grow to without asking again: a VM's vCPUs and
memory at their maximum (tuning raises the current values up to it, live), a
volume at its capacity. Backups and snapshots have a quota of their own
(`backup_gib`): a finished backup counts the size of its copies, a snapshot what it
holds in the pool as last read (saved memory, overlay files); a backup or
snapshot still to be taken counts what it may take, from the request on (see
`backup_reserve`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TypedDict

from django.db import transaction

from . import registry
from .choices import JobState
from .exceptions import ServiceError
from .models import Job, Project, Quota
from .notifications import facts

GIB = 1024**3
MIB = 1024**2
FIELDS = ("vms", "vcpus", "memory_mib", "disk_gib", "backup_gib")


class Reservation(TypedDict, total=False):
    """What a job takes of its project's quota while it runs, by field."""

    vms: int
    vcpus: int
    memory_mib: int
    disk_gib: int
    backup_gib: int


LABELS = {
    "vms": "VMs",
    "vcpus": "vCPUs",
    "memory_mib": "memory (MiB)",
    "disk_gib": "disk (GiB)",
    "backup_gib": "backups and snapshots (GiB)",
}
# Jobs whose reservation counts until they end: their rows (VM, backup copies, snapshot)
# do not exist yet, or not at their final size.
RESERVING_JOBS = ("vm.create", "vm.backup.restore", "vm.backup", "vm.snapshot.create")


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
    backup_gib: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def usage(project: Project) -> Usage:
    """Current use: what each app counts for the project (its VMs except vanished ones at
    what they can grow to, its volumes, its backups and snapshots; see panel.registry),
    and what unfinished jobs reserved."""
    used = pending(project).as_dict()
    for count in registry.quota_usage:
        for field, amount in count(project).items():
            used[field] += amount
    return Usage(**used)


def backup_reserve(disk_bytes: int, memory_mib: int = 0) -> int:
    """GiB a backup or snapshot may take: the capacity of the disks it copies or keeps
    the state of (writes after a snapshot go to new space, up to each disk's size), plus
    the memory a snapshot with memory saves."""
    return -(-(int(disk_bytes) + int(memory_mib) * MIB) // GIB)


def pending(project: Project) -> Usage:
    """What jobs still queued or running reserved: VM creations and restores into new
    VMs (their rows do not exist yet), backups and snapshots being taken."""
    held = {f: 0 for f in FIELDS}
    reservations = Job.objects.filter(
        project=project,
        kind__in=RESERVING_JOBS,
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
    backup_gib: int = 0,
    growing: tuple[str, ...] = (),
) -> Usage:
    """Check that the project can take this much more; call inside the creating transaction.

    growing: fields the caller lets grow within what is already counted (a VM's vCPUs up
    to its counted maximum): refused too while the project uses more than its quota
    allows (an admin lowered it, or the VM's maximum was raised before it counted).

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
    wanted = {
        "vms": vms,
        "vcpus": vcpus,
        "memory_mib": memory_mib,
        "disk_gib": disk_gib,
        "backup_gib": backup_gib,
    }
    for field, extra in wanted.items():
        limit = getattr(quota, field)
        if limit is None:
            continue
        used = getattr(current, field)
        if extra <= 0 and field in growing and used > limit:
            raise QuotaExceeded(
                f"Quota exceeded for project {project.name}: it uses {used} {LABELS[field]} "
                f"of {limit} allowed, counting each VM at its maximum, so nothing may grow. "
                "Lower the maximum of some VMs or ask an admin to raise the quota."
            )
        if extra <= 0:
            continue
        if used + extra > limit:
            message = (
                f"Quota exceeded for project {project.name}: {LABELS[field]} would be "
                f"{used + extra} of {limit} allowed ({used} in use, {extra} requested). "
                "Free some resources or ask an admin to raise the quota."
            )
            raise QuotaExceeded(message)
    _tell_near(project, quota, current, wanted)
    return current


def _tell_near(project: Project, quota: Quota, current: Usage, wanted: dict[str, int]) -> None:
    """Tell those who subscribed when what was just reserved takes the project past 90 %
    of a limit."""
    for field, extra in wanted.items():
        limit = getattr(quota, field)
        used = getattr(current, field)
        if limit is not None and facts.passes_near(used, extra, limit):
            facts.quota_passed(project, LABELS[field], field, used + extra, limit)
