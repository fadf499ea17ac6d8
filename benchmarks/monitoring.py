#!/usr/bin/env python
"""Monitoring at scale: the stats collector with 1,000 running VMs, and a VM page with a day
of history.

Fills simulated hosts (libvirt's test:/// driver, node XML files as vm_inventory.py writes
them, every domain running) and measures, each beside a baseline taken in the same run:

- one collector cycle (manage.py collect_stats's Collector.cycle(): read every host, rates,
  Redis writes, rollups, Channels pushes) and each host's read inside it, beside a bare
  getAllDomainStats of the same host, and beside the per-VM way (info() per domain);
- the libvirt calls a cycle makes: bulk calls per host, and calls on single domains
  (counted by wrapping libvirt's methods);
- cycles while one more host accepts connections and never answers (a host behind a dead
  link), beside the same cycles without it: the hung host may stretch one cycle, by two
  intervals at most, never by its connect timeout (tests/monitoring/test_collector.py
  checks only that no cycle waits for the timeout, a bound far above any speed);
- the server time of a VM's page plus its stats request with a day of history
  (`/vms/<id>/` + `/api/v1/vms/<id>/stats/?range=1d`, through Django's full stack, in
  process), beside the VM page alone;
- the Redis memory one VM's full retention takes (an hour of 5 s points, a day of
  minutes, 30 days of quarter hours).

Run from the repository root:

    .venv/bin/python benchmarks/monitoring.py
    .venv/bin/python benchmarks/monitoring.py --vms 200 --hosts 2 --cycles 5   # quick

Everything lives in a temporary directory (database, var dir, node files); Redis keys go
under a prefix of this run (bench-<pid>) and are deleted at the end. Only loopback is used.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as kit  # noqa: E402 - the same report as the other benchmarks
import simhosts  # noqa: E402 - the same node files as vm_inventory.py
from common import bench_environment, migrate_and_collect_static  # noqa: E402

GOAL_HOST_READ_MS = 100.0
GOAL_PAGE_MS = 50.0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vms", type=int, default=1000, help="running VMs in all (1000)")
    p.add_argument("--hosts", type=int, default=1, help="simulated hosts sharing them (1)")
    p.add_argument("--cycles", type=int, default=20, help="collector cycles timed (20)")
    p.add_argument("--requests", type=int, default=50, help="page requests timed (50)")
    return p.parse_args()


class CallCounter:
    """Counts calls of libvirt methods while installed: bulk ones and per-domain ones."""

    PER_DOMAIN = (
        "info",
        "state",
        "XMLDesc",
        "blockStats",
        "blockStatsFlags",
        "interfaceStats",
        "memoryStats",
        "getCPUStats",
        "vcpus",
        "isActive",
        "blockInfo",
    )

    def __init__(self) -> None:
        import libvirt

        self.libvirt = libvirt
        self.counts: dict[str, int] = {}
        self.saved: list[tuple[type, str, object]] = []

    def _wrap(self, cls: type, name: str, label: str) -> None:
        original = getattr(cls, name)

        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.counts[label] = self.counts.get(label, 0) + 1
            return original(*args, **kwargs)

        self.saved.append((cls, name, original))
        setattr(cls, name, wrapper)

    def __enter__(self) -> CallCounter:
        self._wrap(self.libvirt.virConnect, "getAllDomainStats", "bulk")
        for name in self.PER_DOMAIN:
            self._wrap(self.libvirt.virDomain, name, "per-domain")
        return self

    def __exit__(self, *exc: object) -> None:
        for cls, name, original in reversed(self.saved):
            setattr(cls, name, original)


def main() -> int:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="panel-bench-mon-"))
    bench_environment(tmp)
    report = kit.Report()
    started = time.monotonic()
    try:
        run(args, tmp, report)
    finally:
        cleanup_redis()
        shutil.rmtree(tmp, ignore_errors=True)
    kit.say(f"\nwhole run: {time.monotonic() - started:.0f} s; load average now {kit.loadavg()}")
    kit.say("\n" + report.table())
    return 0


def cleanup_redis() -> None:
    try:
        from monitoring.store import StatsStore
    except Exception:  # noqa: BLE001 - Django never came up: nothing was written
        return
    store = StatsStore()
    keys = list(store.client.scan_iter(f"{store.prefix}:*"))
    if keys:
        store.client.delete(*keys)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def run(args: argparse.Namespace, tmp: Path, report: kit.Report) -> None:
    import django

    django.setup()

    kit.say(f"monitoring benchmark: {args.vms} running VMs on {args.hosts} simulated host(s)")
    kit.say(f"  {os.cpu_count()} CPUs, load average {kit.loadavg()}; work dir {tmp}")
    migrate_and_collect_static()
    hosts = running_hosts(args, tmp)
    kit.phase("Baseline: bare libvirt on the same hosts")
    bare_libvirt(args, hosts, report)
    kit.phase(f"Collector: {args.cycles} cycles")
    collector = collector_cycles(args, hosts, report)
    hung_host(collector, report)
    kit.phase("A VM page with a day of history")
    vm_id = next(iter(collector.previous[hosts[0].pk].domains)).uuid
    day_of_history(args, vm_id, report)
    vm_page(args, vm_id, report)


def running_hosts(args: argparse.Namespace, tmp: Path) -> list:
    """The simulated hosts with every domain running, recorded and synced."""
    from panel import hypervisor
    from panel.choices import HostState
    from panel.models import Host
    from vms.services import sync_domains

    # Every domain running: the collector reads only active ones.
    simhosts.vm_state = lambda g: "running"
    paths = simhosts.write_nodes(tmp / "nodes", args.vms, args.hosts)
    hosts = [
        Host.objects.create(name=f"sim-{n + 1:02d}", uri=f"test://{p}", state=HostState.UP)
        for n, p in enumerate(paths)
    ]
    for host in hosts:
        sync_domains(host, hypervisor.list_domains(host.uri))
    return hosts


def bare_libvirt(args: argparse.Namespace, hosts: list, report: kit.Report) -> None:
    """The baseline: getAllDomainStats of each host, and the per-VM way (info() per domain)."""
    import libvirt

    from panel.hypervisor.stats import DOMAIN_STATS

    conns = [libvirt.open(h.uri) for h in hosts]
    bulk, per_vm = [], []
    for _ in range(args.cycles):
        for conn in conns:
            t = time.perf_counter()
            conn.getAllDomainStats(DOMAIN_STATS, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE)
            bulk.append(time.perf_counter() - t)
    for conn in conns:
        t = time.perf_counter()
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            dom.info()
        per_vm.append(time.perf_counter() - t)
    kit.say(f"  getAllDomainStats per host: median {ms(statistics.median(bulk))}")
    kit.say(f"  listAllDomains + info() per domain, per host: {ms(statistics.median(per_vm))}")
    report.add("baseline: bare getAllDomainStats per host", ms(statistics.median(bulk)))
    report.add("baseline: list + info() per VM, per host", ms(statistics.median(per_vm)))


def collector_cycles(args: argparse.Namespace, hosts: list, report: kit.Report) -> Any:
    """args.cycles collector cycles, their libvirt calls counted; returns the collector."""
    from monitoring.collector import Collector

    collector = Collector(step=5)
    collector.cycle()  # the first reading has nothing to compare with: no rates yet
    cycle_times, reads = [], []
    with CallCounter() as calls:
        for _ in range(args.cycles):
            t = time.perf_counter()
            made = collector.cycle()
            cycle_times.append(time.perf_counter() - t)
            reads += list(collector.timings.values())
    per_cycle_bulk = calls.counts.get("bulk", 0) / args.cycles
    per_domain = calls.counts.get("per-domain", 0)
    kit.say(f"  VM samples per cycle: {made}")
    kit.say(
        f"  host read (host_counters) median {ms(statistics.median(reads))}, max {ms(max(reads))}"
    )
    kit.say(
        f"  whole cycle (reads, rates, Redis, rollups, pushes) median {ms(statistics.median(cycle_times))}"
    )
    kit.say(
        f"  getAllDomainStats calls per cycle: {per_cycle_bulk:g}; per-domain calls: {per_domain}"
    )
    report.add(
        "collector: bulk calls per host per cycle",
        f"{per_cycle_bulk / len(hosts):g}",
        "1",
        per_cycle_bulk / len(hosts) == 1,
    )
    report.add("collector: per-VM libvirt calls", str(per_domain), "0", per_domain == 0)
    p95 = kit.percentile(reads, 95)
    report.add(
        f"collector: host read, {args.vms // args.hosts} VMs (median)",
        ms(statistics.median(reads)),
    )
    report.add(
        f"collector: host read, {args.vms // args.hosts} VMs (p95 of {len(reads)})",
        ms(p95),
        f"< {GOAL_HOST_READ_MS:.0f} ms",
        p95 * 1000 < GOAL_HOST_READ_MS,
    )
    report.add(
        f"collector: whole cycle, {made} VM samples (median)",
        ms(statistics.median(cycle_times)),
        "< 5 s interval",
        max(cycle_times) < 5,
    )
    return collector


def day_of_history(args: argparse.Namespace, vm_id: str, report: kit.Report) -> None:
    """A VM's full retention written to Redis (an hour of 5 s points, a day of minutes, 30
    days of quarter hours), and the memory it takes."""
    from monitoring.series import ROLLUPS, VM_FIELDS, tiers
    from monitoring.store import StatsStore

    store = StatsStore(step=5)
    now = time.time()
    # Plausible figures for a busy VM: as long as real ones, not all zeros.
    values = dict(
        zip(
            VM_FIELDS,
            (37.42, 1610612736, 2147483648, 2147483648, 1843200, 524288, 112.4, 38.6, 95312, 18734),
            strict=True,
        )
    )
    raw_tier, (day_tier, month_tier) = tiers(5)[0], ROLLUPS
    pipe = store.client.pipeline(transaction=False)
    for tier, count in ((raw_tier, 720), (day_tier, 1440), (month_tier, 2880)):
        key = store.key("vm", vm_id, tier)
        pipe.delete(key)
        for i in range(count):
            pipe.rpush(key, store._point("vm", now - (count - i) * tier.step, values))
    pipe.execute()
    store.write([("vm", vm_id, now, values)])
    memory = sum(
        store.client.memory_usage(store.key("vm", vm_id, t)) or 0 for t in (raw_tier, *ROLLUPS)
    )
    kit.say(f"  Redis memory for one VM's full retention: {memory / 1024:.0f} KiB")
    report.add(
        f"store: Redis memory per VM (full retention), x{args.vms}",
        f"{memory / 1024:.0f} KiB, {memory * args.vms / 1024**2:.0f} MiB",
    )


def vm_page(args: argparse.Namespace, vm_id: str, report: kit.Report) -> None:
    """The VM's page plus its stats request with a day of history, beside the page alone."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    admin = get_user_model().objects.create_superuser("bench-admin", "b@example.test", "x")
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(admin)
    page, stats = [], []
    for i in range(args.requests + 3):
        t = time.perf_counter()
        r1 = client.get(f"/vms/{vm_id}/")
        t1 = time.perf_counter()
        r2 = client.get(f"/api/v1/vms/{vm_id}/stats/", {"range": "1d"})
        t2 = time.perf_counter()
        assert r1.status_code == 200 and r2.status_code == 200, (r1.status_code, r2.status_code)
        if i >= 3:  # warm-up
            page.append(t1 - t)
            stats.append(t2 - t1)
    points = len(json.loads(r2.content)["history"]["points"])
    p95_page, p95_stats = kit.percentile(page, 95), kit.percentile(stats, 95)
    kit.say(
        f"  VM page alone p95 {ms(p95_page)}; stats ?range=1d ({points} points) p95 {ms(p95_stats)}"
    )
    report.add("baseline: VM page alone (p95)", ms(p95_page))
    report.add(
        f"VM page + a day of history ({points} points), p95",
        ms(p95_page + p95_stats),
        f"< {GOAL_PAGE_MS:.0f} ms",
        (p95_page + p95_stats) * 1000 < GOAL_PAGE_MS,
    )
    report.add("  of which the stats request (p95)", ms(p95_stats))


def hung_host(collector, report: kit.Report) -> None:  # type: ignore[no-untyped-def]
    """Cycles with a host that accepts the connection and never answers, beside the same
    cycles without it, until its connect has timed out and a few more."""
    step = collector.step
    connect_timeout = 4 * step  # longer than the two intervals a cycle waits for a host
    kit.phase(f"A host that hangs (connect timeout {connect_timeout} s, interval {step} s)")
    baseline = []
    for _ in range(3):
        t = time.perf_counter()
        collector.cycle()
        baseline.append(time.perf_counter() - t)
    cycles, made, hung_failed = cycles_with_hung_host(collector, connect_timeout)
    base = statistics.median(baseline)
    stretched = [c for c in cycles if c > base + step]
    kit.say(
        f"  {len(cycles)} cycles: median {ms(statistics.median(cycles))}, max {ms(max(cycles))} "
        f"(without the hung host: median {ms(base)}); VM samples per cycle {min(made)}-{max(made)}"
    )
    kit.say(f"  the hung host failed: {hung_failed}")
    report.add("baseline: whole cycle without a hung host (median)", ms(base))
    # A cycle waits two intervals at most for a host, then does its usual work (which
    # must fit well inside an interval anyway): half an interval is left for that.
    report.add(
        "collector: longest cycle with a hung host",
        ms(max(cycles)),
        f"< 2.5 intervals ({2.5 * step:g} s)",
        max(cycles) < 2.5 * step,
    )
    report.add(
        "collector: cycles a hung host stretched",
        str(len(stretched)),
        "<= 1",
        len(stretched) <= 1,
    )


def cycles_with_hung_host(collector, connect_timeout: int) -> tuple[list[float], list[int], bool]:  # type: ignore[no-untyped-def]
    """Collector cycles on the beat while one more host listens on loopback and never
    answers (its Host deleted at the end): (cycle seconds, VM samples of each, whether
    the collector marked that host failing)."""
    import socket

    from django.test import override_settings

    from panel.choices import HostState
    from panel.models import Host

    step = collector.step
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    hung = Host.objects.create(
        name="bench-hung",
        uri=f"qemu+tcp://127.0.0.1:{silent.getsockname()[1]}/system",
        state=HostState.UP,
    )
    cycles, made, after = [], [], 0
    try:
        with override_settings(PANEL_CONNECT_TIMEOUT=connect_timeout):
            deadline = time.monotonic() + 3 * connect_timeout + 2 * step
            while after < 3 and time.monotonic() < deadline:
                after += hung.pk in collector.failing
                t = time.perf_counter()
                made.append(collector.cycle())
                cycles.append(time.perf_counter() - t)
                time.sleep(max(0.0, step - cycles[-1]))  # on the beat, as run() keeps it
    finally:
        failed = after > 0 or hung.pk in collector.failing
        hung.delete()
        silent.close()
    return cycles, made, failed


if __name__ == "__main__":
    sys.exit(main())
