#!/usr/bin/env python
"""VM inventory at scale: sync, memory, event latency (the pages: pages.py).

Fills simulated hosts (libvirt's test:/// driver, one generated node XML file
per host) with VMs, syncs them into a database of its own, then measures:

- the raw libvirt list + info of those domains (the baseline), bare and
  through panel.hypervisor;
- sync_domains() of all of them: first (all new), again (nothing changed),
  and with 10% of the rows stale;
- the peak RSS of the web server (after 80 list pages) and of the host watcher (manage.py watch_hosts)
  holding that inventory, beside bare libvirt holding the same hosts;
- with --real: the time from a libvirt call on qemu:///system returning to
  the browser's websocket receiving the new state, beside the time libvirt's
  own event reaches a client.

Run from the repository root:

    .venv/bin/python benchmarks/vm_inventory.py
    .venv/bin/python benchmarks/vm_inventory.py --real

Everything lives in a temporary directory (database, var dir, node XML files,
logs); the developer's database is never opened. Only loopback is used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchkit import (
    Processes,
    Report,
    Timer,
    loadavg,
    mib,
    phase,
    proc_status,
    say,
    timed,
    wait_http,
)
from common import (
    bench_environment,
    free_port,
    make_session,
    migrate_and_collect_static,
    web_server,
)
from inventory_sync import (
    bare_libvirt_baseline,
    panel_list_baseline,
    reconcile_phase,
    sync_phases,
)
from real_events import GOAL_EVENT_P95_S, REAL_URI, real_latency, real_prerequisites
from simhosts import write_nodes

GOAL_RSS_MIB = 300.0
WATCH_UP_S = 60.0  # the longest the watcher gets to bring every host up


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vms", type=int, default=10_000, help="VMs in total (default 10000)")
    p.add_argument("--hosts", type=int, default=20, help="simulated hosts (default 20)")
    p.add_argument("--watch-seconds", type=float, default=10.0, help="how long the watcher runs")
    p.add_argument(
        "--real",
        action="store_true",
        help="also measure event-to-browser latency on qemu:///system with the tiny guest",
    )
    p.add_argument("--rounds", type=int, default=10, help="start/destroy rounds for --real")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="panel-bench-"))
    bench_environment(tmp)
    # A Celery queue of our own too: no one else's workers take our tasks.
    os.environ["PANEL_CELERY_QUEUE"] = f"bench-{os.getpid()}"

    procs = Processes()
    report = Report()
    started = time.monotonic()
    try:
        run(args, tmp, procs, report)
    finally:
        procs.stop_all()
        if args.keep:
            say(f"\nkept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    say(f"\nwhole run: {time.monotonic() - started:.0f} s; load average now {loadavg()}")
    say("\n" + report.table())
    return 0


def run(args: argparse.Namespace, tmp: Path, procs: Processes, report: Report) -> None:
    import django

    django.setup()
    from django.conf import settings

    say(f"panel benchmark: {args.vms} VMs on {args.hosts} simulated hosts; work dir {tmp}")
    say(
        f"  {os.cpu_count()} CPUs, load average {loadavg()} (other work on the machine skews the timings)"
    )
    say(f"  database {settings.DATABASES['default']['NAME']}, redis {settings.REDIS_URL}")
    with timed() as t:
        migrate_and_collect_static()
    say(f"  migrate + collectstatic {t[0]:.1f} s")

    bench = Inventory.set_up(args, tmp, procs, report)
    phase("[1] raw libvirt list + info (baseline)")
    bare_rss = bare_libvirt_baseline(bench.uris, report, args.vms)
    panel_list_baseline(bench.uris, report)
    phase("[2] sync_domains (list_domains + sync, per host, all hosts)")
    pks = sync_phases(args.vms, bench.hosts, report)
    reconcile_phase(bench.hosts, report)
    bench.give_half_to_team(pks)
    phase("[3] the web server: memory with the inventory (pages: benchmarks/pages.py)")
    bench.web_memory()
    phase("[4] host watcher (manage.py watch_hosts) holding the inventory")
    bench.watcher_memory(bare_rss)
    if args.real:
        phase(
            "[5] event-to-browser latency on qemu:///system (watcher -> Redis -> web server -> websocket)"
        )
        bench.event_to_browser()
    bench.show_tracebacks()


@dataclass
class Inventory:
    """The run's simulated hosts, its users and the processes holding the inventory."""

    args: argparse.Namespace
    tmp: Path
    procs: Processes
    report: Report
    uris: list[str]
    hosts: list[Any]
    admin: Any
    team: Any
    env: dict[str, str] | None = None
    web: Any = None  # the web server's Popen
    port: int = 0
    session: str = ""
    watcher: Any = None  # the watcher's Popen
    local: Any = None  # the Host row of qemu:///system, with --real when it can run
    real_skip: str = ""

    @classmethod
    def set_up(
        cls, args: argparse.Namespace, tmp: Path, procs: Processes, report: Report
    ) -> Inventory:
        """The node files, a Host row for each, an admin, and a member of a team."""
        from django.contrib.auth import get_user_model

        from panel.choices import HostState, ProjectRole
        from panel.models import Host, Membership, Project

        with timed() as t:
            node_paths = write_nodes(tmp / "nodes", args.vms, args.hosts)
        say(
            f"  wrote {len(node_paths)} node files ({sum(p.stat().st_size for p in node_paths) / 1e6:.1f} MB) in {t[0]:.1f} s"
        )
        uris = [f"test://{p}" for p in node_paths]
        hosts = [
            Host.objects.create(name=f"sim-{n + 1:02d}", uri=uri, state=HostState.UP)
            for n, uri in enumerate(uris)
        ]
        User = get_user_model()
        admin = User.objects.create_superuser(
            "bench-admin", "admin@bench.test", "bench-admin-pass-1"
        )
        member = User.objects.create_user(
            "bench-member", "member@bench.test", "bench-member-pass-1"
        )
        team = Project.objects.create(name="bench-team", description="half of the VMs")
        Membership.objects.create(user=member, project=team, role=ProjectRole.MEMBER)
        return cls(args, tmp, procs, report, uris, hosts, admin, team)

    def give_half_to_team(self, pks: list[Any]) -> None:
        """Half the VMs (every other one by name) to the member's project."""
        from vms.models import VirtualMachine

        half = pks[::2]
        for i in range(0, len(half), 500):
            VirtualMachine.objects.filter(pk__in=half[i : i + 500]).update(project=self.team)
        say(
            f"  assigned {len(half)} VMs to project {self.team.name}; bench process RSS peak {mib(proc_status(os.getpid())['VmHWM']):.0f} MiB"
        )

    # --- [3] the web server holding the inventory (the pages are timed by pages.py) ---

    def web_memory(self) -> None:
        self.env = dict(os.environ)
        self.port = free_port()
        web_log = self.tmp / "web.log"
        web = self.web = self.procs.start("web", web_server(self.port), self.env, web_log)
        wait_http(self.port, web, web_log)
        web_rss_start = proc_status(web.pid)
        self.session = make_session(self.admin)
        timer = Timer(self.port)
        cookie = {"Cookie": f"sessionid={self.session}"}
        for page in range(1, 41):
            timer.get(f"/vms/?page={page}", cookie)
            timer.get(
                f"/api/v1/vms/?page={page}&page_size=50", dict(cookie, Accept="application/json")
            )
        timer.conn.close()
        web_rss = proc_status(web.pid)
        say(
            f"  web server pid {web.pid}: RSS after start {mib(web_rss_start['VmRSS']):.0f} MiB, "
            f"peak after 80 list pages {mib(web_rss['VmHWM']):.0f} MiB"
        )
        self.report.add(
            "web server peak RSS (VmHWM) after 80 list pages",
            f"{mib(web_rss['VmHWM']):.0f} MiB",
            f"< {GOAL_RSS_MIB:.0f} MiB",
            mib(web_rss["VmHWM"]) < GOAL_RSS_MIB,
        )
        self.report.add(
            "baseline: web server RSS right after start", f"{mib(web_rss_start['VmRSS']):.0f} MiB"
        )

    # --- [4] the watcher ---

    def watcher_memory(self, bare_rss: dict[str, float]) -> None:
        from panel.choices import HostState
        from panel.models import Host
        from vms.models import VirtualMachine

        if self.args.real:
            self.real_skip = real_prerequisites()
            if not self.real_skip:
                self.local = Host.objects.create(name="local", uri=REAL_URI, state=HostState.UP)
        sim_ids = [h.pk for h in self.hosts]
        # Marked down, so the watcher's first rescan runs its catch-up reconcile of every host.
        Host.objects.filter(pk__in=sim_ids).update(state=HostState.DOWN)
        vm_count = VirtualMachine.objects.count()
        assert self.env is not None
        self.watcher = self.procs.start(
            "watcher",
            [sys.executable, "manage.py", "watch_hosts"],
            dict(self.env, PANEL_LOG_LEVEL="INFO"),
            self.tmp / "watcher.log",
        )
        t0 = time.monotonic()
        caught_up = self.wait_caught_up(sim_ids, t0)
        while time.monotonic() - t0 < self.args.watch_seconds:
            time.sleep(0.2)
        assert VirtualMachine.objects.count() == vm_count
        missing = VirtualMachine.objects.filter(state="missing").count()
        w_rss = proc_status(self.watcher.pid)
        say(
            f"  after {time.monotonic() - t0:.0f} s: watcher RSS {mib(w_rss['VmRSS']):.0f} MiB, "
            f"peak (VmHWM) {mib(w_rss['VmHWM']):.0f} MiB; VMs marked missing: {missing}"
        )
        if caught_up is not None:
            self.report.add(
                f"watcher catch-up reconcile of {self.args.hosts} hosts", f"{caught_up:.1f} s"
            )
        self.report.add(
            "watcher peak RSS (VmHWM)",
            f"{mib(w_rss['VmHWM']):.0f} MiB",
            f"< {GOAL_RSS_MIB:.0f} MiB",
            mib(w_rss["VmHWM"]) < GOAL_RSS_MIB,
        )
        self.without_test_driver(mib(w_rss["VmHWM"]), bare_rss)

    def wait_caught_up(self, sim_ids: list[int], t0: float) -> float | None:
        """Seconds from t0 until the watcher has brought every simulated host up (None: not
        within a minute, or --watch-seconds if longer)."""
        from panel.choices import HostState
        from panel.models import Host

        caught_up = None
        while time.monotonic() - t0 < max(self.args.watch_seconds, WATCH_UP_S):
            if self.watcher.poll() is not None:
                log = self.tmp / "watcher.log"
                raise RuntimeError("the watcher exited:\n" + log.read_text()[-3000:])
            if Host.objects.filter(pk__in=sim_ids, state=HostState.UP).count() == len(sim_ids):
                caught_up = time.monotonic() - t0
                break
            time.sleep(0.1)
        if caught_up is None:
            down = list(
                Host.objects.filter(pk__in=sim_ids)
                .exclude(state=HostState.UP)
                .values_list("name", "last_error")[:3]
            )
            say(f"  the watcher did not bring every host up within 60 s: {down}")
        else:
            say(
                f"  watcher subscribed to {len(sim_ids)} simulated hosts and reconciled them in {caught_up:.1f} s"
            )
        return caught_up

    def without_test_driver(self, watcher_hwm: float, bare_rss: dict[str, float]) -> None:
        """The watcher's peak less the fake hosts the test driver keeps in its memory."""
        # With test:/// every connection is a fake host inside the process that opened it, and
        # the watcher opens every URI twice: its Watch, and the pooled connection that
        # reconcile_host and get_domain use. A real host keeps its domains in its libvirtd,
        # not in the watcher.
        driver_share = 2 * (bare_rss["hwm_one"] - bare_rss["hwm_empty"])
        say(
            f"  the watcher opens every URI twice (its Watch, and the pooled connection of "
            f"reconcile_host/get_domain); with test:/// each is a fake host in the watcher's own "
            f"memory: 2 x {bare_rss['hwm_one'] - bare_rss['hwm_empty']:.0f} MiB by the bare libvirt "
            f"baseline; the watcher without them: {watcher_hwm - driver_share:.0f} MiB"
        )
        self.report.add(
            f"baseline: test driver memory of the {self.args.hosts} hosts, x2",
            f"{driver_share:.0f} MiB",
        )
        self.report.add(
            "watcher peak RSS minus the test driver's fake hosts",
            f"{watcher_hwm - driver_share:.0f} MiB",
            f"< {GOAL_RSS_MIB:.0f} MiB",
            None,
        )

    # --- [5] event to browser on the real libvirtd ---

    def event_to_browser(self) -> None:
        if self.real_skip:
            say(f"  SKIPPED: {self.real_skip}")
            self.report.add(
                "event to browser p95 (real libvirtd)",
                "skipped",
                f"< {GOAL_EVENT_P95_S:.0f} s",
                False,
            )
            return
        assert self.local is not None
        real_latency(self.args, self.port, self.session, self.local.pk, self.report)
        w_rss = proc_status(self.watcher.pid)
        web_rss = proc_status(self.web.pid)
        say(
            f"  at the end: watcher peak {mib(w_rss['VmHWM']):.0f} MiB, web server peak {mib(web_rss['VmHWM']):.0f} MiB"
        )

    def show_tracebacks(self) -> None:
        for name, path in (("web", self.tmp / "web.log"), ("watcher", self.tmp / "watcher.log")):
            text = path.read_text(errors="replace")
            if "Traceback" in text:
                say(f"\n--- {name} log had a traceback ---\n{text[-3000:]}")


if __name__ == "__main__":
    sys.exit(main())
