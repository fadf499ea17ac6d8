"""The panel as production runs it, for the load run: two web server processes sharing
one listening socket (as supervisord's [fcgi-program:web] runs them), the two Celery
workers and the host watcher with scripts/panel-env.sh's process counts, and the event
sources (this benchmark's script run again with --event-source) once the baseline is
done; the warm-up before anything is timed, and the event loop everything runs on."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchkit as kit
from common import WEB_SERVER_OPTIONS

from .client import Http
from .world import World

LOAD_SCRIPT = Path(__file__).resolve().parent.parent / "load.py"
VENV_BIN = Path(sys.executable).parent
WEB_PROCESSES = 2


def server_env() -> dict[str, str]:
    """The environment of every server process of the run."""
    env = dict(os.environ)
    # Every virtual user comes from 127.0.0.1, where a team would come from many addresses:
    # the per-address login limit (which counts logins still being checked) would refuse a
    # busy server's arrivals as if they were guesses.
    env["PANEL_LOGIN_ADDRESS_FAILURES"] = "100000"
    env["PANEL_LOG_LEVEL"] = "INFO"  # production's default level
    return env


@dataclass
class Stack:
    """The server processes of the run: their listening port, logs and pids by group."""

    procs: kit.Processes
    tmp: Path
    env: dict[str, str]
    port: int = 0
    logs: list[Path] = field(default_factory=list)
    groups: dict[str, list[int]] = field(default_factory=dict)

    def start(self) -> None:
        """The web servers, the workers and the watcher; returns once the web server answers."""
        first_web = self.start_web()
        self.start_workers()
        watcher_log = self.tmp / "watcher.log"
        watcher = self.procs.start(
            "watcher", [sys.executable, "manage.py", "watch_hosts"], self.env, watcher_log
        )
        self.logs.append(watcher_log)
        self.groups["watcher"] = [watcher.pid]
        kit.wait_http(self.port, first_web, self.logs[0])
        kit.say(
            f"  web server: {WEB_PROCESSES} processes sharing 127.0.0.1:{self.port}; watcher started"
        )

    def start_web(self) -> subprocess.Popen:
        """The web server as supervisord's [fcgi-program:web] runs it: one listening socket,
        handed to each uvicorn process as fd 0. Returns the first process."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(2048)
        self.port = listener.getsockname()[1]
        web_argv = [
            str(VENV_BIN / "uvicorn"),
            "panel.asgi:application",
            "--fd",
            "0",
            *WEB_SERVER_OPTIONS,
        ]
        web: list[subprocess.Popen] = []
        try:
            for n in range(WEB_PROCESSES):
                log = self.tmp / f"web_{n}.log"
                fh = open(log, "wb")
                proc = subprocess.Popen(
                    web_argv,
                    stdin=listener.fileno(),
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    cwd=kit.REPO_ROOT,
                    env=self.env,
                )
                self.procs.procs.append((f"web_{n}", proc, fh))
                self.logs.append(log)
                web.append(proc)
        finally:
            listener.close()  # the processes hold it now
        self.groups["web"] = [p.pid for p in web]
        return web[0]

    def start_workers(self) -> None:
        """The two Celery workers as supervisord runs them (worker-quick, worker-long), with
        scripts/panel-env.sh's defaults for their processes."""
        queue = os.environ["PANEL_CELERY_QUEUE"]
        workers = []
        for kind, queue_name, default in (("quick", queue, "4"), ("long", f"{queue}.long", "2")):
            concurrency = os.environ.get(f"PANEL_{kind.upper()}_WORKERS", default)
            log = self.tmp / f"worker-{kind}.log"
            argv = [str(VENV_BIN / "celery"), "-A", "panel", "worker", "-l", "info"]
            argv += ["-c", concurrency, "-Q", queue_name, "-n", f"{kind}-{os.getpid()}@%h"]
            workers.append(self.procs.start(f"worker-{kind}", argv, self.env, log))
            self.logs.append(log)
            kit.say(f"  worker-{kind}: {concurrency} processes on queue {queue_name}")
        self.groups["workers"] = [w.pid for w in workers]

    def start_sources(self, pool_files: list[Path], events: float) -> list[subprocess.Popen]:
        """The event sources, one per pool file, sharing events per second between them;
        started once the baseline is done, which runs without events."""
        sources = []
        for n, pool_file in enumerate(pool_files):
            fh = open(self.tmp / f"source-{n}.log", "wb")
            argv = [sys.executable, str(LOAD_SCRIPT), "--event-source"]
            argv += [str(pool_file), str(events / len(pool_files))]
            source = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=fh, cwd=kit.REPO_ROOT, env=self.env
            )
            self.procs.procs.append(("event source", source, fh))
            sources.append(source)
        return sources


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


def event_loop_runner() -> Callable[[Any], Any]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the locks
        return asyncio.run
    return uvloop.run
