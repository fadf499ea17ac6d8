#!/usr/bin/env python
"""Host leases at scale: 500 simulated hosts shared out among watcher and collector processes.

Fills simulated hosts (libvirt's test:/// driver, one small node file per host, a few
running domains each), registers them, then runs the real processes (`manage.py
watch_hosts`, `manage.py collect_stats`) and reads the lease table (panel/leases.py)
and their logs:

- baseline: one watcher and one collector holding every host: the time from their start
  until each holds every host's lease and the watcher watches them all, and the
  collector's cycle time over all the hosts against its interval;
- shared: --processes watchers and as many collectors started together: the time until
  the hosts are shared out evenly, the hosts each process holds, the time until every
  watcher watches its share, and each collector's cycle time over its share;
- one watcher and one collector killed with SIGKILL: the time until every host has
  exactly one live holder again (goal: within 15 s), the hosts each survivor holds, the
  catch-up reconciles the surviving watchers queued, and the surviving collectors' cycle
  times over their larger shares;
- the real local host too (unless --no-real, or the tiny guest is missing): qemu:///system
  is one more Host row, leased like the others, and the web server runs. While the
  watchers share the hosts, and again after the kill of the watcher (and the collector)
  that held the real host, once every host has one live holder again: the time from a
  libvirt start or destroy of the tiny guest (transient domains paneltest-bench-*) until
  an admin's websocket on /ws/hosts/<id>/ shows the new state (goal p95 < 1 s), beside
  libvirt's own event reaching a bare client (vm_inventory.real_latency).

Run from the repository root:

    .venv/bin/python benchmarks/host_leases.py
    .venv/bin/python benchmarks/host_leases.py --hosts 40 --processes 2 --cycles 2   # quick
    .venv/bin/python benchmarks/host_leases.py --no-real    # no libvirtd, no web server

Redis: REDIS_URL, else database 13 of the panel's own (scripts/redis.sh --url 13).

Everything lives in a temporary directory (SQLite database, var dir, node files, logs);
the catch-up reconciles go to a Celery queue of this run that no worker takes, deleted at
the end with the run's stats keys. Only loopback is used; every paneltest-bench-* domain
is destroyed at the end, whatever happened.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vm_inventory as inv  # noqa: E402 - the same report and helpers as that benchmark
from common import (  # noqa: E402
    bench_environment,
    free_port,
    make_session,
    use_bench_redis,
    wait_port,
    web_server,
)

REPO_ROOT = inv.REPO_ROOT
GOAL_TAKEOVER_S = 15.0
WAIT_S = 90.0
CYCLE = re.compile(r"cycle: (\d+) hosts, \d+ VM samples in ([\d.]+) s")
WATCHING = re.compile(r"watching (\d+) hosts")
TOOK = re.compile(r"took \d+ \((\d+) from a previous holder\)")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=500, help="simulated hosts (500)")
    p.add_argument("--vms", type=int, default=2, help="running VMs per host (2)")
    p.add_argument("--processes", type=int, default=4, help="watchers, and collectors (4)")
    p.add_argument("--interval", type=int, default=5, help="collector interval, s (5)")
    p.add_argument("--cycles", type=int, default=3, help="collector cycles timed per phase (3)")
    p.add_argument(
        "--no-real",
        action="store_true",
        help="leave out the real host (qemu:///system) and the event-to-browser latency",
    )
    p.add_argument(
        "--rounds", type=int, default=10, help="start/destroy rounds per latency figure (10)"
    )
    return p.parse_args()


def node_xml(host_no: int, vms: int) -> str:
    """A small test:/// host: vms running domains without devices."""
    domains = "".join(
        "<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
        f"<name>h{host_no:03d}-vm{n}</name><uuid>{uuid.uuid4()}</uuid>"
        "<memory unit='MiB'>512</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>"
        "<test:runstate>1</test:runstate></domain>"
        for n in range(vms)
    )
    return (
        "<node><cpu><mhz>2400</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets>"
        f"<cores>8</cores><threads>2</threads></cpu><memory>67108864</memory>{domains}</node>"
    )


class Proc:
    """One watcher or collector process and its log."""

    def __init__(self, role: str, n: int, argv: list[str], env: dict[str, str], logs: Path):
        self.label = f"{role}-{n}"
        self.log = logs / f"{self.label}.log"
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.pid = self.popen.pid

    def text(self, since: int = 0) -> str:
        with self.log.open("rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")

    def size(self) -> int:
        return self.log.stat().st_size

    def check(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.label} exited:\n{self.text()[-3000:]}")

    def cycles(self, since: int) -> list[tuple[int, float]]:
        """(hosts, seconds) of each collector cycle logged since the offset."""
        return [(int(h), float(s)) for h, s in CYCLE.findall(self.text(since))]

    def watching(self) -> int:
        found = WATCHING.findall(self.text())
        return int(found[-1]) if found else 0

    def terminate(self) -> float:
        started = time.monotonic()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return time.monotonic() - started


class Run:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.procs: list[Proc] = []
        self.web: Proc | None = None
        env = dict(os.environ)
        env["PANEL_CELERY_QUEUE"] = f"bench-leases-{os.getpid()}"
        self.env = {
            "watcher": {**env, "PANEL_LOG_LEVEL": "INFO"},
            # The collector logs each cycle's time at DEBUG.
            "collector": {**env, "PANEL_LOG_LEVEL": "DEBUG"},
        }

    def start(self, role: str, count: int) -> list[Proc]:
        command = (
            ["watch_hosts"]
            if role == "watcher"
            else ["collect_stats", "--interval", str(self.args.interval)]
        )
        started = []
        for _ in range(count):
            n = sum(1 for p in self.procs if p.label.startswith(role))
            proc = Proc(role, n, [sys.executable, "manage.py", *command], self.env[role], self.logs)
            self.procs.append(proc)
            started.append(proc)
        return started

    def start_web(self) -> int:
        """The web server on a free loopback port; returns the port once it listens."""
        port = free_port()
        self.web = Proc("web", 0, web_server(port), self.env["watcher"], self.logs)
        wait_port(port, timeout=60)
        self.web.check()
        return port

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.terminate()
        if self.web is not None:
            self.web.terminate()


def holders(role: str) -> dict[int, int]:
    """{host id: pid of its live holder} from the lease table."""
    from panel.leases import database_now
    from panel.models import HostLease

    now = database_now()
    return {
        host: int(owner.split(":")[1])
        for host, owner in HostLease.objects.filter(role=role, expires_at__gte=now).values_list(
            "host_id", "owner"
        )
    }


def evenly_held(role: str, procs: list[Proc], hosts: int) -> list[int] | None:
    """Hosts per process (in the order of procs) once every host has one of them as its
    holder and no two shares differ by more than one; else None."""
    for proc in procs:
        proc.check()
    held = holders(role)
    counts = collections.Counter(held.values())
    if len(held) != hosts or set(counts) != {p.pid for p in procs}:
        return None
    per_proc = [counts[p.pid] for p in procs]
    return per_proc if max(per_proc) - min(per_proc) <= 1 else None


def all_watching(watchers: list[Proc], hosts: int) -> bool:
    """Every host is held evenly and each watcher says it watches as many as it holds."""
    held = evenly_held("watcher", watchers, hosts)
    return held is not None and [w.watching() for w in watchers] == held


def wait(what: str, probe, since: float):  # type: ignore[no-untyped-def]
    """(seconds since `since` when probe() first gave something true, what it gave)."""
    while True:
        result = probe()
        if result:
            return time.monotonic() - since, result
        if time.monotonic() - since > WAIT_S:
            raise RuntimeError(f"{what}: not within {WAIT_S:.0f} s")
        time.sleep(0.1)


def collector_cycles(
    procs: list[Proc], offsets: dict[str, int], shares: dict[str, int], count: int
) -> dict[str, list[float]]:
    """Each collector's next `count` cycle times over its whole share (the first one over
    it is left out: it opens the connections to hosts it just took)."""

    def enough() -> dict[str, list[float]] | None:
        found = {}
        for proc in procs:
            proc.check()
            full = [s for h, s in proc.cycles(offsets[proc.label]) if h == shares[proc.label]]
            if len(full) < count + 1:
                return None
            found[proc.label] = full[1 : count + 1]
        return found

    _, times = wait("collector cycles over the whole share", enough, time.monotonic())
    return times


def describe_cycles(times: dict[str, list[float]], interval: int) -> str:
    every = [t for ts in times.values() for t in ts]
    return (
        f"median {statistics.median(every):.2f} s, max {max(every):.2f} s "
        f"of a {interval} s interval"
    )


def main() -> int:
    args = parse_args()
    use_bench_redis()
    tmp = Path(tempfile.mkdtemp(prefix="panel-bench-leases-"))
    bench_environment(tmp)
    report = inv.Report()
    started = time.monotonic()
    run = None
    # Why the real host is left out ('' when it is measured).
    real_skip = "--no-real" if args.no_real else inv.real_prerequisites()
    try:
        import django

        django.setup()
        run = Run(args, tmp)
        measure(args, tmp, run, report, real_skip)
    finally:
        if not real_skip:
            try:
                inv.remove_real_domains()
            except Exception as exc:  # noqa: BLE001 - say so, and clean up the rest
                inv.say(f"could not remove the {inv.REAL_PREFIX}* domains: {exc}")
        if run is not None:
            run.stop_all()
        try:
            cleanup_redis()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    inv.say(f"\nwhole run: {time.monotonic() - started:.0f} s; load average now {inv.loadavg()}")
    inv.say("\n" + report.table())
    return 0


def cleanup_redis() -> None:
    try:
        from monitoring.store import StatsStore
    except Exception:  # noqa: BLE001 - Django never came up: nothing was written
        return
    store = StatsStore()
    keys = list(store.client.scan_iter(f"{store.prefix}:*"))
    # The catch-up reconciles nobody takes, on the run's queue (or its long one).
    keys += [f"bench-leases-{os.getpid()}", f"bench-leases-{os.getpid()}.long"]
    store.client.delete(*keys)


class RealHost:
    """The real local host, leased like the simulated ones, and the event-to-browser
    latency measured on it through the web server (vm_inventory.real_latency)."""

    def __init__(self, args: argparse.Namespace, run: Run, skip: str) -> None:
        self.args = args
        self.run = run
        self.skip = skip
        self.host_id = 0
        self.port = 0
        self.session = ""

    def register(self) -> None:
        """One more Host row, and an admin whose browser watches it."""
        if self.skip:
            return
        from django.contrib.auth import get_user_model

        from panel.choices import HostState
        from panel.models import Host

        self.host_id = Host.objects.create(name="local", uri=inv.REAL_URI, state=HostState.UP).pk
        admin = get_user_model().objects.create_superuser(
            "bench-admin", "admin@bench.test", "bench-admin-pass-1"
        )
        self.session = make_session(admin)

    def start_web(self) -> None:
        if not self.skip:
            self.port = self.run.start_web()

    def holder(self, role: str, procs: list[Proc]) -> Proc | None:
        """The process of procs holding the real host's lease of role (None: not measured)."""
        if self.skip:
            return None
        pid = holders(role)[self.host_id]
        return next(p for p in procs if p.pid == pid)

    def latency(self, label: str, report: inv.Report) -> None:
        if self.skip:
            inv.say(f"  event to browser, {label}: SKIPPED ({self.skip})")
            report.add(
                f"event to browser p95 (real libvirtd, {label})",
                f"skipped: {self.skip}",
                f"< {inv.GOAL_EVENT_P95_S * 1000:.0f} ms",
            )
            return
        assert self.run.web is not None
        self.run.web.check()
        inv.say(f"  event to browser on {inv.REAL_URI}, {label}: {self.args.rounds} rounds")
        inv.real_latency(self.args, self.port, self.session, self.host_id, report, label)


def measure(
    args: argparse.Namespace, tmp: Path, run: Run, report: inv.Report, real_skip: str
) -> None:
    from django.core.management import call_command

    from panel.choices import HostState
    from panel.leases import HEARTBEAT_SECONDS, LEASE_SECONDS
    from panel.models import Host, HostLease, ProcessHeartbeat

    n = args.hosts
    real = RealHost(args, run, real_skip)
    # Every host leased: the simulated ones, and the real one when it is measured.
    total = n if real_skip else n + 1
    with_real = "" if real_skip else f" + {inv.REAL_URI}"
    inv.say(
        f"host leases benchmark: {n} simulated hosts{with_real}, {args.vms} VMs each; "
        f"{args.processes} watchers and {args.processes} collectors"
    )
    inv.say(f"  {os.cpu_count()} CPUs, load average {inv.loadavg()}; work dir {tmp}")
    if real_skip:
        inv.say(f"  the real host and the event-to-browser latency are left out: {real_skip}")
    call_command("migrate", verbosity=0, interactive=False)
    nodes = tmp / "nodes"
    nodes.mkdir()
    hosts = []
    for i in range(n):
        path = nodes / f"node-{i:03d}.xml"
        path.write_text(node_xml(i, args.vms))
        hosts.append(Host(name=f"sim-{i:03d}", uri=f"test://{path}", state=HostState.UP))
    Host.objects.bulk_create(hosts)
    real.register()
    real.start_web()

    # --- baseline: one of each ---
    inv.phase("[1] baseline: one watcher and one collector hold every host")
    t0 = time.monotonic()
    (watcher,) = run.start("watcher", 1)
    (collector,) = run.start("collector", 1)
    t_lease, _ = wait(
        "one watcher holds every host", lambda: evenly_held("watcher", [watcher], total), t0
    )
    t_watch, _ = wait("it watches every host", lambda: watcher.watching() == total, t0)
    t_coll, _ = wait(
        "one collector holds every host",
        lambda: evenly_held("collector", [collector], total),
        t0,
    )
    times = collector_cycles(
        [collector], {collector.label: 0}, {collector.label: total}, args.cycles
    )
    inv.say(
        f"  watcher: holds every lease {t_lease:.1f} s after start, watches them all at {t_watch:.1f} s"
    )
    inv.say(f"  collector: holds every lease {t_coll:.1f} s after start; cycles {times}")
    report.add(f"baseline: 1 watcher holds all {total} hosts after start", f"{t_lease:.1f} s")
    report.add(f"baseline: 1 watcher watches all {total} hosts after start", f"{t_watch:.1f} s")
    report.add(
        f"baseline: 1 collector cycle over {total} hosts",
        describe_cycles(times, args.interval),
        f"< {args.interval} s",
        max(times[collector.label]) < args.interval,
    )
    stop_s = [watcher.terminate(), collector.terminate()]
    inv.say(f"  SIGTERM: gone after {max(stop_s):.1f} s")
    run.procs.clear()
    HostLease.objects.all().delete()
    ProcessHeartbeat.objects.all().delete()

    # --- shared ---
    p = args.processes
    inv.phase(f"[2] {p} watchers and {p} collectors started together")
    t0 = time.monotonic()
    watchers = run.start("watcher", p)
    collectors = run.start("collector", p)
    t_w, w_counts = wait(
        f"{p} watchers share the hosts", lambda: evenly_held("watcher", watchers, total), t0
    )
    t_c, c_counts = wait(
        f"{p} collectors share the hosts", lambda: evenly_held("collector", collectors, total), t0
    )
    t_ww, _ = wait("every watcher watches its share", lambda: all_watching(watchers, total), t0)
    inv.say(
        f"  watchers: shared out evenly after {t_w:.1f} s {w_counts}, all watching after {t_ww:.1f} s"
    )
    inv.say(f"  collectors: shared out evenly after {t_c:.1f} s {c_counts}")
    report.add(f"{p} watchers: shared out evenly after start", f"{t_w:.1f} s {w_counts}")
    report.add(f"{p} watchers: each watches its share after start", f"{t_ww:.1f} s")
    report.add(f"{p} collectors: shared out evenly after start", f"{t_c:.1f} s {c_counts}")
    # The cycles timed are those that run while the latency is measured.
    offsets = {c.label: c.size() for c in collectors}
    real.latency(f"{p} watchers", report)
    times = collector_cycles(
        collectors,
        offsets,
        {c.label: k for c, k in zip(collectors, c_counts, strict=True)},
        args.cycles,
    )
    report.add(
        f"{p} collectors: cycle over ~{total // p} hosts each",
        describe_cycles(times, args.interval),
        f"< {args.interval} s",
        max(t for ts in times.values() for t in ts) < args.interval,
    )

    # --- one of each killed ---
    inv.phase("[3] one watcher and one collector killed (SIGKILL)")
    # The holders of the real host, so that its take-over is what the latency then shows.
    w_victim = real.holder("watcher", watchers) or watchers[0]
    c_victim = real.holder("collector", collectors) or collectors[0]
    if not real_skip:
        inv.say(
            f"  killing {w_victim.label} (pid {w_victim.pid}) and {c_victim.label} "
            f"(pid {c_victim.pid}), the holders of {inv.REAL_URI}"
        )
    w_left = [w for w in watchers if w is not w_victim]
    c_left = [c for c in collectors if c is not c_victim]
    w_offsets = {w.label: w.size() for w in w_left}
    c_offsets = {c.label: c.size() for c in c_left}
    lost = (w_counts[watchers.index(w_victim)], c_counts[collectors.index(c_victim)])
    t0 = time.monotonic()
    w_victim.popen.kill()
    c_victim.popen.kill()
    w_victim.popen.wait(10)
    c_victim.popen.wait(10)
    run.procs.remove(w_victim)
    run.procs.remove(c_victim)
    t_w, w_counts = wait(
        "the surviving watchers hold every host",
        lambda: evenly_held("watcher", w_left, total),
        t0,
    )
    t_c, c_counts = wait(
        "the surviving collectors hold every host",
        lambda: evenly_held("collector", c_left, total),
        t0,
    )
    t_ww, _ = wait(
        "every surviving watcher watches its new share", lambda: all_watching(w_left, total), t0
    )
    caught_up = sum(int(x) for w in w_left for x in TOOK.findall(w.text(w_offsets[w.label])))
    bound = LEASE_SECONDS + HEARTBEAT_SECONDS
    inv.say(
        f"  watchers: every host has one live holder {t_w:.1f} s after the kill {w_counts}; "
        f"all watched at {t_ww:.1f} s; {caught_up} catch-up reconciles queued "
        f"(the killed one held {lost[0]})"
    )
    inv.say(f"  collectors: every host has one live holder {t_c:.1f} s after the kill {c_counts}")
    report.add("baseline: lease + heartbeat (the bound on a takeover)", f"{bound:.0f} s")
    report.add(
        "watchers: one live holder per host again after the kill",
        f"{t_w:.1f} s {w_counts}",
        f"< {GOAL_TAKEOVER_S:.0f} s",
        t_w < GOAL_TAKEOVER_S,
    )
    report.add("watchers: each watches its new share after the kill", f"{t_ww:.1f} s")
    report.add(
        "watchers: catch-up reconciles queued by the takers",
        f"{caught_up} (killed one held {lost[0]})",
    )
    report.add(
        "collectors: one live holder per host again after the kill",
        f"{t_c:.1f} s {c_counts}",
        f"< {GOAL_TAKEOVER_S:.0f} s",
        t_c < GOAL_TAKEOVER_S,
    )
    new_holder = real.holder("watcher", w_left)
    if new_holder is not None:
        inv.say(f"  {inv.REAL_URI} is now held by {new_holder.label} (pid {new_holder.pid})")
    left = f"{p - 1} watcher{'s' if p > 2 else ''}"
    real.latency(f"after the kill of its watcher, {left} left", report)
    times = collector_cycles(
        c_left, c_offsets, {c.label: k for c, k in zip(c_left, c_counts, strict=True)}, args.cycles
    )
    report.add(
        f"{p - 1} collectors: cycle over ~{total // (p - 1)} hosts each",
        describe_cycles(times, args.interval),
        f"< {args.interval} s",
        max(t for ts in times.values() for t in ts) < args.interval,
    )
    for proc in [*run.procs, *([run.web] if run.web else [])]:
        if "Traceback" in proc.text():
            inv.say(f"\n--- {proc.label} logged a traceback ---\n{proc.text()[-3000:]}")


if __name__ == "__main__":
    sys.exit(main())
