#!/usr/bin/env python
"""Load: 50 concurrent clients on the VM list and the dashboard for 60 s, on loopback.

Fills simulated hosts (libvirt's test:/// driver, the node files of
vm_inventory.py) with VMs, starts the web server as scripts/run.sh does (uvicorn, 2 processes),
and runs N keep-alive clients for a fixed time, each logged in with a session of
its own as one of --users accounts (half admins, half project members). Each
client loops over the VM list page, the VM API list (a page of 50) and the
dashboard. Printed: requests per second, p50/p95/p99 latency and
errors, beside a baseline measured in the same run with the same clients on
GET /login/ (a small page with no session or database work), which shows what
the server and the client loop cost by themselves on this machine.

The client loop runs in this process (asyncio, one connection per client);
it shares the machine's CPUs with the server, as a browser on the same
machine would. Every loop is bounded in time and in request count.

Run from the repository root:

    REDIS_URL=redis://127.0.0.1:6379/13 .venv/bin/python benchmarks/load.py
    .venv/bin/python benchmarks/load.py --clients 50 --seconds 60 --vms 300 --users 50
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vm_inventory as inv  # noqa: E402 - the same node files, processes and report
from _setup import bench_environment, web_server  # noqa: E402

REPO_ROOT = inv.REPO_ROOT
GOAL_RPS = 300.0
GOAL_P95_MS = 150.0
MAX_REQUESTS_PER_CLIENT = 20_000  # a bound on every loop besides the clock


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=50, help="concurrent clients (50)")
    p.add_argument("--seconds", type=float, default=60.0, help="length of each run (60)")
    p.add_argument("--baseline-seconds", type=float, default=20.0, help="baseline run (20)")
    p.add_argument("--vms", type=int, default=300, help="VMs in all (300)")
    p.add_argument("--hosts", type=int, default=3, help="simulated hosts sharing them (3)")
    p.add_argument(
        "--users", type=int, default=2, help="accounts the clients log in as, half admins (2)"
    )
    p.add_argument("--workers", type=int, default=2, help="web server processes (2, as run.sh)")
    return p.parse_args()


@dataclass
class Tally:
    times: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    per_path: dict[str, list[float]] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response: (status, body). Content-Length and chunked bodies."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    return status, await reader.read()


async def client(
    port: int, paths: list[tuple[str, dict[str, str]]], deadline: float, tally: Tally
) -> None:
    """Keep-alive GETs over paths, round robin from a random start, until the deadline."""
    reader = writer = None
    turn = random.randrange(len(paths))
    for _ in range(MAX_REQUESTS_PER_CLIENT):
        if time.monotonic() >= deadline:
            break
        path, headers = paths[turn % len(paths)]
        turn += 1
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        request += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        start = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request.encode())
            status, _body = await asyncio.wait_for(read_response(reader), 30)
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            tally.error(type(exc).__name__)
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        elapsed = time.perf_counter() - start
        if status != 200:
            tally.error(f"HTTP {status}")
            continue
        tally.times.append(elapsed)
        tally.per_path.setdefault(path.split("?")[0], []).append(elapsed)
    if writer is not None:
        writer.close()


def load(
    port: int, plans: list[list[tuple[str, dict[str, str]]]], seconds: float
) -> tuple[Tally, float]:
    tally = Tally()

    async def main() -> float:
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(client(port, plan, deadline, tally) for plan in plans))
        return time.monotonic() - started

    return tally, asyncio.run(main())


def summary(label: str, tally: Tally, wall: float, report: inv.Report, goals: bool) -> None:
    n = len(tally.times)
    rps = n / wall if wall else 0.0
    p50, p95, p99 = (inv.percentile(tally.times, q) * 1000 for q in (50, 95, 99))
    errors = sum(tally.errors.values())
    detail = ", ".join(f"{k} x{v}" for k, v in sorted(tally.errors.items())) or "none"
    inv.say(
        f"  {label:<34} {n:6d} ok in {wall:5.1f} s = {rps:6.1f} req/s   "
        f"p50 {p50:6.1f}  p95 {p95:6.1f}  p99 {p99:6.1f} ms   errors: {detail}"
    )
    for path, times in sorted(tally.per_path.items()):
        inv.say(
            f"    {path:<32} {len(times):6d} ok   p50 {inv.percentile(times, 50) * 1000:6.1f}  "
            f"p95 {inv.percentile(times, 95) * 1000:6.1f} ms"
        )
    report.add(
        f"{label}: throughput",
        f"{rps:.0f} req/s",
        f">= {GOAL_RPS:.0f} req/s" if goals else "",
        rps >= GOAL_RPS if goals else None,
    )
    report.add(
        f"{label}: p95 latency",
        f"{p95:.1f} ms (p50 {p50:.1f}, p99 {p99:.1f})",
        f"< {GOAL_P95_MS:.0f} ms" if goals else "",
        p95 < GOAL_P95_MS if goals else None,
    )
    report.add(
        f"{label}: errors", str(errors), "0" if goals else "", errors == 0 if goals else None
    )


def main() -> int:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="panel-bench-load-"))
    bench_environment(tmp)
    report = inv.Report()
    procs = inv.Processes()
    started = time.monotonic()
    try:
        run(args, tmp, procs, report)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    inv.say(f"\nwhole run: {time.monotonic() - started:.0f} s; load average now {inv.loadavg()}")
    inv.say("\n" + report.table())
    return 0


def run(args: argparse.Namespace, tmp: Path, procs: inv.Processes, report: inv.Report) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import override_settings

    inv.say(
        f"load benchmark: {args.clients} clients x {args.seconds:.0f} s; "
        f"{args.vms} VMs on {args.hosts} simulated hosts; work dir {tmp}"
    )
    inv.say(f"  {os.cpu_count()} CPUs, load average {inv.loadavg()}")
    call_command("migrate", verbosity=0, interactive=False)
    storages = dict(settings.STORAGES)
    storages["staticfiles"] = {
        "BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
    }
    with override_settings(STORAGES=storages):
        call_command("collectstatic", verbosity=0, interactive=False)

    from panel.choices import HostState, ProjectRole
    from panel.models import Host, Membership, Project
    from panel.services.hosts import reconcile_host
    from vms.models import VirtualMachine

    node_paths = inv.write_nodes(tmp / "nodes", args.vms, args.hosts)
    hosts = [
        Host.objects.create(name=f"sim-{n + 1:02d}", uri=f"test://{p}", state=HostState.UP)
        for n, p in enumerate(node_paths)
    ]
    for host in hosts:
        reconcile_host(host, checks=False)
    User = get_user_model()
    team = Project.objects.create(name="load-team", description="half of the VMs")
    # Half the accounts are admins, half are members of the team that has half the VMs.
    accounts = []
    for n in range(max(2, args.users)):
        if n % 2 == 0:
            user = User.objects.create_superuser(f"load-admin-{n}", f"a{n}@load.test", "x-pass-1")
        else:
            user = User.objects.create_user(f"load-member-{n}", f"m{n}@load.test", "x-pass-1")
            Membership.objects.create(user=user, project=team, role=ProjectRole.MEMBER)
        accounts.append(user)
    pks = list(VirtualMachine.objects.order_by("name").values_list("pk", flat=True))
    VirtualMachine.objects.filter(pk__in=pks[::2]).update(project=team)
    inv.say(f"  {VirtualMachine.objects.count()} VMs synced; half in {team.name}")

    port = inv.free_port()
    log = tmp / "web.log"
    web = procs.start(
        "web",
        web_server(port, args.workers),
        dict(os.environ),
        log,
    )
    inv.wait_http(port, web, log)

    from django.middleware.csrf import CSRF_ALLOWED_CHARS, CSRF_SECRET_LENGTH
    from django.utils.crypto import get_random_string

    def csrf_secret() -> str:
        return get_random_string(CSRF_SECRET_LENGTH, allowed_chars=CSRF_ALLOWED_CHARS)

    plans = []
    for n in range(args.clients):
        # Each client is a browser logged in on its own: its own session cookie and the
        # CSRF cookie its first page set.
        session = inv.make_session(accounts[n % len(accounts)])
        cookie = {"Cookie": f"sessionid={session}; csrftoken={csrf_secret()}"}
        plans.append(
            [
                ("/vms/", cookie),
                ("/api/v1/vms/?page_size=50", {**cookie, "Accept": "application/json"}),
                ("/", cookie),
            ]
        )
    # Each path answers 200 for both kinds of users before anything is timed.
    warm, _ = load(port, plans[:2], 2.0)
    if warm.errors or not warm.times:
        raise RuntimeError(f"warm-up failed: {warm.errors}; see {log}")

    inv.phase(
        f"[1] baseline: {args.clients} clients on GET /login/ for {args.baseline_seconds:.0f} s"
    )
    baseline, wall = load(port, [[("/login/", {})]] * args.clients, args.baseline_seconds)
    summary("baseline GET /login/", baseline, wall, report, goals=False)

    inv.phase(f"[2] {args.clients} clients on the VM list, the VM API and the dashboard")
    tally, wall = load(port, plans, args.seconds)
    summary("VM list + API + dashboard", tally, wall, report, goals=True)
    if web.poll() is not None:
        raise RuntimeError(f"the web server exited during the run; see {log}")


if __name__ == "__main__":
    sys.exit(main())
