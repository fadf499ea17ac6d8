"""The host tuning card and the VM list's usage column: what the collector stored, never
libvirt itself."""

from __future__ import annotations

import time

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from monitoring.series import fleet_sample
from monitoring.services import latest_vms, max_age
from monitoring.store import StatsStore, StatsUnavailable
from panel.models import Host
from panel.permissions import is_admin, visible_hosts
from panel.templatetags.panel_tags import ibytes
from vms.models import VirtualMachine
from vms.permissions import visible_vms

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


@register.simple_tag(takes_context=True)
def vm_usage_cell(context: template.Context, vm: VirtualMachine) -> str:
    """The VM list's CPU and memory column: one store read for the whole page, on its first
    row. Written here rather than by a template per row, which cost a fifth of the page."""
    usage = context.render_context.get("vm_usage")
    if usage is None:
        page = context.get("page") or [vm]
        try:
            usage = latest_vms([str(v.pk) for v in page])
        except StatsUnavailable:
            usage = {}  # the list works without its usage column
        context.render_context["vm_usage"] = usage
    sample = usage.get(str(vm.pk))
    if not sample:
        return mark_safe(
            '<td class="small text-nowrap" data-label="Usage" data-vm-usage>'
            '<span class="text-body-secondary">—</span></td>'
        )
    return format_html(
        '<td class="small text-nowrap" data-label="Usage" data-vm-usage><span title="CPU, of its vCPUs">'
        "{} %</span> · "
        '<span title="memory in use of its current memory">{} / {}</span></td>',
        f"{float(sample['cpu']):.1f}",
        ibytes(sample["mem_used"]),
        ibytes(sample["mem_balloon"]),
    )


def _visible_among(user):
    def allowed(ids: list[str]) -> set[str]:
        return {str(pk) for pk in visible_vms(user).filter(pk__in=ids).values_list("pk", flat=True)}

    return allowed


@register.inclusion_tag("monitoring/_overview.html", takes_context=True)
def usage_overview(context: template.Context, top: int = 5) -> dict:
    """The dashboard's busiest VMs and hosts and the use of every host the user sees,
    read without going through every sample: the busiest from the stats' sorted sets,
    the whole fleet's use from the collector's sum of it."""
    user = context["request"].user
    admin = is_admin(user)
    now = time.time()
    store = StatsStore()
    my_hosts = list(visible_hosts(user).values_list("pk", flat=True))
    try:
        if admin:
            fleet_latest = store.latest("fleet", ["all"], now, max_age()).get("all")
            host_latest = store.busiest("host", now, max_age(), top)
            vm_latest = store.busiest("vm", now, max_age(), top)
        else:
            host_latest = store.latest("host", my_hosts, now, max_age())
            fleet_latest = fleet_sample(list(host_latest.values())) if host_latest else None
            mine = visible_vms(user)
            if mine.count() <= 2000:
                vm_latest = store.latest("vm", mine.values_list("pk", flat=True), now, max_age())
            else:
                vm_latest = store.busiest("vm", now, max_age(), top, _visible_among(user))
    except StatsUnavailable:
        # The dashboard works without usage figures.
        vm_latest, host_latest, fleet_latest = {}, {}, None
    top_ids = sorted(vm_latest, key=lambda i: vm_latest[i]["cpu"], reverse=True)[:top]
    visible = visible_vms(user).filter(pk__in=top_ids).select_related(None).only("id", "name")
    vms = sorted(
        ({"vm": vm, "s": vm_latest[str(vm.pk)]} for vm in visible),
        key=lambda row: row["s"]["cpu"],
        reverse=True,
    )
    busy_hosts = sorted(host_latest, key=lambda i: host_latest[i]["cpu"], reverse=True)[:top]
    rows = Host.objects.in_bulk([int(i) for i in busy_hosts])
    hosts = [{"host": rows[int(i)], "s": host_latest[i]} for i in busy_hosts if int(i) in rows]
    fleet = None
    if fleet_latest:
        fleet = {
            "hosts": len(my_hosts) if admin else len(host_latest),
            "cpu": fleet_latest["cpu"],
            "mem_used": fleet_latest["mem_used"],
            "mem_total": fleet_latest["mem_total"],
            "vms": fleet_latest["vms"],
            "disk": fleet_latest["disk_rd"] + fleet_latest["disk_wr"],
            "net": fleet_latest["net_rx"] + fleet_latest["net_tx"],
        }
    return {
        "vms": vms[:top],
        "hosts": hosts[:top],
        "fleet": fleet,
        "show_fleet_graph": admin,
    }
