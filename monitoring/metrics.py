"""/metrics: the panel's inventory and the latest usage of its hosts and VMs for Prometheus.

Text exposition format 0.0.4. Everything comes from the database and the stats
store (one read each), never from libvirt, so a scrape costs the same with a
thousand VMs as with ten.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping

from panel.models import Host, Job
from vms.models import VirtualMachine

from .services import max_age
from .store import StatsStore, StatsUnavailable

# (sample field, metric suffix, help) for both hosts and VMs.
_USAGE = (
    ("cpu", "cpu_percent", "CPU use in percent (of the VM's vCPUs; of all the host's CPUs)."),
    ("mem_used", "memory_used_bytes", "Memory in use."),
    ("disk_rd", "disk_read_bytes_per_second", "Disk bytes read per second."),
    ("disk_wr", "disk_write_bytes_per_second", "Disk bytes written per second."),
    ("disk_rd_iops", "disk_read_ops_per_second", "Disk read operations per second."),
    ("disk_wr_iops", "disk_write_ops_per_second", "Disk write operations per second."),
    ("net_rx", "network_receive_bytes_per_second", "Network bytes received per second."),
    ("net_tx", "network_transmit_bytes_per_second", "Network bytes sent per second."),
)
_VM_ONLY = (
    ("mem_balloon", "memory_current_bytes", "The VM's current memory (balloon)."),
    ("mem_max", "memory_max_bytes", "The VM's maximum memory."),
)
_HOST_ONLY = (
    ("mem_total", "memory_total_bytes", "The host's memory."),
    ("vms", "running_vms", "VMs active on the host."),
)


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, object]) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())


def _family(name: str, help_text: str, kind: str, rows: Iterable[tuple[dict, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in rows:
        lines.append(f"{name}{{{_labels(labels)}}} {value}" if labels else f"{name} {value}")
    return lines


def render(now: float | None = None) -> str:
    """The whole exposition as text."""
    now = time.time() if now is None else now
    store = StatsStore()
    lines: list[str] = []
    hosts = {str(h.pk): h for h in Host.objects.all()}
    lines += _family(
        "panel_hosts",
        "Hosts known to the panel, by state.",
        "gauge",
        [({"state": s}, n) for s, n in sorted(Counter(h.state for h in hosts.values()).items())],
    )
    vm_rows = VirtualMachine.objects.values_list("id", "name", "state", "host_id", "project__name")
    vms = {
        str(pk): (name, state, str(hid), project or "") for pk, name, state, hid, project in vm_rows
    }
    lines += _family(
        "panel_vms",
        "VMs known to the panel, by state.",
        "gauge",
        [({"state": s}, n) for s, n in sorted(Counter(v[1] for v in vms.values()).items())],
    )
    job_states = Job.objects.values_list("state", flat=True)
    lines += _family(
        "panel_jobs",
        "Jobs, by state.",
        "gauge",
        [({"state": s}, n) for s, n in sorted(Counter(job_states).items())],
    )
    return "\n".join(lines + _usage(store, now, hosts, vms)) + "\n"


def _usage(
    store: StatsStore, now: float, hosts: dict[str, Host], vms: Mapping[str, tuple[str, ...]]
) -> list[str]:
    """The usage families: each host's and VM's latest sample, and when the last came."""
    lines: list[str] = []
    try:
        host_latest = store.latest_all("host", now, max_age())
        vm_latest = store.latest_all("vm", now, max_age())
    except StatsUnavailable:
        # Redis is away: the inventory counts above are still true; no usage samples.
        host_latest, vm_latest = {}, {}
    host_rows = [
        ({"host": hosts[i].name}, sample) for i, sample in sorted(host_latest.items()) if i in hosts
    ]
    for field, suffix, help_text in _USAGE + _HOST_ONLY:
        lines += _family(
            f"panel_host_{suffix}", help_text, "gauge", [(lb, s[field]) for lb, s in host_rows]
        )

    vm_rows_out = []
    for uuid, sample in sorted(vm_latest.items()):
        if uuid not in vms:
            continue
        name, _state, host_id, project = vms[uuid]
        host = hosts.get(host_id)
        labels = {"vm": name, "uuid": uuid, "host": host.name if host else "", "project": project}
        vm_rows_out.append((labels, sample))
    for field, suffix, help_text in _USAGE + _VM_ONLY:
        lines += _family(
            f"panel_vm_{suffix}", help_text, "gauge", [(lb, s[field]) for lb, s in vm_rows_out]
        )
    newest = max((s["t"] for s in host_latest.values()), default=0)
    lines += _family(
        "panel_stats_last_collection_timestamp_seconds",
        "When the collector last stored a host sample (0: not in the last three intervals).",
        "gauge",
        [({}, round(newest, 3))],
    )
    return lines
