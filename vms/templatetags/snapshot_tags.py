"""The Snapshots card of a VM's page."""

from __future__ import annotations

from typing import Any

from django import template

from panel.choices import JobKind
from panel.models import Job
from panel.permissions import SNAPSHOT, allowed
from vms.services import snapshots

register = template.Library()

SNAPSHOT_JOBS = [
    JobKind.VM_SNAPSHOT_CREATE,
    JobKind.VM_SNAPSHOT_REVERT,
    JobKind.VM_SNAPSHOT_DELETE,
    JobKind.VM_SNAPSHOT_MERGE,
]


@register.inclusion_tag("vms/_snapshots.html", takes_context=True)
def vm_snapshots(context: dict[str, Any], vm: Any) -> dict[str, Any]:
    user = context["request"].user
    tree = snapshots.snapshot_tree(vm)
    return {
        "vm": vm,
        "snapshots": tree,
        "can_change": allowed(user, vm, SNAPSHOT) and vm.state != "missing",
        "running": vm.state in ("running", "paused"),
        "has_external": any(s.kind == "external" for s in tree),
        "disk_targets": [d.get("target") for d in vm.disks if d.get("device") == "disk"],
        "snapshot_job": Job.objects.filter(target=f"vm:{vm.pk}", kind__in=SNAPSHOT_JOBS)
        .order_by("-created")
        .first(),
        "csrf_token": context.get("csrf_token"),
    }
