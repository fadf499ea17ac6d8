"""The host tuning card: what the collector last read of the host, never libvirt itself."""

from __future__ import annotations

from django import template

from monitoring.store import StatsStore
from panel.models import Host

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
