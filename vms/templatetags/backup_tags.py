"""The Backups card of a VM's page."""

from __future__ import annotations

from typing import Any

from django import template

from panel.choices import JobKind
from panel.models import Job
from panel.permissions import BACKUP, VIEW, allowed, restrict
from storage.models import StoragePool
from vms.models import BackupSchedule
from vms.services import backups

register = template.Library()


@register.inclusion_tag("vms/_backups.html", takes_context=True)
def vm_backups(context: dict[str, Any], vm: Any) -> dict[str, Any]:
    user = context["request"].user
    running = restrict(StoragePool.objects.filter(state="active"), user, VIEW)
    pools = running.filter(host=vm.host)
    return {
        "vm": vm,
        "backups": list(backups.visible_backups(vm)[:50]),
        "schedules": list(BackupSchedule.objects.filter(vm=vm).select_related("pool")),
        "pools": list(pools.order_by("name")),
        # A new VM restored from a backup may go to another host's pool.
        "elsewhere": list(running.exclude(host=vm.host).select_related("host").order_by("name")),
        "can_change": allowed(user, vm, BACKUP) and vm.state != "missing",
        "backup_job": Job.objects.filter(
            target=f"vm:{vm.pk}", kind__in=[JobKind.VM_BACKUP, JobKind.VM_BACKUP_RESTORE]
        )
        .order_by("-created")
        .first(),
        "csrf_token": context.get("csrf_token"),
    }
