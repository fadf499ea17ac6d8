"""The processes host_leases.py runs and what it reads of them: each watcher, collector
and the web server with its log (Proc), starting and stopping them together (Run), the
lease table's live holders, and waiting until the hosts are shared out evenly, every
watcher watches its share, or the collectors have timed enough cycles over theirs."""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchkit import REPO_ROOT
from common import free_port, wait_port, web_server

WAIT_S = 90.0
CYCLE = re.compile(r"cycle: (\d+) hosts, \d+ VM samples in ([\d.]+) s")
WATCHING = re.compile(r"watching (\d+) hosts")


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
    """The watchers and collectors of the run (and the web server, when the real host is
    measured), with the environment each role runs in."""

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
