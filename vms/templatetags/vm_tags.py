from collections.abc import Iterable
from typing import Any

from django import template
from django.db.models import Count, QuerySet

from panel.models import Host
from vms.models import VirtualMachine
from vms.permissions import visible_vms

register = template.Library()

LABELS = {
    "start": "Start",
    "shutdown": "Shut down",
    "force-off": "Force off",
    "reboot": "Reboot",
    "reset": "Reset",
    "suspend": "Pause",
    "resume": "Resume",
    "save": "Save",
    "restore": "Restore",
}


@register.filter
def split(value: str) -> list[str]:
    return value.split()


@register.filter
def action_label(action: str) -> str:
    return LABELS.get(action, action)


# The host page lists this many of the host's VMs.
HOST_PAGE_VMS = 50


@register.simple_tag(takes_context=True)
def visible_vm_count(context: dict[str, Any]) -> int:
    """How many VMs the user sees (the dashboard's summary)."""
    return visible_vms(context["request"].user).count()


@register.simple_tag(takes_context=True)
def vm_counts(context: dict[str, Any], hosts: Iterable[Host]) -> dict[int, int]:
    """{host id: the number of VMs on it that the user sees}, for these hosts, in one
    grouped count through the VMs' host index."""
    vms = visible_vms(context["request"].user).filter(host_id__in=[h.pk for h in hosts])
    return dict(
        vms.order_by().values_list("host_id").annotate(n=Count("pk")).values_list("host_id", "n")
    )


@register.filter
def count_for(counts: dict[int, int], host: Host) -> int:
    """A host's count from vm_counts (0 when it has no VM the user sees)."""
    return counts.get(host.pk, 0)


@register.simple_tag(takes_context=True)
def host_vms(context: dict[str, Any], host: Host) -> QuerySet[VirtualMachine]:
    """The first VMs of the host that the user sees (the host page's list)."""
    return visible_vms(context["request"].user).filter(host=host)[:HOST_PAGE_VMS]
