"""The load generator's machinery, on one event loop for every user, request and
websocket: requests sent when due and timed from then (send, offer), a step's counters
(mark, settle), websockets opened and listened to, the event sources' reports read, our
database's connections counted, and events swept once too late. The phases of the run
build on it (phases.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import time
from collections.abc import Callable
from typing import Any

from .client import Http, route
from .events import Events, Sock
from .limits import MAX_IN_FLIGHT, REQUEST_TIMEOUT_S
from .steps import Clock, Step
from .usage import Cpu, Logs
from .users import Action, VirtualUser
from .world import World


class Generator:
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

    # waiting, closing, and what runs alongside

    async def drain(self, step: Step, seconds: float) -> None:
        """Wait (bounded) for the requests still in flight."""
        deadline = time.monotonic() + seconds
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

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
