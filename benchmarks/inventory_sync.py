"""Phases [1] and [2] of vm_inventory.py: reading the simulated hosts' domains with bare
libvirt in a process of its own and through panel.hypervisor (the baselines), then
sync_domains() of every host three times (all new, nothing changed, 10% of the rows
stale) and reconcile_host() of every host, each set against its goal."""

from __future__ import annotations

import json
import subprocess
import sys

from benchkit import Report, mib, say, timed

GOAL_SYNC_S = 10.0

BARE_LIBVIRT = """
import json, sys, time, libvirt

def hwm():
    return int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])

uris = sys.argv[1:]
out = {"hwm_empty": hwm()}
t = time.perf_counter()
conns = [libvirt.open(u) for u in uris]
out["open_s"] = time.perf_counter() - t
t = time.perf_counter()
n = 0
for c in conns:
    for d in c.listAllDomains(0):
        d.info()
        n += 1
out["info_s"] = time.perf_counter() - t
t = time.perf_counter()
for c in conns:
    for d in c.listAllDomains(0):
        d.info(); d.XMLDesc(0); d.UUIDString(); d.name()
out["full_s"] = time.perf_counter() - t
out["domains"] = n
out["hwm_one"] = hwm()
print(json.dumps(out))
"""


# --- [1] the baselines ---------------------------------------------------------------------------


def bare_libvirt_baseline(uris: list[str], report: Report, vms: int) -> dict[str, float]:
    """Raw cost of reading the same domains with bare libvirt (no panel code), in a process of
    its own, and the memory that process needs to hold the simulated hosts."""
    done = subprocess.run(
        [sys.executable, "-c", BARE_LIBVIRT, *uris],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    n = out["domains"]
    assert n == vms, f"the simulated hosts hold {n} domains, not {vms}"
    say(
        f"  bare libvirt: open {len(uris)} hosts {out['open_s'] * 1000:.0f} ms (the test driver parses each node file)"
    )
    say(
        f"  bare libvirt: listAllDomains + info()            {n} domains in {out['info_s'] * 1000:.0f} ms"
    )
    say(
        f"  bare libvirt: listAllDomains + info() + XMLDesc  {n} domains in {out['full_s'] * 1000:.0f} ms"
    )
    say(
        f"  bare libvirt process peak RSS: {mib(out['hwm_empty']):.0f} MiB empty, "
        f"{mib(out['hwm_one']):.0f} MiB holding the {len(uris)} hosts"
    )
    report.add(f"baseline: bare libvirt list+info ({n} VMs)", f"{out['info_s'] * 1000:.0f} ms")
    report.add(
        f"baseline: bare libvirt list+info+XMLDesc ({n} VMs)", f"{out['full_s'] * 1000:.0f} ms"
    )
    return {k: mib(out[k]) for k in ("hwm_empty", "hwm_one")}


def panel_list_baseline(uris: list[str], report: Report) -> None:
    from panel import hypervisor
    from panel.hypervisor.connection import connect

    with timed() as t_open:
        for uri in uris:
            connect(uri)
    with timed() as t_list:
        n = sum(len(hypervisor.list_domains(uri)) for uri in uris)
    say(f"  panel.hypervisor: open {len(uris)} hosts {t_open[0] * 1000:.0f} ms (pooled)")
    say(
        f"  panel.hypervisor.list_domains                    {n} domains in {t_list[0] * 1000:.0f} ms"
    )
    report.add(f"baseline: hypervisor.list_domains ({n} VMs)", f"{t_list[0] * 1000:.0f} ms")


# --- [2] sync -------------------------------------------------------------------------------------


def sync_all(hosts: list, label: str) -> tuple[float, float, dict[str, int]]:
    """list_domains + sync_domains over every host; (total s, sync-only s, summed counts)."""
    from panel import hypervisor
    from vms.services import sync_domains

    totals: dict[str, int] = {}
    sync_s = 0.0
    with timed() as t_all:
        for host in hosts:
            domains = hypervisor.list_domains(host.uri)
            with timed() as t_sync:
                counts = sync_domains(host, domains)
            sync_s += t_sync[0]
            for k, v in counts.items():
                totals[k] = totals.get(k, 0) + v
    total = t_all[0]
    rate = totals.get("domains", 0) / total if total else 0
    say(
        f"  {label:<34} {total:6.2f} s  ({rate:,.0f} VMs/s; sync_domains alone {sync_s:.2f} s)  "
        + ", ".join(f"{k} {v}" for k, v in totals.items())
    )
    return total, sync_s, totals


def sync_phases(vms: int, hosts: list, report: Report) -> list:
    """First sync (all new), again (nothing changed), then with every tenth row stale;
    returns the VMs' primary keys by name."""
    from vms.models import VirtualMachine

    first, first_sync, counts = sync_all(hosts, "first sync (all new)")
    assert counts["created"] == vms, counts
    report.add(
        f"sync {vms} VMs, first (list+sync)",
        f"{first:.2f} s ({vms / first:,.0f} VMs/s)",
        f"< {GOAL_SYNC_S:.0f} s",
        first < GOAL_SYNC_S,
    )
    report.add("  of which sync_domains (DB)", f"{first_sync:.2f} s")
    again, _again_sync, counts = sync_all(hosts, "second sync (nothing changed)")
    assert counts["changed"] == 0 and counts["created"] == 0, counts
    report.add(
        f"sync {vms} VMs, unchanged (list+sync)",
        f"{again:.2f} s ({vms / again:,.0f} VMs/s)",
        f"< {GOAL_SYNC_S:.0f} s",
        again < GOAL_SYNC_S,
    )
    pks = list(VirtualMachine.objects.order_by("name").values_list("pk", flat=True))
    stale = pks[::10]
    for i in range(0, len(stale), 500):
        VirtualMachine.objects.filter(pk__in=stale[i : i + 500]).update(vcpus=64)
    third, third_sync, counts = sync_all(hosts, f"third sync ({len(stale)} rows stale)")
    assert counts["changed"] == len(stale), counts
    report.add(
        f"sync {vms} VMs, 10% stale (list+sync)",
        f"{third:.2f} s ({vms / third:,.0f} VMs/s)",
        f"< {GOAL_SYNC_S:.0f} s",
        third < GOAL_SYNC_S,
    )
    report.add("  of which sync_domains (DB)", f"{third_sync:.2f} s")
    return pks


def reconcile_phase(hosts: list, report: Report) -> None:
    """reconcile_host() of every host, nothing having changed."""
    from panel.services.hosts import reconcile_host

    with timed() as t:
        for host in hosts:
            reconcile_host(host, checks=False)
    say(
        f"  {'reconcile_host(checks=False) all':<34} {t[0]:6.2f} s  (domains, pools, networks; nothing changed)"
    )
    report.add(
        f"reconcile_host x{len(hosts)}, unchanged",
        f"{t[0]:.2f} s",
        f"< {GOAL_SYNC_S:.0f} s",
        t[0] < GOAL_SYNC_S,
    )
