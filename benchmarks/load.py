#!/usr/bin/env python
"""Load: a compressed day of a team's work on the panel, offered at stepped rates.

The panel runs as in production, on a PostgreSQL database of its own (a scratch
database this script creates and drops): two web server processes sharing one
listening socket (as supervisord's [fcgi-program:web] runs them), the two Celery
workers (worker-quick and worker-long, with scripts/panel-env.sh's process counts) and
the host watcher, on simulated test:/// hosts (20 hosts, 2,000 VMs by default) in a few
projects, with admins, operators and viewers.

0. Baseline: the server's CPU per request of each kind, in this process (Django's test
   client), with a new database connection per request as configured and with
   connections kept, and PostgreSQL's CPU for each.
1. Baseline: anonymous GET /login/ offered open-loop at rising rates; its ceiling is
   the highest rate answered within 150 ms p95 without errors.
2. Arrivals: the virtual users (200) arrive as a Poisson process. Each logs in through
   the login form, opens the dashboard and a VM list page, and keeps that page's
   websockets open (data-*-ws on the page, as static/panel/live.js opens them) for the
   rest of the run. Meanwhile the event sources change VMs at --events per second.
3. Steps: requests are offered open-loop, as a Poisson process at each step's rate,
   whatever the answers; each request is the next action of one of the users: page
   views (VM list with varied search, filters, ordering and page; VM page; dashboard;
   host page; jobs), API reads (VM search, VM detail, jobs) and, for admins and
   operators, start, force off, save (a job) and snapshot (a job) through the API.
   Latency is measured from the moment the request was due, so a slow server or a busy
   load generator cannot hide delay.

Events: each event source is a helper process that plays the world outside the panel
for its share of the hosts: it powers VMs of its own pool on and off on its connection
to their simulated host (as `virsh start/destroy` would), then hands each change to
the watcher's own code (panel.watcher.HostWatcher.apply: get_domain, sync_domain,
publish on commit). The users' own start / force off / save calls are events too. An
event's delivery time runs from its cause (the source's clock just before the change;
the API call's due time) to its vm.update reaching each open websocket that should get
it (the user may see the VM and has a socket that follows it: the VM list's socket of
the page showing it, or a host's socket); one not there within 10 s
counts as missed.

Every test:/// connection is a private copy of the simulated host in the process that
opened it, so each web, worker and source process has its own. The users act once on
each VM while fresh ones last (VMs of their projects, never the sources'), so the
copies agree; a 409 for a VM whose copies diverged counts as an expected 4xx. Shut
down is left out: the panel always passes it an ACPI or agent flag, which the test
driver refuses; save is the job-making power action instead.

Run from the repository root (PostgreSQL set up by scripts/postgres.sh; Redis is
REDIS_URL, else database 13 of the panel's own, scripts/redis.sh --url 13):

    .venv/bin/python benchmarks/load.py            # at most about 7 minutes
    .venv/bin/python benchmarks/load.py --quick    # 70 to 90 s
    .venv/bin/python benchmarks/load.py --events 0 --sockets none   # HTTP alone
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as kit  # noqa: E402 - processes, percentiles, the report
from common import (  # noqa: E402
    admin_sql,
    bench_environment,
    make_session,
    migrate_and_collect_static,
    postgres_url,
    with_database,
)
from loadkit.cpu_baseline import cpu_per_kind  # noqa: E402
from loadkit.phases import Run, drive  # noqa: E402
from loadkit.source import event_source  # noqa: E402
from loadkit.stack import Stack, event_loop_runner, server_env, warm_up  # noqa: E402
from loadkit.usage import Cpu, Logs  # noqa: E402
from loadkit.world import World, build_world, write_source_pools  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="about a minute: a smaller world, 3 steps")
    p.add_argument("--hosts", type=int, help="simulated hosts (20; --quick 5)")
    p.add_argument("--vms", type=int, help="VMs in all (2000; --quick 500)")
    p.add_argument("--users", type=int, help="virtual users (200; --quick 40)")
    p.add_argument("--projects", type=int, default=4, help="projects the VMs and users share (4)")
    p.add_argument("--rates", help="offered req/s per step (20,40,60,80,100,120,150)")
    p.add_argument("--step-seconds", type=float, help="length of each step (32; --quick 10)")
    p.add_argument("--events", type=float, default=50.0, help="VM changes/s of the sources (50)")
    p.add_argument(
        "--sources", type=int, default=2, help="event source processes sharing the hosts (2)"
    )
    p.add_argument("--arrival-rate", type=float, default=3.0, help="users arriving per s (3)")
    p.add_argument("--login-rates", help="baseline GET /login/ rates (50,100,150,200,300,400,600)")
    p.add_argument("--login-seconds", type=float, help="length of each baseline step (6)")
    p.add_argument(
        "--sockets",
        choices=("page", "one", "none"),
        default="page",
        help="websockets per user: all the VM list page opens (page), its first, or none",
    )
    p.add_argument("--all-steps", action="store_true", help="go on after an overloaded step")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--event-source", nargs=2, metavar=("POOL", "RATE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    quick = args.quick
    args.hosts = args.hosts or (5 if quick else 20)
    args.vms = args.vms or (500 if quick else 2000)
    args.users = args.users or (40 if quick else 200)
    args.step_seconds = args.step_seconds or (10.0 if quick else 32.0)
    args.login_seconds = args.login_seconds or (4.0 if quick else 6.0)
    rates = args.rates or ("20,60,100" if quick else "20,40,60,80,100,120,150")
    login_rates = args.login_rates or ("50,150,300" if quick else "50,100,150,200,300,400,600")
    args.rates = [float(r) for r in rates.split(",")]
    args.login_rates = [float(r) for r in login_rates.split(",")]
    return args


# --- the scratch database and Redis -----------------------------------------------------------


def forget_redis_keys(url: str, prefix: str) -> int:
    """Remove this run's channel groups and channels, Celery queues and their bindings."""
    import redis

    client = redis.Redis.from_url(url)
    queues = [prefix, f"{prefix}.long"]
    keys = [
        *client.scan_iter(match=f"{prefix}:*", count=1000),  # channel groups
        *client.scan_iter(match=f"{prefix}specific.*", count=1000),  # channels
        *queues,
        *(f"_kombu.binding.{q}" for q in queues),
        *(f"_kombu.binding_permanent.{q}" for q in queues),
    ]
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])
    client.close()
    return len(keys)


# --- the run -------------------------------------------------------------------------------------


def run(
    args: argparse.Namespace, tmp: Path, procs: kit.Processes, report: kit.Report, server_url: str
) -> None:
    import django

    django.setup()
    from django.conf import settings

    db = settings.DATABASES["default"]
    kit.say(
        f"load benchmark: {args.users} users, {args.vms} VMs on {args.hosts} simulated hosts, "
        f"{args.projects} projects; database {db['NAME']} (PostgreSQL); work dir {tmp}"
    )
    kit.say(f"  {os.cpu_count()} CPUs, load average {kit.loadavg()} at the start")
    world, warm_session, pool_files = prepare(args, tmp, report)
    stack = Stack(procs, tmp, server_env())
    stack.start()
    loop_run = event_loop_runner()
    with kit.timed() as t:
        loop_run(warm_up(stack.port, warm_session, world))
    kit.say(f"  warm-up (each host opened, each page rendered by both processes) {t[0]:.1f} s")
    redis_port = urlsplit(os.environ["REDIS_URL"]).port or 6379
    cpu = Cpu(stack.groups, redis_port)
    log_watch = Logs([*stack.logs, *(tmp / f"source-{n}.log" for n in range(len(pool_files)))])
    log_watch.new_errors()

    def start_sources() -> list[Any]:
        return stack.start_sources(pool_files, args.events)

    database = (server_url, str(db["NAME"]))
    result = loop_run(
        drive(args, world, stack.port, cpu, log_watch, start_sources, database, report)
    )
    after_run(procs, result, log_watch, report)


def prepare(
    args: argparse.Namespace, tmp: Path, report: kit.Report
) -> tuple[World, str, list[Path]]:
    """The schema, the world, the in-process CPU baseline, an admin's session for the
    warm-up and the event sources' pool files; Django's connections closed after."""
    from django.contrib.auth import get_user_model
    from django.db import connections

    with kit.timed() as t:
        migrate_and_collect_static()
    kit.say(f"  migrate + collectstatic {t[0]:.1f} s")
    world = build_world(args, tmp)
    cpu_per_kind(world, report)
    admin = get_user_model().objects.get(pk=next(u.pk for u in world.users if u.role == "admin"))
    warm_session = make_session(admin)
    pool_files = write_source_pools(world, max(1, args.sources), tmp)
    connections.close_all()
    return world, warm_session, pool_files


def after_run(procs: kit.Processes, result: Run, log_watch: Logs, report: kit.Report) -> None:
    """What the processes, the jobs and the logs show once the steps are done."""
    for proc in procs.procs:
        if proc[1].poll() is not None and proc[0] != "event source":
            kit.say(f"  {proc[0]} exited during the run (code {proc[1].returncode})")
    jobs_summary(report)
    errors = log_watch.new_errors()
    report.add(
        "exceptions and ERROR lines in the servers' logs (whole run)",
        str(sum(s.log_errors for s in result.clock.steps) + errors),
        "0",
        sum(s.log_errors for s in result.clock.steps) + errors == 0,
    )
    for sample in log_watch.samples:
        kit.say(f"\n--- first lines of a logged error ---\n{sample}")
    for sample in result.error_samples:
        kit.say(f"  error answer: {sample}")


def jobs_summary(report: kit.Report) -> None:
    from django.db import connections
    from django.db.models import Count

    from panel.models import Job

    counts = {r["state"]: r["n"] for r in Job.objects.values("state").annotate(n=Count("id"))}
    failed = list(Job.objects.filter(state="failed").values_list("kind", "message")[:3])
    kit.say(f"\n  jobs: {counts}" + (f"; failed, e.g. {failed}" if failed else ""))
    report.add(
        "jobs made by the users, by state", ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    connections.close_all()


def main() -> int:
    args = parse_args()
    if args.event_source:
        return event_source(Path(args.event_source[0]), float(args.event_source[1]))
    pg_url = postgres_url()  # read before the environment points at the temporary directory
    tmp = Path(tempfile.mkdtemp(prefix="panel-bench-load-"))
    bench_environment(tmp)
    name = f"panel_bench_{os.getpid()}"
    os.environ["DATABASE_URL"] = with_database(pg_url, name)
    prefix = f"bench-{os.getpid()}"
    os.environ["PANEL_CELERY_QUEUE"] = prefix
    os.environ["PANEL_CHANNEL_PREFIX"] = prefix
    report = kit.Report()
    procs = kit.Processes()
    started = time.monotonic()
    try:
        admin_sql(pg_url, f'CREATE DATABASE "{name}"')
        run(args, tmp, procs, report, pg_url)
    finally:
        procs.stop_all()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        with contextlib.suppress(Exception):
            admin_sql(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        with contextlib.suppress(Exception):
            forget_redis_keys(os.environ["REDIS_URL"], prefix)
        if args.keep:
            kit.say(f"\nkept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    kit.say(f"\nwhole run: {time.monotonic() - started:.0f} s; load average now {kit.loadavg()}")
    kit.say("\n" + report.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
