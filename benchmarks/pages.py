#!/usr/bin/env python
"""The busiest pages at scale, cold: VM list page and API, VM detail page, dashboard.

Fills a database of its own (SQLite, or a scratch PostgreSQL database) with hosts and
VMs as the watcher would have recorded them, starts the production web server (uvicorn,
one process) on loopback, and times GETs as an admin and as a project member. Every
request differs from the one before (search words, pages, filters, orderings and VMs
are drawn at random), and the panel keeps no page cache, so each figure is a render of
what it names. Beside them, in the same run: anonymous GET /login/ timed the same way
(the baseline), the SQL each kind of page runs (count and slowest query, replayed in
this process), and the web server's peak RSS.

Run from the repository root:

    .venv/bin/python benchmarks/pages.py                                # SQLite, 10,000 VMs on 20 hosts
    .venv/bin/python benchmarks/pages.py --db postgres                  # the same on PostgreSQL
    .venv/bin/python benchmarks/pages.py --db postgres --vms 100000 --hosts 500

PostgreSQL: a scratch database panel_bench_<pid> on the server of var/postgres.env
(scripts/postgres.sh) or PANEL_BENCH_POSTGRES_URL, dropped at the end. Redis: REDIS_URL, else scripts/redis.sh's.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as kit  # noqa: E402 - the same report, timer and processes
from common import (  # noqa: E402
    admin_sql,
    bench_environment,
    free_port,
    make_session,
    migrate_and_collect_static,
    postgres_url,
    web_server,
    with_database,
)
from simhosts import vm_state  # noqa: E402 - the same mix of states as the simulated hosts

REPO = Path(__file__).resolve().parent.parent
WORDS = ["web", "db", "cache", "build", "ci", "mail", "app", "node", "lb", "dev", "etl", "vpn"]
GOALS_MS = {"list": 50.0, "detail": 60.0, "dashboard": 80.0}
BIG_GOALS_MS = {"list": 80.0, "detail": 60.0, "dashboard": 80.0}
GOAL_RSS_MIB = 300.0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--vms", type=int, default=10_000)
    p.add_argument("--hosts", type=int, default=20)
    p.add_argument("--projects", type=int, default=20)
    p.add_argument("--requests", type=int, default=150, help="timed requests per kind and user")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return p.parse_args()


def fill(args: argparse.Namespace) -> dict:
    """Hosts, projects, users and VMs as sync would have recorded them; what the timed
    requests draw from."""
    from django.contrib.auth import get_user_model

    from panel.choices import HostState, ProjectRole
    from panel.models import Host, Membership, Project
    from vms.models import VirtualMachine

    rng = random.Random(7)
    hosts = Host.objects.bulk_create(
        Host(name=f"sim-{n:03d}", uri=f"test:///bench/node-{n:03d}.xml", state=HostState.UP)
        for n in range(1, args.hosts + 1)
    )
    projects = Project.objects.bulk_create(
        Project(name=f"team-{n:02d}", description="") for n in range(1, args.projects + 1)
    )
    User = get_user_model()
    admin = User.objects.create_superuser("bench-admin", "a@bench.test", "bench-admin-pass-1")
    member = User.objects.create_user("bench-member", "m@bench.test", "bench-member-pass-1")
    Membership.objects.create(user=member, project=projects[0], role=ProjectRole.OPERATOR)
    seed_vms(args.vms, rng, hosts, projects)
    seed_jobs(admin)
    seed_usage(rng, hosts)
    mine = list(
        VirtualMachine.objects.filter(project=projects[0]).values_list("pk", flat=True)[:2000]
    )
    every = list(VirtualMachine.objects.values_list("pk", flat=True)[:: max(1, args.vms // 2000)])
    return {
        "admin": admin,
        "member": member,
        "hosts": [h.pk for h in hosts],
        "projects": {"admin": [p.pk for p in projects], "member": [projects[0].pk]},
        "vms": {"admin": every, "member": mine},
        "visible": {
            "admin": args.vms,
            "member": VirtualMachine.objects.filter(project=projects[0]).count(),
        },
    }


def seed_vms(count: int, rng: random.Random, hosts: list, projects: list) -> None:
    """count VMs spread over the hosts and projects in turn, named by a word and a number,
    each with a disk, a NIC and, when running, an address."""
    from django.utils import timezone

    from vms.models import VirtualMachine

    now = timezone.now()
    batch: list[VirtualMachine] = []
    for g in range(count):
        host, project = hosts[g % len(hosts)], projects[g % len(projects)]
        batch.append(recorded_vm(g, rng, host, project, now))
        if len(batch) == 5000:
            VirtualMachine.objects.bulk_create(batch)
            batch = []
    VirtualMachine.objects.bulk_create(batch)


def recorded_vm(g: int, rng: random.Random, host, project, now):  # type: ignore[no-untyped-def]
    """VM number g as sync would have recorded it at now (not saved)."""
    from vms.models import VirtualMachine

    word = WORDS[rng.randrange(len(WORDS))]
    mac = f"52:54:00:{g >> 16 & 255:02x}:{g >> 8 & 255:02x}:{g & 255:02x}"
    return VirtualMachine(
        id=uuid.UUID(int=rng.getrandbits(128), version=4),
        name=f"{word}-{g:06d}",
        host=host,
        project=project,
        state=vm_state(g),
        domain_type="kvm",
        vcpus=1 + g % 4,
        memory_mib=512 * (1 + g % 8),
        disks=[
            {
                "target": "vda",
                "source": f"/var/lib/libvirt/images/{word}-{g:06d}.qcow2",
                "format": "qcow2",
                "bus": "virtio",
                "device": "disk",
            }
        ],
        nics=[{"mac": mac, "source": "isolated", "type": "network", "model": "virtio"}],
        ips=[{"address": f"10.{g >> 16 & 255}.{g >> 8 & 255}.{g & 255}", "source": "lease"}]
        if g % 10 < 6
        else [],
        details={"read_at": now.isoformat()},
        synced=now,
    )


def seed_jobs(admin) -> None:  # type: ignore[no-untyped-def]
    """A finished job for every VM, as a fleet that has been run for a while has: the
    pages look up a VM's latest jobs and the newest of all."""
    from panel.models import Job
    from vms.models import VirtualMachine

    rows = VirtualMachine.objects.values_list("pk", "host_id", "project_id").iterator()
    batch = []
    for pk, host_id, project_id in rows:
        batch.append(
            Job(
                kind="vm.action",
                state="succeeded",
                progress=100,
                message="Done.",
                log="00:00:00 started\n00:00:01 done\n",
                target=f"vm:{pk}",
                host_id=host_id,
                project_id=project_id,
                user=admin,
            )
        )
        if len(batch) == 5000:
            Job.objects.bulk_create(batch)
            batch = []
    Job.objects.bulk_create(batch)


def seed_usage(rng: random.Random, hosts: list) -> None:
    """The latest usage of every running VM and every host, as the stats collector
    stores it: the list's usage column and the dashboard's busiest VMs read it."""
    from monitoring.series import HOST_FIELDS, VM_FIELDS
    from monitoring.store import StatsStore
    from vms.models import VirtualMachine

    store = StatsStore()
    now = time.time()
    running = VirtualMachine.objects.filter(state="running").values_list("pk", flat=True)
    samples = [
        ("vm", str(pk), now, {**dict.fromkeys(VM_FIELDS, 0), "cpu": rng.uniform(0, 100)})
        for pk in running.iterator()
    ]
    samples += [
        ("host", str(h.pk), now, {**dict.fromkeys(HOST_FIELDS, 1), "cpu": rng.uniform(0, 100)})
        for h in hosts
    ]
    for i in range(0, len(samples), 5000):
        store.write(samples[i : i + 5000])


def list_query(rng: random.Random, data: dict, who: str, api: bool) -> str:
    """A VM list request as people make them: a page of everything, a search, filters."""
    pages = max(1, data["visible"][who] // 50)
    kind = rng.randrange(6)
    params: list[tuple[str, str]] = []
    search = "search" if api else "q"
    if kind == 0:
        params.append(("page", str(rng.randint(1, pages))))
    elif kind == 1:
        params.append((search, rng.choice(WORDS)))
    elif kind == 2:
        params.append((search, f"{rng.choice(WORDS)}-0{rng.randint(0, 99):02d}"))
    elif kind == 3:
        params += [("state", rng.choice(["running", "shutoff", "paused"]))]
        params += [("host", str(rng.choice(data["hosts"])))]
    elif kind == 4:
        params += [("project", str(rng.choice(data["projects"][who])))]
        per_project = data["visible"]["admin"] // len(data["projects"]["admin"])
        params += [("page", str(rng.randint(1, max(1, min(3, per_project // 50)))))]
    else:
        running = max(1, data["visible"][who] * 6 // 10 // 50)
        params += [("state", "running"), ("page", str(rng.randint(1, min(running, 20))))]
        params += [("ordering", rng.choice(["-name", "memory_mib", "-vcpus", "host__name"]))]
    if api:
        params.append(("page_size", "50"))
        return "/api/v1/vms/?" + "&".join(f"{k}={quote(v)}" for k, v in params)
    return "/vms/?" + "&".join(f"{k}={quote(v)}" for k, v in params)


def main() -> int:
    args = parse_args()
    # The server is found before the environment points at the temporary directory.
    server = postgres_url() if args.db == "postgres" else None
    scratch = f"panel_bench_{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="panel-bench-pages-"))
    bench_environment(tmp)
    os.environ["PANEL_CELERY_QUEUE"] = f"bench-pages-{os.getpid()}"
    # The seeded usage stays fresh for the whole run (a sample is fresh for 3 intervals).
    os.environ["PANEL_STATS_INTERVAL"] = "3600"
    if server:
        admin_sql(server, f'CREATE DATABASE "{scratch}"')
        os.environ["DATABASE_URL"] = with_database(server, scratch)
    procs = kit.Processes()
    report = kit.Report()
    try:
        run(args, tmp, procs, report)
    finally:
        procs.stop_all()
        from django.db import connections

        connections.close_all()
        if server:
            admin_sql(server, f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        with contextlib.suppress(Exception):
            import redis

            client = redis.Redis.from_url(os.environ["REDIS_URL"])
            client.delete(os.environ["PANEL_CELERY_QUEUE"])
            for key in client.scan_iter(f"{os.environ['PANEL_CHANNEL_PREFIX']}*", count=1000):
                client.delete(key)
        if args.keep:
            kit.say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    kit.say("\n" + report.table())
    return 0


def run(args: argparse.Namespace, tmp: Path, procs: kit.Processes, report: kit.Report) -> None:
    import django

    django.setup()
    from django.conf import settings

    big = args.vms >= 50_000
    goals = BIG_GOALS_MS if big else GOALS_MS
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    kit.say(f"pages benchmark: {args.vms:,} VMs on {args.hosts} hosts, {engine}; work dir {tmp}")
    kit.say(f"  {os.cpu_count()} CPUs, load average {kit.loadavg()} at the start")
    with kit.timed() as t:
        migrate_and_collect_static()
    kit.say(f"  migrate + collectstatic {t[0]:.1f} s")
    with kit.timed() as t:
        data = fill(args)
    kit.say(f"  recorded {args.vms:,} VMs in {t[0]:.1f} s")
    if engine == "postgresql":
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    port = free_port()
    log = tmp / "web.log"
    web = procs.start("web", web_server(port), dict(os.environ), log)
    kit.wait_http(port, web, log)
    rss_start = kit.proc_status(web.pid)
    kit.say(f"  web server pid {web.pid}; RSS after start {kit.mib(rss_start['VmRSS']):.0f} MiB")

    timer = kit.Timer(port)
    rng = random.Random(11)
    base, _ = timer.series("/login/", {}, args.requests)
    report.add(
        "baseline: GET /login/ p95",
        f"{kit.percentile(base, 95) * 1000:.1f} ms (p50 {kit.percentile(base, 50) * 1000:.1f})",
    )
    kit.phase("[1] timed GETs, each one different (server time over loopback, ms)")
    kit.say(f"  {'baseline GET /login/':<26} {summary(base)}")
    for who in ("admin", "member"):
        time_pages(timer, rng, data, who, args.requests, goals, report)
    timer.conn.close()
    rss = kit.proc_status(web.pid)
    report.add(
        "web server peak RSS (VmHWM)",
        f"{kit.mib(rss['VmHWM']):.0f} MiB",
        f"< {GOAL_RSS_MIB:.0f} MiB",
        kit.mib(rss["VmHWM"]) < GOAL_RSS_MIB,
    )
    report.add("baseline: web server RSS after start", f"{kit.mib(rss_start['VmRSS']):.0f} MiB")
    text = log.read_text(errors="replace")
    if "Traceback" in text:
        kit.say(f"\n--- the web server's log had a traceback ---\n{text[-3000:]}")


def time_pages(
    timer: kit.Timer,
    rng: random.Random,
    data: dict,
    who: str,
    n: int,
    goals: dict[str, float],
    report: kit.Report,
) -> None:
    """Each kind of page as who: n timed GETs (after 3 to warm up), each a new request;
    the slowest one replayed in process for its SQL."""
    cookie = {"Cookie": f"sessionid={make_session(data[who])}"}
    kinds = {
        "list page": (functools.partial(list_query, rng, data, who, api=False), "list"),
        "list API": (functools.partial(list_query, rng, data, who, api=True), "list"),
        "detail page": (functools.partial(detail_path, rng, data["vms"][who]), "detail"),
        "dashboard": (lambda: "/", "dashboard"),
    }
    for label, (make, goal_key) in kinds.items():
        api = label.endswith("API")
        headers = dict(cookie, Accept="application/json") if api else cookie
        times, slowest = [], (0.0, "")
        for i in range(n + 3):
            path = make()
            took, status, body = timer.get(path, headers)
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
            if i >= 3:
                times.append(took)
                slowest = max(slowest, (took, path))
        nq, sql_ms, worst_sql = kit.query_profile(data[who], slowest[1], api)
        kit.say(f"  {who:<6} {label:<19} {summary(times)}")
        kit.say(f"         slowest request {slowest[1]}: {slowest[0] * 1000:.1f} ms")
        kit.say(f"         its SQL: {nq} queries, {sql_ms:.1f} ms; slowest {worst_sql}")
        p95 = kit.percentile(times, 95) * 1000
        report.add(
            f"{who} {label} p95",
            f"{p95:.1f} ms (p50 {kit.percentile(times, 50) * 1000:.1f})",
            f"< {goals[goal_key]:.0f} ms",
            p95 < goals[goal_key],
        )


def detail_path(rng: random.Random, vms: list) -> str:
    return f"/vms/{rng.choice(vms)}/"


def summary(times: list[float]) -> str:
    p50, p95 = kit.percentile(times, 50) * 1000, kit.percentile(times, 95) * 1000
    return f"p50 {p50:6.1f}  p95 {p95:6.1f}  max {max(times) * 1000:6.1f}  (n={len(times)})"


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    kit.say(f"whole run {time.monotonic() - started:.0f} s")
    raise SystemExit(code)
