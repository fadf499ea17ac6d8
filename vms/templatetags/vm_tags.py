from collections.abc import Iterable
from typing import Any

from django import template
from django.db.models import Count, QuerySet
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

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


@register.simple_tag
def os_variant_options(variants: Iterable[Any], selected: str | None) -> str:
    """The wizard's <option>s for OS variants, each with its recommended size, selected
    when it is the chosen one: built here rather than by an include per option, the
    wizard lists some 800 of them."""
    return format_html_join(
        "",
        '<option value="{}" data-vcpus="{}" data-memory="{}" data-disk="{}"{}>{}</option>',
        (
            (
                v.short_id,
                v.recommended_vcpus,
                v.recommended_memory_mib,
                v.recommended_disk_gib,
                mark_safe(" selected") if v.short_id == selected else "",
                v.name if v.short_id == "generic" else f"{v.name} ({v.short_id})",
            )
            for v in variants
        ),
    )
