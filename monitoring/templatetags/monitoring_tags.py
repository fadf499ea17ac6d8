"""The host tuning card and the VM list's usage column: what the collector stored, never
libvirt itself."""

from __future__ import annotations

import time

from django import template

from monitoring.services import latest_vms, max_age
from monitoring.store import StatsStore, StatsUnavailable
from panel.models import Host
from vms.models import VirtualMachine

register = template.Library()

KSM_RUN = {0: "stopped", 1: "running", 2: "stopped, pages unmerged"}


@register.inclusion_tag("monitoring/_host_tuning.html")
def host_tuning_card(host: Host) -> dict:
    try:
        info = StatsStore().host_info(str(host.pk))
    except StatsUnavailable:
        info = None  # the page works without the card's figures
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
        try:
            usage = latest_vms([str(v.pk) for v in page])
        except StatsUnavailable:
            usage = {}  # the list works without its usage column
        context.render_context["vm_usage"] = usage
    return {"vm": vm, "sample": usage.get(str(vm.pk))}


def _visible_among(user):  # type: ignore[no-untyped-def]
    from vms.permissions import visible_vms

    def allowed(ids: list[str]) -> set[str]:
        return {str(pk) for pk in visible_vms(user).filter(pk__in=ids).values_list("pk", flat=True)}

    return allowed


@register.inclusion_tag("monitoring/_overview.html", takes_context=True)
def usage_overview(context: template.Context, top: int = 5) -> dict:
    """The dashboard's busiest VMs and hosts and the use of every host the user sees."""
    from panel.permissions import is_admin, visible_hosts
    from vms.permissions import visible_vms

    user = context["request"].user
    now = time.time()
    store = StatsStore()
    try:
        host_latest = store.latest_all("host", now, max_age())
        # The busiest few, without reading every sample: candidates by CPU, kept when
        # the user may see them.
        if is_admin(user):
            vm_latest = store.busiest("vm", now, max_age(), top)
        elif (mine := visible_vms(user)).count() <= 2000:
            vm_latest = store.latest("vm", mine.values_list("pk", flat=True), now, max_age())
        else:
            vm_latest = store.busiest("vm", now, max_age(), top, _visible_among(user))
    except StatsUnavailable:
        vm_latest, host_latest = {}, {}  # the dashboard works without usage figures
    top_ids = sorted(vm_latest, key=lambda i: vm_latest[i]["cpu"], reverse=True)[:top]
    visible = visible_vms(user).filter(pk__in=top_ids).select_related(None).only("id", "name")
    vms = sorted(
        ({"vm": vm, "s": vm_latest[str(vm.pk)]} for vm in visible),
        key=lambda row: row["s"]["cpu"],
        reverse=True,
    )
    my_hosts = set(visible_hosts(user).values_list("pk", flat=True))
    host_latest = {i: s for i, s in host_latest.items() if int(i) in my_hosts}
    busy_hosts = sorted(host_latest, key=lambda i: host_latest[i]["cpu"], reverse=True)[:top]
    rows = Host.objects.in_bulk([int(i) for i in busy_hosts])
    hosts = [{"host": rows[int(i)], "s": host_latest[i]} for i in busy_hosts if int(i) in rows]
    fleet = None
    if host_latest:
        samples = list(host_latest.values())
        fleet = {
            "hosts": len(samples),
            "cpu": sum(s["cpu"] for s in samples) / len(samples),
            "mem_used": sum(s["mem_used"] for s in samples),
            "mem_total": sum(s["mem_total"] for s in samples),
            "vms": sum(s["vms"] for s in samples),
            "disk": sum(s["disk_rd"] + s["disk_wr"] for s in samples),
            "net": sum(s["net_rx"] + s["net_tx"] for s in samples),
        }
    return {
        "vms": vms[:top],
        "hosts": hosts[:top],
        "fleet": fleet,
        "show_fleet_graph": is_admin(user),
    }
