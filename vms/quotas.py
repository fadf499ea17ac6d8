"""What a project's VMs, backups and snapshots count against its quota (panel.quotas)."""

from __future__ import annotations

from django.db.models import Count, F, Sum
from django.db.models.functions import Coalesce, Greatest

from panel.choices import JobState
from panel.models import Project
from panel.quotas import GIB

from .choices import VMState
from .models import Backup, Snapshot, VirtualMachine


def project_usage(project: Project) -> dict[str, int]:
    """The project's VMs (except vanished ones) at what they can grow to, and the space
    its finished backups and its snapshots take (rounded up to whole GiB together)."""
    vms = VirtualMachine.objects.filter(project=project).exclude(state=VMState.MISSING)
    agg = vms.aggregate(
        n=Count("pk"),
        cpus=Coalesce(Sum(Greatest(F("vcpus"), F("max_vcpus"))), 0),
        mem=Coalesce(Sum(Greatest(F("memory_mib"), F("max_memory_mib"))), 0),
    )
    # A backup whose job still runs counts its job's reservation instead (see pending()).
    backups = (
        Backup.objects.filter(project=project)
        .exclude(job__state__in=[JobState.QUEUED, JobState.RUNNING])
        .aggregate(b=Coalesce(Sum("size"), 0))["b"]
    )
    kept = Snapshot.objects.filter(vm__project=project).aggregate(b=Coalesce(Sum("size"), 0))["b"]
    return {
        "vms": agg["n"],
        "vcpus": agg["cpus"],
        "memory_mib": agg["mem"],
        "backup_gib": -(-int(backups + kept) // GIB),
    }
