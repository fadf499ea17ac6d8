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
import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vm_inventory as inv  # noqa: E402 - node files, processes, percentiles, the report
from common import (
    admin_sql,
    bench_environment,
    make_session,
    migrate_and_collect_static,  # noqa: E402
    postgres_url,
    with_database,
)

REPO_ROOT = inv.REPO_ROOT
VENV_BIN = Path(sys.executable).parent

GOAL_RATE = 100.0  # req/s offered within the limits below
PAGE_P95_S = 0.150
API_P95_S = 0.100
EVENT_P95_S = 1.0

PASSWORD = "load-user-pass-1"  # every virtual user's, in the scratch database only
KEEPALIVE_S = 4.0  # uvicorn closes keep-alive connections idle for 5 s: reuse younger ones
REQUEST_TIMEOUT_S = 30.0
EVENT_TIMEOUT_S = 10.0
MAX_IN_FLIGHT = 2000  # the generator sheds (and counts) arrivals past this
WS_PATH = re.compile(rb'data-[a-z-]+-ws="(/ws/[^"]+)"')
VM_ROW = re.compile(rb'<tr data-vm="([0-9a-f-]{36})"')
ID_IN_PATH = re.compile(r"/[0-9a-f]{8}-[0-9a-f-]{27}|/\d+")
OVER_CAPACITY = re.compile(r"(\d+) of \d+ channels over capacity")
LOG_ERROR = re.compile(r"Traceback \(most recent call last\)|(^|[\s\[/])(ERROR|CRITICAL)[\s/:\]]")

# What each role does, by weight. Admins and operators act on VMs; viewers only look.
READS = {
    "page vm list": 22,
    "page vm": 12,
    "page dashboard": 7,
    "page host": 5,
    "page jobs": 4,
    "api vm search": 20,
    "api vm": 10,
    "api jobs": 5,
}
ACTS = {"act power": 10, "act snapshot": 3}


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


# --- the world: hosts, VMs, projects, users ---------------------------------------------------


@dataclass
class VM:
    uuid: str
    name: str
    host: int
    project: int
    state: str


@dataclass
class UserSpec:
    pk: int
    username: str
    role: str  # admin, operator, viewer
    projects: frozenset[int]

    def sees(self, vm: VM) -> bool:
        return self.role == "admin" or vm.project in self.projects


@dataclass
class World:
    hosts: list[int]
    uris: dict[int, str]
    projects: list[int]
    vms: dict[str, VM]
    users: list[UserSpec]
    by_project: dict[int, list[str]]
    fresh: dict[int, deque[str]]  # per project: VMs no one acted on yet
    source_pool: set[str]
    reused: int = 0

    def visible(self, user: UserSpec) -> list[str]:
        if user.role == "admin":
            return [u for p in self.projects for u in self.by_project[p]]
        return [u for p in user.projects for u in self.by_project[p]]

    def vm_to_act_on(self, user: UserSpec, rng: random.Random) -> VM:
        project = rng.choice(self.projects if user.role == "admin" else sorted(user.projects))
        queue = self.fresh[project]
        if queue:
            return self.vms[queue.popleft()]
        self.reused += 1
        mine = [u for u in self.by_project[project] if u not in self.source_pool]
        return self.vms[rng.choice(mine)]


def build_world(args: argparse.Namespace, tmp: Path) -> World:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from panel.choices import HostState, ProjectRole
    from panel.models import Host, Membership, Project
    from panel.services.hosts import reconcile_host
    from vms.models import VirtualMachine

    rng = random.Random(20261201)
    with inv.timed() as t:
        paths = inv.write_nodes(tmp / "nodes", args.vms, args.hosts)
        hosts = [
            Host.objects.create(name=f"sim-{n + 1:02d}", uri=f"test://{p}", state=HostState.UP)
            for n, p in enumerate(paths)
        ]
        for host in hosts:
            reconcile_host(host, checks=False)
    inv.say(
        f"  {args.hosts} simulated hosts with {args.vms} VMs written and synced in {t[0]:.1f} s"
    )
    projects = [
        Project.objects.create(name=f"team-{n + 1}", description="a team of the load run")
        for n in range(args.projects)
    ]
    rows = list(
        VirtualMachine.objects.order_by("name").values_list("pk", "name", "host_id", "state")
    )
    vms: dict[str, VM] = {}
    by_project: dict[int, list[str]] = {p.pk: [] for p in projects}
    for n, (pk, name, host_id, state) in enumerate(rows):
        project = projects[n % len(projects)].pk
        vms[str(pk)] = VM(str(pk), name, host_id, project, state)
        by_project[project].append(str(pk))
    for project_id, uuids in by_project.items():
        for i in range(0, len(uuids), 500):
            VirtualMachine.objects.filter(pk__in=uuids[i : i + 500]).update(project_id=project_id)

    # 10% admins, 40% operators, 50% viewers; each non-admin in one project. One password
    # hash for all: hashing 200 passwords would take a minute of CPU for nothing.
    User = get_user_model()
    hashed = make_password(PASSWORD)
    n_admins = max(1, round(args.users * 0.1))
    n_operators = max(1, round(args.users * 0.4))
    roles = ["admin"] * n_admins + ["operator"] * n_operators
    roles += ["viewer"] * (args.users - len(roles))
    User.objects.bulk_create(
        [
            User(
                username=f"load-{role}-{n:03d}",
                email=f"load-{n}@load.test",
                password=hashed,
                is_superuser=role == "admin",
                is_staff=role == "admin",
            )
            for n, role in enumerate(roles)
        ]
    )
    users_by_name = {u.username: u for u in User.objects.filter(username__startswith="load-")}
    users: list[UserSpec] = []
    memberships = []
    for n, role in enumerate(roles):
        user = users_by_name[f"load-{role}-{n:03d}"]
        mine = frozenset() if role == "admin" else frozenset({projects[n % len(projects)].pk})
        users.append(UserSpec(user.pk, user.username, role, mine))
        for pid in mine:
            pr = ProjectRole.OPERATOR if role == "operator" else ProjectRole.VIEWER
            memberships.append(Membership(user=user, project_id=pid, role=pr))
    Membership.objects.bulk_create(memberships)

    # A fifth of the VMs (running, shut off or paused) belong to the event source; the users
    # act on the rest, each VM once while fresh ones last.
    uuids = sorted(vms)
    rng.shuffle(uuids)
    source_pool = set(uuids[: max(1, len(uuids) // 5)])
    fresh: dict[int, deque[str]] = {p.pk: deque() for p in projects}
    for u in uuids:
        if u not in source_pool:
            fresh[vms[u].project].append(u)
    world = World(
        hosts=[h.pk for h in hosts],
        uris={h.pk: h.uri for h in hosts},
        projects=[p.pk for p in projects],
        vms=vms,
        users=users,
        by_project=by_project,
        fresh=fresh,
        source_pool=source_pool,
    )
    counts = Counter(u.role for u in users)
    inv.say(
        f"  {len(projects)} projects; {len(users)} users: {counts['admin']} admins, "
        f"{counts['operator']} operators, {counts['viewer']} viewers (one project each); "
        f"{len(source_pool)} VMs for the event source, {len(vms) - len(source_pool)} for the users"
    )
    return world


# --- the event source (a helper process) ------------------------------------------------------


def event_source(pool_file: Path, rate: float) -> int:
    """Play the world outside the panel: power VMs of the pool on and off on this process's
    connection to their host, and apply each change with the watcher's own code. Prints
    'C <uuid> <new state> <monotonic time>' just before each change, then 'D <seconds>'
    (the change made and applied) or 'E <error>'."""
    sys.path.insert(0, str(REPO_ROOT))
    import django

    django.setup()
    from panel import hypervisor
    from panel.hypervisor.watch import DomainEvent
    from panel.watcher import HostWatcher

    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    pool = json.loads(pool_file.read_text())
    random.Random(7).shuffle(pool)
    watcher = HostWatcher()
    out = sys.stdout
    interval = 1.0 / rate
    due = time.monotonic()
    n = 0
    while not stop:
        vm = pool[n % len(pool)]
        n += 1
        uuid, name, host_id, uri, state = vm
        target = "running" if state == "shutoff" else "shutoff"
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:
            due = time.monotonic()  # more than a second behind: go on from now, no burst
        due += interval
        try:
            out.write(f"C {uuid} {target} {time.monotonic():.6f}\n")
            out.flush()
        except BrokenPipeError:
            return 0  # the load generator is gone
        started = time.monotonic()
        try:
            if target == "running":
                hypervisor.start_domain(uri, uuid)
            else:
                hypervisor.destroy_domain(uri, uuid)
            event = "started" if target == "running" else "stopped"
            watcher.apply(host_id, DomainEvent(uuid=uuid, name=name, event=event))
            line = f"D {time.monotonic() - started:.6f}\n"
        except Exception as exc:  # noqa: BLE001 - reported to the load generator
            line = f"E {type(exc).__name__}: {str(exc)[:200]}\n"
        try:
            out.write(line)
            out.flush()
        except BrokenPipeError:
            return 0
        vm[4] = target
    return 0


# --- HTTP and websockets ------------------------------------------------------------------------


class Http:
    """One browser: keep-alive HTTP/1.1 connections to the web server and its cookies."""

    def __init__(self, port: int, cookies: dict[str, str] | None = None, keep: bool = True):
        self.port = port
        self.cookies = dict(cookies or {})
        self.keep_cookies = keep
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        now = time.monotonic()
        while self.idle:
            reader, writer, since = self.idle.pop()
            if now - since < KEEPALIVE_S and not writer.is_closing():
                return reader, writer, True
            writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        return reader, writer, False

    async def request(
        self,
        method: str,
        path: str,
        *,
        form: dict[str, str] | None = None,
        body: Any = None,
        api: bool = False,
    ) -> tuple[int, dict[str, str], bytes]:
        data = b""
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        head.append("Accept: application/json" if api else "Accept: text/html")
        if form is not None:
            data = urlencode(form).encode()
            head.append("Content-Type: application/x-www-form-urlencoded")
        elif body is not None:
            data = json.dumps(body).encode()
            head.append("Content-Type: application/json")
        if method != "GET":
            head.append(f"Content-Length: {len(data)}")
            head.append(f"Origin: http://127.0.0.1:{self.port}")
            if "csrftoken" in self.cookies:
                head.append(f"X-CSRFToken: {self.cookies['csrftoken']}")
        if self.cookies:
            head.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + data
        for attempt in (0, 1):
            reader, writer, reused = await self._connection()
            try:
                writer.write(raw)
                status, headers, cookies, content = await asyncio.wait_for(
                    read_response(reader), REQUEST_TIMEOUT_S
                )
            except (OSError, asyncio.IncompleteReadError) as exc:
                writer.close()
                stale = isinstance(exc, OSError) or not exc.partial  # type: ignore[attr-defined]
                if reused and attempt == 0 and stale:
                    continue  # a keep-alive connection the server had closed: as a browser does
                raise
            except BaseException:
                writer.close()
                raise
            if headers.get("connection", "").lower() == "close":
                writer.close()
            else:
                self.idle.append((reader, writer, time.monotonic()))
            if self.keep_cookies:
                for name, value in cookies:
                    if value:
                        self.cookies[name] = value
                    else:
                        self.cookies.pop(name, None)
            return status, headers, content
        raise RuntimeError("unreachable")

    def close(self) -> None:
        for _r, writer, _t in self.idle:
            writer.close()
        self.idle.clear()


async def read_response(
    reader: asyncio.StreamReader,
) -> tuple[int, dict[str, str], list[tuple[str, str]], bytes]:
    """One HTTP/1.1 response: status, headers, cookies set, body (length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    cookies: list[tuple[str, str]] = []
    for line in lines[1:]:
        if ":" not in line:
            continue
        name, value = line.split(":", 1)
        name, value = name.strip().lower(), value.strip()
        if name == "set-cookie":
            pair = value.split(";", 1)[0]
            cname, _, cvalue = pair.partition("=")
            expired = "max-age=0" in value.lower() or "1970" in value
            cookies.append((cname.strip(), "" if expired else cvalue.strip().strip('"')))
        else:
            headers[name] = value
    if "content-length" in headers:
        return status, headers, cookies, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, headers, cookies, bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    if status in (204, 304) or 100 <= status < 200:
        return status, headers, cookies, b""
    headers["connection"] = "close"
    return status, headers, cookies, await reader.read()


def route(path: str) -> str:
    """A path without its query and ids, to name what failed."""
    return ID_IN_PATH.sub("/<id>", path.split("?", 1)[0])


# --- what is measured ----------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    rate: float
    seconds: float
    t0: float = 0.0
    t1: float = 0.0
    scheduled: int = 0
    answered: int = 0  # answers received while the step ran
    lat: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    kinds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    expected: Counter[str] = field(default_factory=Counter)
    lag: list[float] = field(default_factory=list)
    events: list[float] = field(default_factory=list)
    causes: int = 0
    missed: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    db_connections: list[int] = field(default_factory=list)  # ours, sampled twice a second
    db_sessions: int = 0  # connections made to our database (pg_stat_database)
    db_xacts: int = 0
    source_changes: int = 0
    source_apply: list[float] = field(default_factory=list)  # the source's change + apply
    dropped: int = 0  # channel-layer messages dropped (over capacity)
    log_errors: int = 0
    stopped_early: str = ""

    def p(self, what: str, pct: float) -> float:
        return inv.percentile(self.lat.get(what, []), pct)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values()) + self.log_errors

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.lat.values()) + sum(self.errors.values())

    def within(self) -> bool:
        """The brief's limits: page p95 < 150 ms, API p95 < 100 ms, no error."""
        page, api = self.p("page", 95), self.p("api", 95)
        return (
            not math.isnan(page)
            and page < PAGE_P95_S
            and (math.isnan(api) or api < API_P95_S)
            and self.error_count == 0
        )

    def crossing(self) -> str:
        why = []
        if not self.p("page", 95) < PAGE_P95_S:
            why.append(f"page p95 {ms(self.p('page', 95))}")
        if not (math.isnan(self.p("api", 95)) or self.p("api", 95) < API_P95_S):
            why.append(f"API p95 {ms(self.p('api', 95))}")
        if self.error_count:
            why.append(f"{self.error_count} errors")
        return ", ".join(why)


def ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    if math.isinf(seconds):
        return "inf"
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.0f} s"


class Clock:
    """Which step a moment belongs to."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.before = Step("before", 0, 0)

    def at(self, t: float) -> Step:
        for step in reversed(self.steps):
            if step.t0 <= t:
                return step
        return self.steps[0] if self.steps else self.before


@dataclass(eq=False)
class Sock:
    user: UserSpec
    path: str
    host: int | None  # a host's socket: every VM on that host
    vms: frozenset[str] = frozenset()  # a VM list's socket: the VMs of its rows
    ws: Any = None
    open: bool = False


@dataclass(eq=False)
class Cause:
    t: float
    step: Step
    expected: set[Sock]
    cancelled: bool = False


class Events:
    """Causes of VM changes and their vm.update messages on the open websockets."""

    def __init__(self, world: World, clock: Clock) -> None:
        self.world = world
        self.clock = clock
        self.by_host: dict[int, set[Sock]] = defaultdict(set)
        self.by_vm: dict[str, set[Sock]] = defaultdict(set)
        self.pending: dict[tuple[str, str], deque[Cause]] = defaultdict(deque)
        self.early: dict[tuple[str, str], list[tuple[Sock, float]]] = defaultdict(list)
        self.unmatched = 0
        self.other_messages = 0
        self.source_errors: Counter[str] = Counter()
        self.source_changes = 0

    def add(self, sock: Sock) -> None:
        if sock.host is not None:
            self.by_host[sock.host].add(sock)
        for uuid in sock.vms:
            self.by_vm[uuid].add(sock)

    def drop(self, sock: Sock) -> None:
        if sock.host is not None:
            self.by_host[sock.host].discard(sock)
        for uuid in sock.vms:
            self.by_vm[uuid].discard(sock)
        for queue in self.pending.values():
            for cause in queue:
                cause.expected.discard(sock)

    def expect(self, uuid: str, state: str, t: float) -> Cause | None:
        vm = self.world.vms.get(uuid)
        if vm is None:
            return None
        step = self.clock.at(t)
        listening = self.by_host[vm.host] | self.by_vm[uuid]
        cause = Cause(t, step, {s for s in listening if s.user.sees(vm)})
        step.causes += 1
        for sock, at in self.early.pop((uuid, state), []):
            if sock in cause.expected and at >= t:
                cause.expected.discard(sock)
                step.events.append(at - t)
                self.unmatched -= 1
        if cause.expected:
            self.pending[(uuid, state)].append(cause)
        return cause

    def received(self, sock: Sock, uuid: str, state: str, now: float) -> None:
        queue = self.pending.get((uuid, state))
        if queue:
            for cause in queue:
                if not cause.cancelled and sock in cause.expected:
                    cause.expected.discard(sock)
                    cause.step.events.append(now - cause.t)
                    return
        self.unmatched += 1
        self.early[(uuid, state)].append((sock, now))

    def sweep(self, now: float, final: bool = False) -> None:
        for key in list(self.pending):
            queue = self.pending[key]
            kept: deque[Cause] = deque()
            for cause in queue:
                if cause.cancelled or not cause.expected:
                    continue
                if final or now - cause.t > EVENT_TIMEOUT_S:
                    cause.step.missed += len(cause.expected)
                    cause.step.events.extend([math.inf] * len(cause.expected))
                else:
                    kept.append(cause)
            if kept:
                self.pending[key] = kept
            else:
                del self.pending[key]
        for key in list(self.early):
            fresh = [(s, at) for s, at in self.early[key] if now - at < 3.0]
            if fresh:
                self.early[key] = fresh
            else:
                del self.early[key]


class Cpu:
    """CPU seconds of each process group, PostgreSQL and Redis (whoever else uses them
    too), the load generator and the whole machine."""

    def __init__(self, groups: dict[str, list[int]], redis_port: int) -> None:
        import psutil

        self.psutil = psutil
        self.groups = {name: [psutil.Process(pid) for pid in pids] for name, pids in groups.items()}
        self.redis_port = redis_port
        self.last = self.sample()

    def _redis(self) -> float:
        """The Redis server on our port (whoever else uses it too)."""
        total = 0.0
        for proc in self.psutil.process_iter(["name", "cmdline"]):
            with contextlib.suppress(self.psutil.Error):
                if proc.info["name"] == "redis-server" and any(
                    f":{self.redis_port}" in part for part in proc.info["cmdline"] or []
                ):
                    t = proc.cpu_times()
                    total += t.user + t.system
        return total

    def add(self, name: str, pids: list[int]) -> None:
        self.groups[name] = [self.psutil.Process(pid) for pid in pids]
        self.last[name] = self._seconds(self.groups[name])

    def _seconds(self, procs: list[Any]) -> float:
        total = 0.0
        for proc in procs:
            with contextlib.suppress(self.psutil.Error):
                for p in [proc, *proc.children(recursive=True)]:
                    with contextlib.suppress(self.psutil.Error):
                        t = p.cpu_times()
                        total += t.user + t.system
        return total

    def sample(self) -> dict[str, float]:
        out = {name: self._seconds(procs) for name, procs in self.groups.items()}
        out["postgres"], out["redis"] = postgres_cpu(), self._redis()
        me = self.psutil.Process().cpu_times()
        out["load generator"] = me.user + me.system
        t = self.psutil.cpu_times()
        out["machine busy"] = sum(t) - t.idle - getattr(t, "iowait", 0.0)
        out["wall"] = time.monotonic()
        return out

    def since_last(self) -> dict[str, float]:
        """Share of one core each used since the last call (machine: of all cores)."""
        now = self.sample()
        wall = max(1e-6, now["wall"] - self.last["wall"])
        shares = {k: (now[k] - self.last[k]) / wall for k in now if k != "wall"}
        shares["machine busy"] /= os.cpu_count() or 1
        self.last = now
        return shares


class Logs:
    """New errors (tracebacks, ERROR and CRITICAL lines) in the servers' logs, and the
    messages the channel layer dropped ("N of M channels over capacity in group ...":
    websockets whose consumer fell more than 100 messages behind)."""

    def __init__(self, paths: list[Path]) -> None:
        self.offsets = {p: 0 for p in paths}
        self.samples: list[str] = []
        self.dropped = 0

    def new_errors(self) -> int:
        found = 0
        for path in self.offsets:
            with contextlib.suppress(OSError), open(path, "rb") as fh:
                fh.seek(self.offsets[path])
                text = fh.read().decode(errors="replace")
                self.offsets[path] = fh.tell()
                lines = text.splitlines()
                for n, line in enumerate(lines):
                    if "over capacity" in line and (m := OVER_CAPACITY.search(line)):
                        self.dropped += int(m.group(1))
                        continue
                    if LOG_ERROR.search(line):
                        found += 1
                        if len(self.samples) < 4:
                            self.samples.append(f"{path.name}: " + "\n".join(lines[n : n + 25]))
        return found


# --- the virtual users ---------------------------------------------------------------------------


@dataclass
class Action:
    kind: str
    category: str  # page, api, action
    method: str
    path: str
    body: Any = None
    expected: tuple[int, ...] = ()  # 4xx answers that are part of the game
    cause: tuple[str, str] | None = None  # (VM, state it should reach)
    after: Callable[[int, bytes], None] | None = None


class VirtualUser:
    def __init__(self, spec: UserSpec, port: int, world: World, rng: random.Random) -> None:
        self.spec = spec
        self.http = Http(port)
        self.world = world
        self.rng = rng
        self.visible = world.visible(spec)
        self.seen: list[str] = []  # VMs on the last list the user looked at
        self.jobs: deque[int] = deque(maxlen=5)
        self.socks: list[Sock] = []
        self.weights = dict(READS) if spec.role == "viewer" else {**READS, **ACTS}
        self.seq = 0

    def vm_list_path(self) -> str:
        rng, params = self.rng, {}
        r = rng.random()
        if r < 0.35:
            params["page"] = str(rng.randint(1, max(1, len(self.visible) // 50)))
        elif r < 0.60:
            params["q"] = self.fragment()
        elif r < 0.75:
            params["state"] = rng.choice(("running", "shutoff", "paused"))
            params["page"] = str(rng.randint(1, 3))
        elif r < 0.90:
            params["host"] = str(rng.choice(self.world.hosts))
        else:
            projects = self.world.projects if self.spec.role == "admin" else self.spec.projects
            params["project"] = str(rng.choice(sorted(projects)))
        if rng.random() < 0.3:
            params["ordering"] = rng.choice(
                ("-name", "state", "-vcpus", "memory_mib", "host__name")
            )
        return "/vms/?" + urlencode(params)

    def fragment(self) -> str:
        """Part of a VM name: 'vm0012' matches ten VMs, 'vm001' a hundred."""
        n = self.rng.randrange(len(self.world.vms))
        return f"vm{n:05d}"[: self.rng.choice((5, 6, 6, 7))]

    def some_vm(self) -> str:
        if self.seen and self.rng.random() < 0.7:
            return self.rng.choice(self.seen)
        return self.rng.choice(self.visible)

    def saw_page(self, status: int, body: bytes) -> None:
        if status == 200:
            self.seen = [m.decode() for m in VM_ROW.findall(body)] or self.seen

    def saw_api(self, status: int, body: bytes) -> None:
        if status == 200:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self.seen = [r["id"] for r in json.loads(body)["results"]] or self.seen

    def next_action(self) -> Action:
        kind = self.rng.choices(list(self.weights), weights=list(self.weights.values()))[0]
        return self.action(kind)

    def action(self, kind: str) -> Action:
        rng = self.rng
        self.seq += 1
        bust = f"?_={self.spec.pk}-{self.seq}"  # no cache keyed by URL could answer
        if kind == "page vm list":
            return Action(kind, "page", "GET", self.vm_list_path(), after=self.saw_page)
        if kind == "page vm":
            return Action(kind, "page", "GET", f"/vms/{self.some_vm()}/")
        if kind == "page dashboard":
            return Action(kind, "page", "GET", f"/{bust}")
        if kind == "page host":
            return Action(kind, "page", "GET", f"/hosts/{rng.choice(self.world.hosts)}/{bust}")
        if kind == "page jobs":
            return Action(kind, "page", "GET", f"/jobs/{bust}")
        if kind == "api vm search":
            params = {"search": self.fragment(), "page_size": rng.choice(("20", "50"))}
            if rng.random() < 0.3:
                params["state"] = rng.choice(("running", "shutoff"))
            if rng.random() < 0.2:
                params["ordering"] = rng.choice(("-name", "state", "memory_mib"))
            path = "/api/v1/vms/?" + urlencode(params)
            return Action(kind, "api", "GET", path, after=self.saw_api)
        if kind == "api vm":
            return Action(kind, "api", "GET", f"/api/v1/vms/{self.some_vm()}/")
        if kind == "api jobs":
            if self.jobs and rng.random() < 0.6:
                return Action(kind, "api", "GET", f"/api/v1/jobs/{rng.choice(self.jobs)}/")
            return Action(kind, "api", "GET", "/api/v1/jobs/?page_size=20&ordering=-created")
        if kind == "act power":
            return self.power()
        return self.snapshot()

    def power(self) -> Action:
        vm = self.world.vm_to_act_on(self.spec, self.rng)
        # Shut down (a job) always passes an ACPI or agent flag, which the test driver
        # refuses ("unsupported flags"): the job-making power action here is save (a managed
        # save, a long job), which stops the VM as shutdown would.
        if vm.state == "running" and self.rng.random() < 0.3:
            verb, target = "save", "shutoff"
        elif vm.state in ("running", "paused"):
            verb, target = "force-off", "shutoff"
        else:
            verb, target = "start", "running"

        def after(status: int, body: bytes) -> None:
            if status in (200, 202):
                vm.state = target
            if status == 202:
                with contextlib.suppress(ValueError, KeyError):
                    self.jobs.append(int(json.loads(body)["job"]))

        return Action(
            f"act {verb}",
            "action",
            "POST",
            f"/api/v1/vms/{vm.uuid}/{verb}/",
            body={},
            expected=(409,),
            cause=(vm.uuid, target),
            after=after,
        )

    def snapshot(self) -> Action:
        vm = self.world.vm_to_act_on(self.spec, self.rng)

        def after(status: int, body: bytes) -> None:
            if status == 202:
                with contextlib.suppress(ValueError, KeyError):
                    self.jobs.append(int(json.loads(body)["job"]))

        return Action(
            "act snapshot",
            "action",
            "POST",
            f"/api/v1/vms/{vm.uuid}/snapshots/",
            body={"name": f"load-{self.spec.pk}-{self.seq}"},
            expected=(409,),
            after=after,
        )


def postgres_cpu() -> float:
    """CPU seconds of PostgreSQL so far: the postmaster, its live backends and (in the
    postmaster's children times) every backend that ended. Other databases' work included."""
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["name", "ppid"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["name"] != "postgres":
                continue
            t = proc.cpu_times()
            total += t.user + t.system
            if psutil.Process(proc.info["ppid"]).name() != "postgres":
                total += t.children_user + t.children_system
    return total


def cpu_per_kind(world: World, report: inv.Report, n: int = 12) -> None:
    """The server's own CPU per request of each kind: the same requests through Django's
    test client in this process, before any server runs, as configured (a new database
    connection per request) and with connections kept, with PostgreSQL's CPU for each."""
    from django.contrib.auth import get_user_model
    from django.db import close_old_connections, connection
    from django.test import Client

    User = get_user_model()
    inv.phase(f"[0] server CPU per request, in this process (Django test client, {n} each)")
    picks = [next(u for u in world.users if u.role == r) for r in ("admin", "operator")]
    clients = []
    for spec in picks:
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(User.objects.get(pk=spec.pk))
        clients.append((VirtualUser(spec, 0, world, random.Random(spec.pk)), client))
    anonymous = Client(HTTP_HOST="127.0.0.1")
    kinds = ["login page", *READS]

    def one_pass(close: bool) -> tuple[dict[str, tuple[float, float]], float, int]:
        out: dict[str, tuple[float, float]] = {}
        pg0, count = postgres_cpu(), 0
        for kind in kinds:
            cpu: list[float] = []
            wall: list[float] = []
            for i in range(n + 2):
                vuser, client = clients[i % len(clients)]
                if kind == "login page":
                    client, path, api = anonymous, "/login/", False
                else:
                    action = vuser.action(kind)
                    path, api = action.path, action.category == "api"
                headers = {"Accept": "application/json"} if api else {}
                c0, w0 = time.process_time(), time.perf_counter()
                response = client.get(path, headers=headers)
                if close:
                    # What the web server does at the end of each request (the test client
                    # leaves it out): with CONN_MAX_AGE=0 the connection is closed.
                    close_old_connections()
                c1, w1 = time.process_time(), time.perf_counter()
                count += 1
                if response.status_code != 200:
                    raise RuntimeError(f"{kind} {path} answered {response.status_code}")
                if i >= 2:  # the first two warm up
                    cpu.append(c1 - c0)
                    wall.append(w1 - w0)
            out[kind] = (sum(cpu) / len(cpu), sum(wall) / len(wall))
        return out, (postgres_cpu() - pg0) / count, count

    configured = connection.settings_dict["CONN_MAX_AGE"]
    try:
        new_each, pg_new, _ = one_pass(close=True)
        connection.close()
        connection.settings_dict["CONN_MAX_AGE"] = None
        kept, pg_kept, _ = one_pass(close=False)
    finally:
        connection.close()
        connection.settings_dict["CONN_MAX_AGE"] = configured
    inv.say(f"  {'':<16} {'a new connection per request':>30}   {'connections kept':>18}")
    for kind in kinds:
        (c, w), (ck, wk) = new_each[kind], kept[kind]
        inv.say(
            f"  {kind:<16} CPU {c * 1000:5.1f} ms, wall {w * 1000:5.1f} ms   "
            f"CPU {ck * 1000:5.1f} ms, wall {wk * 1000:5.1f} ms"
        )
    inv.say(
        f"  PostgreSQL CPU per request (all its work on the machine): {pg_new * 1000:.1f} ms with "
        f"a new connection per request (CONN_MAX_AGE={configured}, as configured), "
        f"{pg_kept * 1000:.1f} ms with connections kept"
    )
    per_read = sum(READS[k] * new_each[k][0] for k in READS) / sum(READS.values())
    inv.say(
        f"  the read mix: {per_read * 1000:.1f} ms of server CPU per request, so one core serves "
        f"at most {1 / per_read:.0f} a second before the database, the websockets, the workers "
        f"and the web server's own HTTP work take their share"
    )
    report.add("baseline: server CPU per request of the read mix (in-process)", ms(per_read))
    report.add(
        "baseline: PostgreSQL CPU per request, new connection / kept",
        f"{pg_new * 1000:.1f} ms / {pg_kept * 1000:.1f} ms",
    )


# --- the run -------------------------------------------------------------------------------------


class Run:
    """The load generator: one event loop for every user, request and websocket."""

    def __init__(self, args: argparse.Namespace, world: World, port: int, cpu: Cpu, logs: Logs):
        self.args = args
        self.world = world
        self.port = port
        self.cpu = cpu
        self.logs = logs
        self.rng = random.Random(20261202)
        self.clock = Clock()
        self.events = Events(world, self.clock)
        self.users = [VirtualUser(s, port, world, random.Random(s.pk)) for s in world.users]
        self.ready: list[VirtualUser] = []
        self.in_flight = 0
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closing = False
        self.error_samples: list[str] = []
        self.db_counts = (0, 0)  # sessions made, transactions: our database's, now
        self.marks: tuple[int, int, int, int] = (0, 0, 0, 0)

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # one request, timed from when it was due

    async def send(
        self, step: Step, due: float, http: Http, action: Action
    ) -> tuple[int, bytes] | None:
        self.in_flight += 1
        step.lag.append(time.monotonic() - due)
        cause = self.events.expect(*action.cause, due) if action.cause else None
        try:
            status, _headers, body = await http.request(
                action.method, action.path, body=action.body, api=action.category != "page"
            )
        except Exception as exc:  # noqa: BLE001 - every failure is counted
            step.errors[f"{type(exc).__name__} {action.method} {route(action.path)}"] += 1
            if cause:
                cause.cancelled = True
            return None
        finally:
            self.in_flight -= 1
        now = time.monotonic()
        elapsed = now - due
        current = self.clock.at(now)
        if now < current.t1:
            current.answered += 1
        ok = 200 <= status < 400
        if ok or status in action.expected:
            step.lat[action.category].append(elapsed)
            step.kinds[action.kind].append(elapsed)
            if not ok:
                step.expected[f"{status} {action.kind}"] += 1
        else:
            step.errors[f"HTTP {status} {action.method} {route(action.path)}"] += 1
            if len(self.error_samples) < 5:
                self.error_samples.append(
                    f"HTTP {status} {action.method} {action.path}: {body[:300]!r}"
                )
        if cause and not (200 <= status < 300):
            cause.cancelled = True
        if action.after is not None:
            action.after(status, body)
        return status, body

    async def offer(self, step: Step, make: Callable[[], tuple[Http, Action]]) -> None:
        """Poisson arrivals at step.rate for step.seconds, each sent when due."""
        self.clock.steps.append(step)
        step.t0 = time.monotonic()
        step.t1 = step.t0 + step.seconds
        self.mark(step)
        due = step.t0
        while True:
            due += self.rng.expovariate(step.rate)
            if due >= step.t1:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            step.scheduled += 1
            if self.in_flight >= MAX_IN_FLIGHT:
                step.errors["load generator: too many requests in flight"] += 1
                continue
            http, action = make()
            self.spawn(self.send(step, due, http, action))
        await asyncio.sleep(max(0.0, step.t1 - time.monotonic()))
        self.settle(step)

    def mark(self, step: Step) -> None:
        """Counters at the start of a step."""
        self.marks = (*self.db_counts, self.events.source_changes, self.logs.dropped)

    def settle(self, step: Step) -> None:
        """What a step used: CPU, database sessions and transactions, errors logged."""
        step.cpu = self.cpu.since_last()
        step.log_errors = self.logs.new_errors()
        sessions, xacts, changes, dropped = self.marks
        step.db_sessions = self.db_counts[0] - sessions
        step.db_xacts = self.db_counts[1] - xacts
        step.source_changes = self.events.source_changes - changes
        step.dropped = self.logs.dropped - dropped

    # websockets

    async def open_socket(self, user: VirtualUser, path: str, step: Step) -> None:
        from websockets.asyncio.client import connect

        match = re.match(r"/ws/hosts/(\d+)/", path)
        rows = re.match(r"/ws/vm-rows/\?ids=([0-9a-f,-]+)", path)
        sock = Sock(
            user.spec,
            path,
            int(match.group(1)) if match else None,
            frozenset(rows.group(1).split(",")) if rows else frozenset(),
        )
        cookie = "; ".join(f"{k}={v}" for k, v in user.http.cookies.items())
        started = time.monotonic()
        try:
            sock.ws = await connect(
                f"ws://127.0.0.1:{self.port}{path}",
                additional_headers={"Cookie": cookie, "Origin": f"http://127.0.0.1:{self.port}"},
                open_timeout=REQUEST_TIMEOUT_S,
                ping_interval=None,  # the server pings; the client answers
                max_size=2**22,
            )
            first = json.loads(await asyncio.wait_for(sock.ws.recv(), REQUEST_TIMEOUT_S))
        except Exception as exc:  # noqa: BLE001
            step.errors[f"websocket {type(exc).__name__} {route(path)}"] += 1
            if sock.ws is not None:
                await sock.ws.close()
            return
        if first.get("type", "") in ("host.update", "vms.watch"):
            step.lat["websocket"].append(time.monotonic() - started)
        sock.open = True
        user.socks.append(sock)
        self.events.add(sock)
        self.spawn(self.listen(sock))

    async def listen(self, sock: Sock) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in sock.ws:
                now = time.monotonic()
                if isinstance(message, str) and '"vm.update"' in message:
                    vm = json.loads(message).get("vm") or {}
                    self.events.received(sock, vm.get("id", ""), vm.get("state", ""), now)
                else:
                    self.events.other_messages += 1
        except ConnectionClosed:
            pass
        finally:
            sock.open = False
            self.events.drop(sock)
            if not self.closing:
                code = sock.ws.close_code
                self.clock.at(time.monotonic()).errors[
                    f"websocket closed by the server ({code}) {route(sock.path)}"
                ] += 1

    # phases

    async def baseline(self, report: inv.Report) -> float:
        inv.phase("[1] baseline: anonymous GET /login/ offered open-loop at rising rates")
        http = Http(self.port, keep=False)  # one pool of keep-alive connections, no cookies
        ceiling, at_ceiling = 0.0, math.nan
        for rate in self.args.login_rates:
            step = Step(f"/login/ {rate:.0f}/s", rate, self.args.login_seconds)
            await self.offer(step, lambda: (http, Action("login page", "page", "GET", "/login/")))
            await self.drain(step, 10)
            achieved = step.answered / step.seconds
            p95 = step.p("page", 95)
            inv.say(
                f"  offered {rate:5.0f}/s  answered {achieved:6.1f}/s  p50 {ms(step.p('page', 50)):>7}  "
                f"p95 {ms(p95):>7}  errors {step.error_count}  "
                f"(generator {step.cpu['load generator'] * 100:.0f}% of a core, web "
                f"{step.cpu['web'] * 100:.0f}%)"
            )
            if p95 < PAGE_P95_S and step.error_count == 0 and achieved >= 0.95 * rate:
                ceiling, at_ceiling = rate, p95
            else:
                break
        http.close()
        self.clock.steps.clear()
        report.add(
            "baseline: GET /login/ ceiling (anonymous, open loop)",
            f"{ceiling:.0f} req/s (p95 {ms(at_ceiling)})",
        )
        return ceiling

    async def drain(self, step: Step, seconds: float) -> None:
        """Wait (bounded) for the requests still in flight."""
        deadline = time.monotonic() + seconds
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def arrive(self, user: VirtualUser, step: Step) -> None:
        """Log in through the form, land on the dashboard, open a VM list and its websockets."""
        http = user.http
        due = time.monotonic()
        got = await self.send(step, due, http, Action("login page", "page", "GET", "/login/"))
        if not got or "csrftoken" not in http.cookies:
            step.errors["login page gave no CSRF cookie"] += 1
            return
        form = {
            "username": user.spec.username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": http.cookies["csrftoken"],
        }
        started = time.monotonic()
        try:
            status, _h, _b = await http.request("POST", "/login/", form=form)
        except Exception as exc:  # noqa: BLE001
            step.errors[f"{type(exc).__name__} POST /login/"] += 1
            return
        if status != 302 or "sessionid" not in http.cookies:
            step.errors[f"login answered {status} without a session"] += 1
            return
        step.lat["login"].append(time.monotonic() - started)
        await self.send(step, time.monotonic(), http, Action("page dashboard", "page", "GET", "/"))
        got = await self.send(
            step,
            time.monotonic(),
            http,
            Action("page vm list", "page", "GET", user.vm_list_path(), after=user.saw_page),
        )
        if not got or got[0] != 200:
            return
        paths = list(dict.fromkeys(p.decode() for p in WS_PATH.findall(got[1])))
        if self.args.sockets == "one":
            paths = paths[:1]
        elif self.args.sockets == "none":
            paths = []
        await asyncio.gather(*(self.open_socket(user, p, step) for p in paths))
        self.ready.append(user)

    async def arrivals(self, report: inv.Report) -> None:
        n = len(self.users)
        inv.phase(
            f"[2] arrivals: {n} users arrive (Poisson, {self.args.arrival_rate:g}/s), log in, "
            f"open a VM list and keep its websockets open; events at {self.args.events:g}/s"
        )
        step = Step("arrivals", self.args.arrival_rate, 0)
        self.clock.steps.append(step)
        step.t0 = time.monotonic()
        step.t1 = math.inf
        self.mark(step)
        order = list(self.users)
        self.rng.shuffle(order)
        due = step.t0
        pending = []
        for user in order:
            due += self.rng.expovariate(self.args.arrival_rate)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            pending.append(asyncio.create_task(self.arrive(user, step)))
        # Bounded: users still logging in after this go on, counted in the first step.
        await asyncio.wait(pending, timeout=45)
        self.tasks.update(t for t in pending if not t.done())
        step.t1 = time.monotonic()
        step.seconds = step.t1 - step.t0
        self.settle(step)
        socks = sum(len(u.socks) for u in self.users)
        hosts_per_user = socks / max(1, len(self.ready))
        inv.say(
            f"  {len(self.ready)} of {n} users in after {step.seconds:.0f} s; {socks} websockets "
            f"open ({hosts_per_user:.1f} per user); login POST p50 {ms(inv.percentile(step.lat['login'], 50))} "
            f"p95 {ms(inv.percentile(step.lat['login'], 95))}; pages p95 {ms(step.p('page', 95))}; "
            f"websocket open p95 {ms(step.p('websocket', 95))}; errors {step.error_count}"
        )
        report.add(
            f"arrivals: {len(self.ready)}/{n} users in, login POST p95",
            f"{ms(inv.percentile(step.lat['login'], 95))}; {socks} websockets; "
            f"{step.error_count} errors",
        )
        if step.errors:
            inv.say("  errors: " + ", ".join(f"{k} x{v}" for k, v in step.errors.most_common(6)))

    def pick(self) -> tuple[Http, Action]:
        user = self.rng.choice(self.ready)
        return user.http, user.next_action()

    async def steps(self, report: inv.Report) -> list[Step]:
        inv.phase(
            f"[3] steps: offered rates {', '.join(f'{r:g}' for r in self.args.rates)} req/s, "
            f"{self.args.step_seconds:g} s each"
        )
        done: list[Step] = []
        for rate in self.args.rates:
            step = Step(f"{rate:g} req/s", rate, self.args.step_seconds)
            await self.offer(step, self.pick)
            done.append(step)
            self.print_step(step)
            overloaded = step.answered < 0.7 * step.scheduled or step.error_count > 0.05 * max(
                1, step.scheduled
            )
            if overloaded and not self.args.all_steps and rate != self.args.rates[-1]:
                step.stopped_early = "overloaded: the steps above it were not run"
                inv.say(f"  {step.stopped_early} (--all-steps runs them)")
                break
        await self.drain(done[-1], 15)
        await asyncio.sleep(1.0)
        self.events.sweep(time.monotonic() + EVENT_TIMEOUT_S + 1, final=True)
        self.summarise(done, report)
        return done

    def print_step(self, s: Step) -> None:
        cpu = s.cpu
        ev = s.events
        inv.say(
            f"  {s.name:>11}: sent {s.scheduled / s.seconds:6.1f}/s  answered "
            f"{s.answered / s.seconds:6.1f}/s   page p50 {ms(s.p('page', 50)):>7} p95 {ms(s.p('page', 95)):>7}"
            f"   API p50 {ms(s.p('api', 50)):>7} p95 {ms(s.p('api', 95)):>7}   actions p95 "
            f"{ms(s.p('action', 95)):>7}   errors {s.error_count}  expected 4xx {sum(s.expected.values())}"
        )
        inv.say(
            f"  {'':>11}  events: {s.causes / s.seconds:5.1f} changes/s, {len(ev)} deliveries, "
            f"p50 {ms(inv.percentile(ev, 50))} p95 {ms(inv.percentile(ev, 95))}, missed {s.missed}"
            f" (source {s.source_changes / s.seconds:.1f}/s of {self.args.events:g}, each "
            f"applied in p50 {ms(inv.percentile(s.source_apply, 50))} p95 "
            f"{ms(inv.percentile(s.source_apply, 95))}); "
            f"{s.dropped} messages dropped by the channel layer (over capacity)"
        )
        inv.say(
            f"  {'':>11}  database: {max(s.db_connections, default=0)} connections at most, "
            f"{s.db_sessions / s.seconds:.0f} new connections/s, {s.db_xacts / s.seconds:.0f} "
            f"transactions/s; generator lag p95 {ms(inv.percentile(s.lag, 95))}"
        )
        inv.say(
            f"  {'':>11}  CPU, % of one core: web {cpu['web'] * 100:.0f}, workers "
            f"{cpu['workers'] * 100:.0f}, watcher {cpu['watcher'] * 100:.0f}, event source "
            f"{cpu.get('event source', 0) * 100:.0f}, postgres (all databases) "
            f"{cpu['postgres'] * 100:.0f}, redis {cpu['redis'] * 100:.0f}, load generator "
            f"{cpu['load generator'] * 100:.0f}; the machine {cpu['machine busy'] * 100:.0f}% busy "
            f"(of {os.cpu_count()} cores)"
        )
        if s.errors:
            inv.say(
                "  {:>11}  errors: ".format("")
                + ", ".join(f"{k} x{v}" for k, v in s.errors.most_common(6))
            )
        if s.log_errors:
            inv.say(f"  {'':>11}  {s.log_errors} error lines in the servers' logs")

    def summarise(self, done: list[Step], report: inv.Report) -> None:
        inv.say("\n  per step, once the last answers and events were in (times p50/p95):")
        rows = [
            (
                "offered",
                "answered",
                "page",
                "API",
                "actions",
                "errors",
                "4xx",
                "changes/s",
                "events",
                "missed",
                "dropped",
                "db conns",
                "new conn/s",
                "generator",
                "machine",
            )
        ]
        for s in done:
            rows.append(
                (
                    f"{s.rate:.0f}/s",
                    f"{s.answered / s.seconds:.1f}/s",
                    f"{ms(s.p('page', 50))}/{ms(s.p('page', 95))}",
                    f"{ms(s.p('api', 50))}/{ms(s.p('api', 95))}",
                    f"{ms(s.p('action', 50))}/{ms(s.p('action', 95))}",
                    str(s.error_count),
                    str(sum(s.expected.values())),
                    f"{s.causes / s.seconds:.1f}",
                    f"{ms(inv.percentile(s.events, 50))}/{ms(inv.percentile(s.events, 95))}",
                    f"{s.missed}/{len(s.events)}",
                    str(s.dropped),
                    str(max(s.db_connections, default=0)),
                    f"{s.db_sessions / s.seconds:.0f}",
                    f"{s.cpu['load generator'] * 100:.0f}%",
                    f"{s.cpu['machine busy'] * 100:.0f}%",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            inv.say("  " + "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        top = done[-1]
        inv.say(f"\n  where the time goes at {top.name} (p50 / p95):")
        for kind, times in sorted(top.kinds.items()):
            inv.say(
                f"    {kind:<16} n={len(times):5d}  {ms(inv.percentile(times, 50)):>7} / "
                f"{ms(inv.percentile(times, 95)):>7}"
            )
        inv.say(
            f"  websocket messages: {self.events.other_messages} other than vm.update, "
            f"{self.events.unmatched} vm.update without a cause of ours (details refreshed by "
            f"page views, jobs read back); event source errors: "
            + (", ".join(f"{k} x{v}" for k, v in self.events.source_errors.items()) or "none")
        )
        if self.world.reused:
            inv.say(f"  {self.world.reused} actions on VMs acted on before (fresh ones ran out)")

        for s in done:
            ev95 = inv.percentile(s.events, 95)
            ok = s.within() and (math.isnan(ev95) or ev95 < EVENT_P95_S)
            report.add(
                f"offered {s.rate:.0f} req/s (answered {s.answered / s.seconds:.0f})",
                f"page {ms(s.p('page', 95))}, API {ms(s.p('api', 95))}, "
                f"{s.error_count} err, events {ms(ev95)} ({s.missed}/{len(s.events)} missed)",
                "p95 page<150 API<100 ms, 0 err, events<1 s",
                ok,
            )
        first_out = next((s for s in done if not s.within()), None)
        best = 0.0
        for s in done:
            if not s.within():
                break
            best = s.rate
        crossed = (
            f"; crossed at {first_out.rate:.0f} ({first_out.crossing()})"
            if first_out is not None
            else "; never crossed"
        )
        report.add(
            "highest offered rate within the limits",
            f"{best:.0f} req/s{crossed}",
            f">= {GOAL_RATE:.0f} req/s",
            best >= GOAL_RATE,
        )
        ev_ok = [s for s in done if s.within()]
        if ev_ok:
            worst = max(ev_ok, key=lambda s: inv.percentile(s.events, 95))
            ev95 = inv.percentile(worst.events, 95)
            report.add(
                "event delivery p95, worst step within the limits",
                f"{ms(ev95)} at {worst.rate:.0f} req/s ({len(worst.events)} deliveries, "
                f"{worst.missed} missed)",
                "< 1 s",
                not math.isnan(ev95) and ev95 < EVENT_P95_S,
            )
        gen = max(s.cpu["load generator"] for s in done)
        report.add("load generator CPU, busiest step", f"{gen * 100:.0f}% of one core")
        lag = max(inv.percentile(s.lag, 95) for s in done)
        report.add("load generator lag p95 (due to sent), worst step", ms(lag))

    async def close(self) -> None:
        self.closing = True
        socks = [s for u in self.users for s in u.socks if s.ws is not None]
        await asyncio.gather(*(s.ws.close() for s in socks), return_exceptions=True)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for user in self.users:
            user.http.close()

    async def read_source(self, stream: asyncio.StreamReader) -> None:
        async for line in stream:
            parts = line.decode().split(" ", 3)
            if parts[0] == "C" and len(parts) == 4:
                self.events.source_changes += 1
                self.events.expect(parts[1], parts[2], float(parts[3]))
            elif parts[0] == "D":
                self.clock.at(time.monotonic()).source_apply.append(float(parts[1]))
            elif parts[0] == "E":
                self.events.source_errors[line.decode()[2:].split(":", 1)[0]] += 1

    async def count_connections(self, url: str, name: str) -> None:
        """Connections to our database, twice a second (from the server's own view)."""
        import psycopg

        conn = await asyncio.to_thread(psycopg.connect, url, autocommit=True)
        sql = (
            "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = %(db)s), "
            "sessions, xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %(db)s"
        )
        try:
            while True:
                row = await asyncio.to_thread(lambda: conn.execute(sql, {"db": name}).fetchone())
                self.clock.at(time.monotonic()).db_connections.append(int(row[0]))
                self.db_counts = (int(row[1]), int(row[2]))
                await asyncio.sleep(0.5)
        finally:
            conn.close()

    async def sweeper(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.events.sweep(time.monotonic())


async def warm_up(port: int, session: str, world: World) -> None:
    """Each web process opens every simulated host and renders every page once before
    anything is timed (production keeps both from its start)."""
    token = "w" * 32
    http_pool = [Http(port, {"sessionid": session, "csrftoken": token}) for _ in range(4)]
    failures: list[str] = []

    async def hit(http: Http, method: str, path: str, api: bool = False) -> None:
        status, _h, body = await http.request(
            method, path, body={} if method == "POST" else None, api=api
        )
        if status != 200:
            failures.append(f"{method} {path}: {status} {body[:200]!r}")

    first = {}
    for vm in world.vms.values():
        first.setdefault(vm.host, vm.uuid)
    a_vm = next(iter(first.values()))
    calls = [
        ("GET", p, p.startswith("/api"))
        for p in (
            "/",
            "/vms/",
            "/jobs/",
            f"/hosts/{world.hosts[0]}/",
            f"/vms/{a_vm}/",
            "/api/v1/vms/?search=vm0",
            f"/api/v1/vms/{a_vm}/",
            "/api/v1/jobs/",
        )
    ]
    calls += [("POST", f"/api/v1/vms/{u}/refresh-details/", True) for u in first.values()]
    for method, path, api in calls:
        await asyncio.gather(*(hit(h, method, path, api) for h in http_pool))
    for h in http_pool:
        h.close()
    if failures:
        raise RuntimeError("warm-up failed: " + "; ".join(failures[:3]))


async def drive(
    args: argparse.Namespace,
    world: World,
    port: int,
    cpu: Cpu,
    logs: Logs,
    start_sources: Callable[[], list[subprocess.Popen]],
    database: tuple[str, str],
    report: inv.Report,
) -> Run:
    run = Run(args, world, port, cpu, logs)
    await run.baseline(report)
    loop = asyncio.get_running_loop()
    readers = []
    sources = start_sources() if args.events > 0 else []
    if sources:
        cpu.add("event source", [s.pid for s in sources])
    for source in sources:
        stream = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(
            lambda s=stream: asyncio.StreamReaderProtocol(s), source.stdout
        )
        readers.append(asyncio.create_task(run.read_source(stream)))
    sweeper_task = asyncio.create_task(run.sweeper())
    counter_task = asyncio.create_task(run.count_connections(*database))
    try:
        cpu.since_last()
        await run.arrivals(report)
        if not run.ready:
            raise RuntimeError("no user could log in; see the errors above")
        await run.steps(report)
    finally:
        for source in sources:
            if source.poll() is None:
                source.terminate()
        for task in (*readers, sweeper_task, counter_task):
            task.cancel()
        await run.close()
    return run


def run(
    args: argparse.Namespace, tmp: Path, procs: inv.Processes, report: inv.Report, server_url: str
) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connections

    db = settings.DATABASES["default"]
    inv.say(
        f"load benchmark: {args.users} users, {args.vms} VMs on {args.hosts} simulated hosts, "
        f"{args.projects} projects; database {db['NAME']} (PostgreSQL); work dir {tmp}"
    )
    inv.say(f"  {os.cpu_count()} CPUs, load average {inv.loadavg()} at the start")
    with inv.timed() as t:
        migrate_and_collect_static()
    inv.say(f"  migrate + collectstatic {t[0]:.1f} s")
    world = build_world(args, tmp)
    cpu_per_kind(world, report)
    admin = get_user_model().objects.get(pk=next(u.pk for u in world.users if u.role == "admin"))
    warm_session = make_session(admin)
    # One pool file per source process, the hosts shared out between them (as the
    # watchers share hosts out by leases).
    pool_files = []
    sources = max(1, args.sources)
    for n in range(sources):
        pool = [
            [u, vm.name, vm.host, world.uris[vm.host], vm.state]
            for u in sorted(world.source_pool)
            if (vm := world.vms[u]).host % sources == n
        ]
        if pool:
            pool_files.append(tmp / f"event-source-{n}.json")
            pool_files[-1].write_text(json.dumps(pool))
    connections.close_all()

    env = dict(os.environ)
    # Every virtual user comes from 127.0.0.1, where a team would come from many addresses:
    # the per-address login limit (which counts logins still being checked) would refuse a
    # busy server's arrivals as if they were guesses.
    env["PANEL_LOGIN_ADDRESS_FAILURES"] = "100000"
    env["PANEL_LOG_LEVEL"] = "INFO"  # production's default level
    # The web server as supervisord's [fcgi-program:web] runs it: one listening socket,
    # handed to each uvicorn process as fd 0.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(2048)
    port = listener.getsockname()[1]
    web_argv = [
        str(VENV_BIN / "uvicorn"),
        "panel.asgi:application",
        "--fd",
        "0",
        "--lifespan",
        "off",
        "--no-proxy-headers",
        "--ws-max-size",
        "2097152",
        "--timeout-graceful-shutdown",
        "5",
    ]
    logs = []
    web_pids = []
    try:
        for n in range(2):
            log = tmp / f"web_{n}.log"
            fh = open(log, "wb")
            proc = subprocess.Popen(
                web_argv,
                stdin=listener.fileno(),
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=env,
            )
            procs.procs.append((f"web_{n}", proc, fh))
            logs.append(log)
            web_pids.append(proc.pid)
    finally:
        listener.close()  # the processes hold it now
    # The two Celery workers and the watcher as supervisord runs them (worker-quick,
    # worker-long, watcher), with scripts/panel-env.sh's defaults for their processes.
    queue = os.environ["PANEL_CELERY_QUEUE"]
    workers = []
    for kind, queue_name, default in (("quick", queue, "4"), ("long", f"{queue}.long", "2")):
        concurrency = os.environ.get(f"PANEL_{kind.upper()}_WORKERS", default)
        log = tmp / f"worker-{kind}.log"
        argv = [str(VENV_BIN / "celery"), "-A", "panel", "worker", "-l", "info"]
        argv += ["-c", concurrency, "-Q", queue_name, "-n", f"{kind}-{os.getpid()}@%h"]
        workers.append(procs.start(f"worker-{kind}", argv, env, log))
        logs.append(log)
        inv.say(f"  worker-{kind}: {concurrency} processes on queue {queue_name}")
    watcher_log = tmp / "watcher.log"
    watcher = procs.start("watcher", [sys.executable, "manage.py", "watch_hosts"], env, watcher_log)
    logs.append(watcher_log)
    inv.wait_http(port, procs.procs[0][1], logs[0])
    inv.say(f"  web server: 2 processes sharing 127.0.0.1:{port}; watcher started")

    loop_run = _event_loop_runner()
    with inv.timed() as t:
        loop_run(warm_up(port, warm_session, world))
    inv.say(f"  warm-up (each host opened, each page rendered by both processes) {t[0]:.1f} s")
    redis_port = urlsplit(os.environ["REDIS_URL"]).port or 6379
    groups = {"web": web_pids, "workers": [w.pid for w in workers], "watcher": [watcher.pid]}
    cpu = Cpu(groups, redis_port)
    logs += [tmp / f"source-{n}.log" for n in range(len(pool_files))]
    log_watch = Logs(logs)
    log_watch.new_errors()

    def start_sources() -> list[subprocess.Popen]:
        """The event sources; started once the baseline is done, which runs without events."""
        sources = []
        for n, pool_file in enumerate(pool_files):
            fh = open(tmp / f"source-{n}.log", "wb")
            argv = [sys.executable, str(Path(__file__).resolve()), "--event-source"]
            argv += [str(pool_file), str(args.events / len(pool_files))]
            source = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=fh, cwd=REPO_ROOT, env=env
            )
            procs.procs.append(("event source", source, fh))
            sources.append(source)
        return sources

    database = (server_url, str(db["NAME"]))
    result = loop_run(drive(args, world, port, cpu, log_watch, start_sources, database, report))

    for proc in procs.procs:
        if proc[1].poll() is not None and proc[0] != "event source":
            inv.say(f"  {proc[0]} exited during the run (code {proc[1].returncode})")
    jobs_summary(report)
    errors = log_watch.new_errors()
    report.add(
        "exceptions and ERROR lines in the servers' logs (whole run)",
        str(sum(s.log_errors for s in result.clock.steps) + errors),
        "0",
        sum(s.log_errors for s in result.clock.steps) + errors == 0,
    )
    for sample in log_watch.samples:
        inv.say(f"\n--- first lines of a logged error ---\n{sample}")
    for sample in result.error_samples:
        inv.say(f"  error answer: {sample}")


def jobs_summary(report: inv.Report) -> None:
    from django.db import connections
    from django.db.models import Count

    from panel.models import Job

    counts = {r["state"]: r["n"] for r in Job.objects.values("state").annotate(n=Count("id"))}
    failed = list(Job.objects.filter(state="failed").values_list("kind", "message")[:3])
    inv.say(f"\n  jobs: {counts}" + (f"; failed, e.g. {failed}" if failed else ""))
    report.add(
        "jobs made by the users, by state", ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    connections.close_all()


def _event_loop_runner() -> Callable[[Any], Any]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the locks
        return asyncio.run
    return uvloop.run


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
    report = inv.Report()
    procs = inv.Processes()
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
            inv.say(f"\nkept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    inv.say(f"\nwhole run: {time.monotonic() - started:.0f} s; load average now {inv.loadavg()}")
    inv.say("\n" + report.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
