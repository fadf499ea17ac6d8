"""Pytest plugin: the panel's own processes running against the test database.

``stack`` (session) starts the web server (uvicorn: HTTP + websockets), two Celery
workers (quick work and long work, each on its own queue, as in production) and
websockify as subprocesses on 127.0.0.1, sharing the test database (the SQLite file
or the PostgreSQL test database) and Redis with the test process. Tests that use it
need ``transactional_db`` so what they write is committed and visible to those processes.

Every process a test starts through ``spawn`` (the stack's, and the watchers, workers
and collectors of single tests) logs to a file that is read after each test: a test
fails when its run added a traceback or an ERROR line there, unless ALLOWED_LOG_ERRORS
says why that line is expected.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote
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
    # web.log, worker-quick.log, worker-long.log and websockify.log: everything the
    # processes printed.
    logs: Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Where the stack's processes send mail: tests that read it start an SMTP server there.
MAIL_PORT = free_port()


def database_url() -> str:
    """The test database, as DATABASE_URL for the processes the tests start."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    login = quote(db["USER"], safe="")
    if db["PASSWORD"]:
        login += ":" + quote(db["PASSWORD"], safe="")
    # The host may be a socket directory: percent-encoded, as dj-database-url reads it.
    host = quote(db["HOST"], safe="")
    return f"postgres://{login}@{host}:{db['PORT']}/{quote(db['NAME'])}"


# The loopback mirror the image library's tests serve images from (tests/library): the
# panel's processes allow it, as an admin lists a local mirror in PANEL_LIBRARY_MIRRORS.
# Its port is picked once, when the test session starts.
LIBRARY_MIRROR_PORT = free_port()
LIBRARY_MIRROR = f"http://127.0.0.1:{LIBRARY_MIRROR_PORT}/images/"


def process_env() -> dict[str, str]:
    """The environment of a panel process started by the tests: this run's database,
    Celery queue and channel prefix, as production would set them."""
    env = dict(os.environ)
    # Only the test process may call the ORM from its event loop (Playwright's sync API
    # runs one in the test thread); a server that does so must fail here as in production.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env["DATABASE_URL"] = database_url()
    env["PANEL_CELERY_QUEUE"] = settings.CELERY_TASK_DEFAULT_QUEUE
    env["PANEL_CHANNEL_PREFIX"] = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    env["PANEL_DEV_STATIC"] = "1"
    env["PANEL_LIBRARY_MIRRORS"] = LIBRARY_MIRROR
    # DEBUG: the logs are searched for secrets (tests/security), so they say all they can.
    env.setdefault("PANEL_LOG_LEVEL", "DEBUG")
    # Notifications: mail to the SMTP server a test starts on MAIL_PORT, webhooks to
    # receivers on 127.0.0.1 only (other loopback addresses stay refused), retried soon.
    env["PANEL_SMTP_HOST"] = "127.0.0.1"
    env["PANEL_SMTP_PORT"] = str(MAIL_PORT)
    env["PANEL_WEBHOOK_ALLOW"] = "127.0.0.1/32"
    env["PANEL_NOTIFY_RETRY_SECONDS"] = "1"
    return env


# Lines that may appear in the logs of the processes the tests start without failing the
# test that caused them: (pattern searched in the error's whole text, why it is expected).
ALLOWED_LOG_ERRORS: list[tuple[str, str]] = [
    (
        r"ERROR django\.request: Service Unavailable: ",
        "Django logs every 5xx answer at ERROR; 503 is the panel's own answer when a host, "
        "Redis or the database cannot be reached (tests/faults cause it on purpose), never "
        "an unhandled error: those are 500s, with a traceback.",
    ),
]

# A line that starts an error: a traceback, or a record at level ERROR or CRITICAL in the
# formats of Django's logging ("... ERROR name: ..."), Celery ("[...: ERROR/MainProcess]")
# and uvicorn ("ERROR:    ...").
_ERROR_START = re.compile(
    r"Traceback \(most recent call last\)|(^|[\s\[/])(ERROR|CRITICAL)[\s/:\]]"
)


def _error_blocks(text: str) -> list[str]:
    """The errors in a stretch of log: each starting line with its traceback, if any."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    in_traceback = False
    for line in text.splitlines():
        if current is not None:
            continued = (
                line[:1].isspace()
                or not line
                or line.startswith(("Traceback (most recent", "During handling", "The above"))
            )
            if continued or in_traceback:
                current.append(line)
                if line.startswith("Traceback (most recent"):
                    in_traceback = True
                elif in_traceback and line and not line[:1].isspace():
                    in_traceback = False  # the exception's own line ends the traceback
                continue
            current = None
        if _ERROR_START.search(line):
            current = [line]
            blocks.append(current)
            in_traceback = line.startswith("Traceback (most recent")
    return ["\n".join(block).rstrip() for block in blocks]


class ServerLogs:
    """The log files of the panel processes the tests started, read after each test."""

    def __init__(self) -> None:
        self.paths: list[Path] = []

    def watch(self, path: Path) -> None:
        self.paths.append(path)

    def ends(self) -> dict[Path, int]:
        return {path: path.stat().st_size if path.exists() else 0 for path in self.paths}

    def errors_since(self, ends: dict[Path, int], allowed: list[tuple[str, str]] = ()) -> list[str]:
        found = []
        for path in self.paths:
            if not path.exists():
                continue
            with path.open("rb") as f:
                f.seek(ends.get(path, 0))
                text = f.read().decode(errors="replace")
            for block in _error_blocks(text):
                if not any(
                    re.search(pattern, block) for pattern, _ in [*ALLOWED_LOG_ERRORS, *allowed]
                ):
                    found.append(f"{path.name}: {block}")
        return found


SERVER_LOGS = ServerLogs()


@pytest.fixture(autouse=True)
def _no_server_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test fails when the panel processes logged an error while it ran, but for the
    errors it causes on purpose: @pytest.mark.allow_log_errors(pattern, why)."""
    ends = SERVER_LOGS.ends()
    yield
    allowed = [tuple(m.args) for m in request.node.iter_markers("allow_log_errors")]
    errors = SERVER_LOGS.errors_since(ends, allowed)
    if errors:
        pytest.fail(
            "the panel's processes logged errors during this test:\n\n" + "\n\n".join(errors),
            pytrace=False,
        )


def spawn(
    args: list[str],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start one of the panel's processes with process_env() (or env) from the repository,
    its output in log, which is then read for errors after each test."""
    SERVER_LOGS.watch(log)
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            env=process_env() if env is None else env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )


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


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it is still there after 15 s."""
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
    port = free_port()
    vnc_port = free_port()
    env = process_env()
    env["PANEL_WEBSOCKIFY_URL"] = f"ws://127.0.0.1:{vnc_port}/"
    venv_bin = Path(sys.executable).parent
    web = spawn(web_server(port), logs / "web.log", env=env)
    workers = [
        spawn(
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
                queue,
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"test-{kind}-{port}@%h",
            ],
            logs / f"worker-{kind}.log",
            env=env,
        )
        for kind, queue in (
            ("quick", settings.CELERY_TASK_DEFAULT_QUEUE),
            ("long", settings.PANEL_LONG_QUEUE),
        )
    ]
    websockify = spawn(
        [
            str(venv_bin / "websockify"),
            "--token-plugin",
            "panel.console_tokens.TicketTokens",
            "--token-source",
            settings.REDIS_URL,
            f"127.0.0.1:{vnc_port}",
        ],
        logs / "websockify.log",
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
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
        stop_process(websockify)
        stop_process(web)
        for worker in workers:
            stop_process(worker)


def open_ws(stack: Stack, path: str, sessionid: str | None = None):  # type: ignore[no-untyped-def]
    """A websocket client on the running stack, as a browser with that session would open it."""
    from websockets.sync.client import connect

    headers = {"Origin": stack.url}
    if sessionid:
        headers["Cookie"] = f"sessionid={sessionid}"
    return connect(stack.ws_url + path, additional_headers=headers, open_timeout=10)


def ws_read_until(ws, needle: bytes, timeout: float = 30) -> bytes:  # type: ignore[no-untyped-def]
    """What a websocket sent until needle came (text frames as UTF-8); fails after timeout
    with the end of what did come."""
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{needle!r} never came; got {seen[-300:]!r}")
        try:
            message = ws.recv(timeout=remaining)
        except TimeoutError:
            continue
        seen += message if isinstance(message, bytes) else message.encode()
    return seen


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
    """The stack's workers take no task until the block ends, as when the queues are
    backed up: what is queued meanwhile waits in Redis, where a test can race it or lose
    it."""
    from panel.celery import app

    wanted = {settings.CELERY_TASK_DEFAULT_QUEUE, settings.PANEL_LONG_QUEUE}
    # (worker, queue) for this run's queues only: a control message without a destination
    # reaches every worker on this Redis database (another run's too), and add_consumer
    # would then make them all take this queue.
    taken: list[tuple[str, str]] = []
    deadline = time.monotonic() + 60
    while {queue for _, queue in taken} != wanted and time.monotonic() < deadline:
        active = app.control.inspect(timeout=2).active_queues() or {}
        taken = [
            (name, q["name"])
            for name, queues in active.items()
            for q in queues
            if q["name"] in wanted
        ]
    missing = wanted - {queue for _, queue in taken}
    assert not missing, f"no worker took {missing} within 60 s; the stack's workers are not running"
    for name, queue in taken:
        app.control.cancel_consumer(queue, destination=[name], reply=True, timeout=5)
    try:
        yield
    finally:
        for name, queue in taken:
            app.control.add_consumer(queue, destination=[name], reply=True, timeout=5)
