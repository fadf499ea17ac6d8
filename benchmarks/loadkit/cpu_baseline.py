"""Phase [0] of the load run: the server's own CPU per request of each kind, measured in
the benchmark process through Django's test client before any server runs, with a new
database connection per request (as configured) and with connections kept, beside
PostgreSQL's CPU for each; and what that makes of the read mix's ceiling on one core."""

from __future__ import annotations

import random
import time
from typing import Any

import benchkit as kit

from .limits import READS
from .steps import ms
from .usage import postgres_cpu
from .users import VirtualUser
from .world import World

Timings = dict[str, tuple[float, float]]  # kind: (CPU s, wall s) per request


def cpu_per_kind(world: World, report: kit.Report, n: int = 12) -> None:
    """The server's own CPU per request of each kind: the same requests through Django's
    test client in this process, before any server runs, as configured (a new database
    connection per request) and with connections kept, with PostgreSQL's CPU for each."""
    from django.db import connection

    kit.phase(f"[0] server CPU per request, in this process (Django test client, {n} each)")
    clients = logged_in_clients(world)
    kinds = ["login page", *READS]
    configured = connection.settings_dict["CONN_MAX_AGE"]
    try:
        new_each, pg_new = one_pass(clients, kinds, n, close=True)
        connection.close()
        connection.settings_dict["CONN_MAX_AGE"] = None
        kept, pg_kept = one_pass(clients, kinds, n, close=False)
    finally:
        connection.close()
        connection.settings_dict["CONN_MAX_AGE"] = configured
    kit.say(f"  {'':<16} {'a new connection per request':>30}   {'connections kept':>18}")
    for kind in kinds:
        (c, w), (ck, wk) = new_each[kind], kept[kind]
        kit.say(
            f"  {kind:<16} CPU {c * 1000:5.1f} ms, wall {w * 1000:5.1f} ms   "
            f"CPU {ck * 1000:5.1f} ms, wall {wk * 1000:5.1f} ms"
        )
    kit.say(
        f"  PostgreSQL CPU per request (all its work on the machine): {pg_new * 1000:.1f} ms with "
        f"a new connection per request (CONN_MAX_AGE={configured}, as configured), "
        f"{pg_kept * 1000:.1f} ms with connections kept"
    )
    per_read = sum(READS[k] * new_each[k][0] for k in READS) / sum(READS.values())
    kit.say(
        f"  the read mix: {per_read * 1000:.1f} ms of server CPU per request, so one core serves "
        f"at most {1 / per_read:.0f} a second before the database, the websockets, the workers "
        f"and the web server's own HTTP work take their share"
    )
    report.add("baseline: server CPU per request of the read mix (in-process)", ms(per_read))
    report.add(
        "baseline: PostgreSQL CPU per request, new connection / kept",
        f"{pg_new * 1000:.1f} ms / {pg_kept * 1000:.1f} ms",
    )


def logged_in_clients(world: World) -> dict[str, Any]:
    """Test clients logged in as the first admin and the first operator, each with a virtual
    user making its requests, and an anonymous one."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    User = get_user_model()
    picks = [next(u for u in world.users if u.role == r) for r in ("admin", "operator")]
    users = []
    for spec in picks:
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(User.objects.get(pk=spec.pk))
        users.append((VirtualUser(spec, 0, world, random.Random(spec.pk)), client))
    return {"users": users, "anonymous": Client(HTTP_HOST="127.0.0.1")}


def one_pass(
    clients: dict[str, Any], kinds: list[str], n: int, close: bool
) -> tuple[Timings, float]:
    """n requests of each kind (after two to warm up): the mean CPU and wall time of each,
    and PostgreSQL's CPU per request."""
    from django.db import close_old_connections

    out: Timings = {}
    pg0, count = postgres_cpu(), 0
    users = clients["users"]
    for kind in kinds:
        cpu: list[float] = []
        wall: list[float] = []
        for i in range(n + 2):
            vuser, client = users[i % len(users)]
            if kind == "login page":
                client, path, api = clients["anonymous"], "/login/", False
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
    return out, (postgres_cpu() - pg0) / count
