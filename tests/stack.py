"""Pytest plugin: the panel's own processes running against the test database.

``stack`` (session) starts the web server (uvicorn: HTTP + websockets) and a Celery worker as
subprocesses on 127.0.0.1, sharing the SQLite test database file and Redis
with the test process. Tests that use it need ``transactional_db`` so what
they write is committed and visible to those processes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.request import urlopen

import pytest
from django.conf import settings

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Stack:
    url: str
    ws_url: str
    port: int
    websockify_url: str
    # web.log and worker.log: everything the two processes printed.
    logs: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    env["PANEL_CELERY_QUEUE"] = settings.CELERY_TASK_DEFAULT_QUEUE
    env["PANEL_CHANNEL_PREFIX"] = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    env["PANEL_DEV_STATIC"] = "1"
    # DEBUG: the logs are searched for secrets (tests/security), so they say all they can.
    env.setdefault("PANEL_LOG_LEVEL", "DEBUG")
    return env


def web_server(port: int) -> list[str]:
    """The web server command scripts/run.sh runs (one process), on 127.0.0.1:port."""
    return [
        str(Path(sys.executable).parent / "uvicorn"),
        "panel.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *WEB_SERVER_OPTIONS,
    ]


# The options scripts/run.sh gives uvicorn.
WEB_SERVER_OPTIONS = (
    "--lifespan",
    "off",
    "--no-proxy-headers",
    "--ws-max-size",  # 2 MiB: a frame above it ends the connection (uploads send 1 MiB)
    "2097152",
    "--timeout-graceful-shutdown",
    "5",
)


def wait_for_web(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    """Until the web server at url answers /login/; its log in the error if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urlopen(url + "/login/", timeout=2).read()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the web server did not start:\n" + log.read_text()) from None
            time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="session")
def stack(django_db_setup, django_db_blocker, tmp_path_factory):
    logs = tmp_path_factory.mktemp("stack-logs")
    port = _free_port()
    vnc_port = _free_port()
    env = _env()
    env["PANEL_WEBSOCKIFY_URL"] = f"ws://127.0.0.1:{vnc_port}/"
    venv_bin = Path(sys.executable).parent
    web_log = open(logs / "web.log", "wb")
    worker_log = open(logs / "worker.log", "wb")
    web = subprocess.Popen(
        web_server(port),
        cwd=REPO_ROOT,
        env=env,
        stdout=web_log,
        stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen(
        [
            str(venv_bin / "celery"),
            "-A",
            "panel",
            "worker",
            "-l",
            env["PANEL_LOG_LEVEL"].lower(),
            "-c",
            "2",
            "-Q",
            settings.CELERY_TASK_DEFAULT_QUEUE,
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"test-{port}@%h",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
    )
    websockify = subprocess.Popen(
        [
            str(venv_bin / "websockify"),
            "--token-plugin",
            "panel.console_tokens.TicketTokens",
            "--token-source",
            settings.REDIS_URL,
            f"127.0.0.1:{vnc_port}",
        ],
        cwd=REPO_ROOT,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_web(url, web, logs / "web.log")
        yield Stack(
            url=url,
            ws_url=f"ws://127.0.0.1:{port}",
            port=port,
            websockify_url=f"ws://127.0.0.1:{vnc_port}",
            logs=logs,
        )
    finally:
        _stop(websockify)
        _stop(web)
        _stop(worker)
        web_log.close()
        worker_log.close()
        for name in ("web.log", "worker.log"):
            text = (logs / name).read_text(errors="replace")
            if "Traceback" in text:
                sys.stderr.write(f"\n--- {name} ---\n{text[-5000:]}\n")


def open_ws(stack: Stack, path: str, sessionid: str | None = None):  # type: ignore[no-untyped-def]
    """A websocket client on the running stack, as a browser with that session would open it."""
    from websockets.sync.client import connect

    headers = {"Origin": stack.url}
    if sessionid:
        headers["Cookie"] = f"sessionid={sessionid}"
    return connect(stack.ws_url + path, additional_headers=headers, open_timeout=10)


def refusal(stack: Stack, path: str, sessionid: str | None = None) -> str:
    """How the server turned the websocket away: 'close <code>' or 'HTTP <status>'."""
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    try:
        with open_ws(stack, path, sessionid) as ws:
            message = ws.recv(timeout=10)
    except InvalidStatus as exc:
        return f"HTTP {exc.response.status_code}"
    except ConnectionClosed as exc:
        return f"close {exc.rcvd.code if exc.rcvd else None}"
    return f"accepted and sent {message}"


@contextlib.contextmanager
def worker_holding_jobs() -> Iterator[None]:
    """The stack's worker takes no task until the block ends, as when the queue is backed
    up: what is queued meanwhile waits in Redis, where a test can race it or lose it."""
    from panel.celery import app

    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    workers: list[str] = []
    # The worker may still be starting when the first test of the stack runs.
    deadline = time.monotonic() + 60
    while not workers and time.monotonic() < deadline:
        replies = app.control.cancel_consumer(queue, reply=True, timeout=2)
        workers = [name for reply in replies for name in reply]
    assert workers, "no worker answered within 60 s; the stack's worker is not running"
    try:
        yield
    finally:
        app.control.add_consumer(queue, destination=workers, reply=True, timeout=5)
