"""make run's processes under supervisord: each one, killed with SIGKILL while the panel is
in use, is started again within 10 s, and meanwhile the pages and the API keep answering.

The panel here is scripts/run.sh itself (the command make run ends in), in a folder of its
own with its own SQLite database, Celery queue and channel prefix, on the real local
libvirtd. A client thread keeps reading a page, the API and the login page the whole time.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from scripts import check_run
from scripts.check_run import define_stray_domain, descendants, virsh, websockify_answers
from tests.stack import REPO_ROOT, SERVER_LOGS, free_port, process_env

pytestmark = [pytest.mark.libvirt, pytest.mark.stack]

PROGRAMS = {
    # supervisord's name: what shows the process is doing its work again.
    "web:web_0": "serves",
    "panel:worker-quick": "runs a host refresh",
    "panel:worker-long": "runs a long job",
    "panel:beat": "sends the periodic reconcile",
    "panel:websockify": "answers",
    "panel:watcher_0": "adds a domain defined behind the panel's back",
    "panel:collector_0": "stores a new usage sample",
    "panel:ha-monitor": "watches the fenced hosts again",
}
BACK_WITHIN = 10.0


@dataclass
class Panel:
    url: str
    var_dir: Path
    env: dict[str, str]
    password: str
    websockify_port: int
    proc: subprocess.Popen
    session: requests.Session = field(default_factory=requests.Session)

    def ctl(self, *args: str) -> str:
        return subprocess.run(
            ["scripts/panelctl", *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout

    def pid(self, name: str) -> int:
        out = self.ctl("pid", name).strip()
        return int(out) if out.isdigit() else 0

    def running(self, name: str) -> bool:
        return " RUNNING " in self.ctl("status", name)

    def api(self, path: str, **kwargs) -> requests.Response:
        return self.session.request(
            kwargs.pop("method", "GET"), f"{self.url}/api/v1/{path}", timeout=10, **kwargs
        )

    def log(self, name: str) -> str:
        path = self.var_dir / "log" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _wait(what: str, probe, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def panel(django_db_setup, tmp_path_factory) -> Iterator[Panel]:
    var_dir = tmp_path_factory.mktemp("supervised")
    port, ws_port = free_port(), free_port()
    password = "sup-" + uuid.uuid4().hex[:12]
    env = {
        **process_env(),
        "DATABASE_URL": f"sqlite:///{var_dir / 'panel.sqlite3'}",
        "PANEL_VAR_DIR": str(var_dir),
        "PANEL_VENV": str(Path(sys.executable).parent.parent),
        "PANEL_PORT": str(port),
        "PANEL_WEBSOCKIFY_PORT": str(ws_port),
        "PANEL_ADMIN_PASSWORD": password,
        "PANEL_CELERY_QUEUE": f"supervised-{port}",
        "PANEL_CHANNEL_PREFIX": f"supervised-{port}",
        "PANEL_RECONCILE_SECONDS": "3",
        "PANEL_STATS_INTERVAL": "1",
        "PANEL_LOG_LEVEL": "INFO",
        "REDIS_URL": settings.REDIS_URL,
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=REPO_ROOT,
        env=env,
        check=True,
    )
    log = var_dir / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["scripts/run.sh"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    panel = Panel(f"http://127.0.0.1:{port}", var_dir, env, password, ws_port, proc)
    for name in check_run.PROGRAMS:
        SERVER_LOGS.watch(var_dir / "log" / f"{name}.log")
    try:
        _wait("the panel answers", lambda: _answers(panel.url + "/login/"), 120)
        token = panel.api(
            "auth/token/", method="POST", json={"username": "admin", "password": password}
        ).json()["token"]
        panel.session.headers["Authorization"] = f"Token {token}"
        _wait("every process is RUNNING", lambda: all(panel.running(n) for n in PROGRAMS), 60)
        # The first host refresh (a job bootstrap queued) ends before any process is killed.
        _wait(
            "the first host refresh ends",
            lambda: all(j["state"] == "succeeded" for j in panel.api("jobs/").json()["results"]),
            300,
        )
        yield panel
    finally:
        pids = descendants(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _safely(probe, *args) -> bool:  # type: ignore[no-untyped-def]
    with contextlib.suppress(OSError):
        return bool(probe(*args))
    return False


def _answers(url: str) -> bool:
    with contextlib.suppress(requests.RequestException):
        return requests.get(url, timeout=5).status_code == 200
    return False


def _like_a_browser(session: requests.Session) -> requests.Session:
    """A GET cut off by a server process that died is sent once more, as browsers do
    with idempotent requests on a broken connection."""
    retry = Retry(total=1, connect=1, read=1, status=0, allowed_methods={"GET"})
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return session


class Traffic:
    """A user reading the panel nonstop: the login page, the dashboard, the VM API."""

    def __init__(self, panel: Panel) -> None:
        self.panel = panel
        self.anonymous = _like_a_browser(requests.Session())
        self.api = _like_a_browser(requests.Session())
        self.api.headers.update(panel.session.headers)
        self.browser = _like_a_browser(requests.Session())
        login = self.browser.get(panel.url + "/login/", timeout=10)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        answer = self.browser.post(
            panel.url + "/login/",
            data={"username": "admin", "password": panel.password, "csrfmiddlewaretoken": csrf},
            timeout=10,
        )
        assert answer.url.rstrip("/") == panel.url, "the form login did not reach the dashboard"
        self.ok = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for path, session in (
                ("/login/", self.anonymous),
                ("/", self.browser),
                ("/api/v1/vms/", self.api),
            ):
                try:
                    status = session.get(self.panel.url + path, timeout=10).status_code
                except requests.RequestException as exc:
                    self.failed.append(f"{path}: {type(exc).__name__}")
                    continue
                if status == 200:
                    self.ok += 1
                else:
                    self.failed.append(f"{path}: HTTP {status}")

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def _works_again(panel: Panel, name: str, killed_at: float) -> None:
    """Wait until the restarted process has done its kind of work."""
    if name == "panel:worker-long":
        runcheck = check_run.Panel(panel.url)
        runcheck.token = panel.session.headers["Authorization"].removeprefix("Token ")
        pool = f"supervised-{uuid.uuid4().hex[:8]}"
        try:
            check_run.check_long_worker(runcheck, panel.api("hosts/").json()["results"][0], pool)
        finally:
            check_run.remove_pool(pool)
    elif name == "panel:worker-quick":
        host = panel.api("hosts/").json()["results"][0]
        queued = panel.api(f"hosts/{host['id']}/refresh/", method="POST")
        assert queued.status_code == 202, queued.text
        job = {"id": queued.json()["job"]}
        _wait(
            "the restarted worker runs a host refresh",
            lambda: panel.api(f"jobs/{job['id']}/").json()["state"] == "succeeded",
            60,
        )
    elif name == "panel:beat":
        before = panel.log("beat").count("Sending due task reconcile-all-hosts")
        _wait(
            "the restarted beat sends the periodic reconcile",
            lambda: panel.log("beat").count("Sending due task reconcile-all-hosts") > before,
            30,
        )
    elif name == "panel:websockify":
        _wait(
            "the restarted websockify answers",
            lambda: _safely(websockify_answers, panel.websockify_port),
            30,
        )
    elif name == "panel:watcher_0":
        domain = f"supervised-{uuid.uuid4().hex[:8]}"
        define_stray_domain(domain)
        try:
            _wait(
                "the restarted watcher adds a domain defined with virsh",
                lambda: panel.api(f"vms/?search={domain}").json()["count"] == 1,
                30,
            )
        finally:
            virsh("undefine", domain)
    elif name == "panel:ha-monitor":  # its first start said so once, its restart again
        _wait(
            "the restarted HA monitor watches the fenced hosts again",
            lambda: panel.log("ha-monitor").count("HA monitor: renewing every") >= 2,
            30,
        )
    elif name == "panel:collector_0":
        host = panel.api("hosts/").json()["results"][0]
        _wait(
            "the restarted collector stores a new sample",
            lambda: (
                (panel.api(f"hosts/{host['id']}/stats/").json().get("latest") or {}).get("t", 0)
                > killed_at + 1
            ),
            30,
        )


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_it_starts_a_killed_process_again_while_the_panel_keeps_answering(panel, name):
    old = panel.pid(name)
    assert old > 0, panel.ctl("status")
    with Traffic(panel) as traffic:
        time.sleep(1)
        ok_before = traffic.ok
        os.kill(old, signal.SIGKILL)
        killed_at = time.time()
        started = time.monotonic()
        _wait(
            f"{name} is running again under a new process",
            lambda: panel.pid(name) not in (0, old) and panel.running(name),
            BACK_WITHIN,
        )
        back_after = time.monotonic() - started
        _works_again(panel, name, killed_at)
        time.sleep(1)
    # The panel answered throughout: the other web process took over at once.
    assert traffic.failed == []
    assert traffic.ok > ok_before + 3, "the client got no answers after the kill"
    program = name.split(":")[1]
    assert f"exited: {program} (terminated by SIGKILL; not expected)" in panel.log("supervisord")
    print(f"{name}: back after {back_after:.1f} s; {traffic.ok} answers, {traffic.failed}")
