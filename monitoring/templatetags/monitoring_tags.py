"""The host tuning card and the VM list's usage column: what the collector stored, never
libvirt itself."""

from __future__ import annotations

from django import template

from monitoring.services import latest_vms
from monitoring.store import StatsStore
from panel.models import Host
from vms.models import VirtualMachine

register = template.Library()

KSM_RUN = {0: "stopped", 1: "running", 2: "stopped, pages unmerged"}


@register.inclusion_tag("monitoring/_host_tuning.html")
def host_tuning_card(host: Host) -> dict:
    info = StatsStore().host_info(str(host.pk))
    if info:
        run = info["ksm"].get("run")
        info["ksm_state"] = KSM_RUN.get(run, "unknown") if run is not None else "unknown"
        mode = info["transparent_hugepages"]
        info["thp_mode"] = mode[mode.find("[") + 1 : mode.find("]")] if "[" in mode else mode
    return {"host": host, "info": info}


@register.inclusion_tag("monitoring/_vm_usage_cell.html", takes_context=True)
def vm_usage_cell(context: template.Context, vm: VirtualMachine) -> dict:
    """The VM list's CPU and memory column: one store read for the whole page, on its first row."""
    usage = context.render_context.get("vm_usage")
    if usage is None:
        page = context.get("page") or [vm]
        usage = context.render_context["vm_usage"] = latest_vms([str(v.pk) for v in page])
    return {"vm": vm, "sample": usage.get(str(vm.pk))}
