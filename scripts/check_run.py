"""Proves that `make run` works from the runtime lock alone, as on a fresh machine.

Run by scripts/check-run.sh with the Python of a virtualenv made from requirements.txt
only (no test packages), so it uses nothing but the standard library and that lock.
It starts `make run` in its own process group on spare ports, with its own data folder,
Redis database and Celery queue, and checks each process by what it does:

- web: the login page answers 200 and the API 401 without credentials;
- worker-quick: the first host refresh that `manage.py bootstrap` queued finishes there;
- worker-long: a long job (a fully preallocated volume, in a pool made for it) finishes
  there;
- beat: it sends the periodic reconcile (PANEL_RECONCILE_SECONDS is short here);
- websockify: it answers on its port;
- watcher (two, sharing the hosts out): a domain defined behind the panel's back (virsh)
  appears in the API;
- collector (two, likewise): the local host's usage sample appears in the API;

and that supervisord reports every process running. Then it sends SIGTERM to the process
group, as Ctrl-C or a service manager would, and every process must be gone in 30 s.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB_WORKERS = 2
# Two of each, sharing the one host by leases: each check passes whichever holds it.
WATCHERS = COLLECTORS = 2
# supervisord's names: the web server's processes, then the others.
PROGRAMS = (
    *(f"web_{n}" for n in range(WEB_WORKERS)),
    "worker-quick",
    "worker-long",
    "beat",
    "websockify",
    *(f"watcher_{n}" for n in range(WATCHERS)),
    *(f"collector_{n}" for n in range(COLLECTORS)),
    "ha-monitor",
)
STOP_SECONDS = 30
# Where the long worker's check makes a directory pool (one of PANEL_STORAGE_ROOTS).
POOL_ROOT = Path("/var/lib/libvirt/images")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def say(text: str) -> None:
    print(f"check-run: {text}", flush=True)


def wait_for(what: str, probe: Callable[[], object], timeout: float) -> object:
    """Call probe until it returns something true; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            result = probe()
        except (OSError, ValueError, KeyError) as exc:
            last_error = f" (last error: {exc})"
            result = None
        if result:
            return result
        time.sleep(0.5)
    raise SystemExit(f"check-run: FAILED: {what} within {timeout:.0f} s{last_error}")


class Panel:
    """HTTP calls to the panel under test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.token = ""

    def status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as answer:
                return answer.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def api(self, path: str, body: dict | None = None, method: str | None = None) -> dict:
        request = urllib.request.Request(
            self.url + "/api/v1/" + path,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method=method,
        )
        if self.token:
            request.add_header("Authorization", f"Token {self.token}")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read() or b"{}")

    def finished_job(self, job_id: int) -> dict | None:
        """The job once it ended (None while it is queued or running)."""
        job = self.api(f"jobs/{job_id}/")
        return None if job["state"] in ("queued", "running") else job


def websockify_answers(port: int) -> bool:
    """websockify serves its port: an HTTP request gets its own refusal (it proxies
    websockets only), with its name in the Server header."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        head = sock.recv(500)
    return head.startswith(b"HTTP/1.1 405") and b"Server: WebSockify" in head


def descendants(pid: int) -> set[int]:
    """pid and every process below it, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        todo.extend(children.get(current, []))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def virsh(*args: str, stdin: str | None = None) -> None:
    subprocess.run(
        ["virsh", "-q", "-c", "qemu:///system", *args],
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
    )


def define_stray_domain(name: str) -> None:
    """A domain defined behind the panel's back (never started), for the watcher to see."""
    virsh(
        "define",
        "/dev/stdin",
        stdin=(
            f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory>"
            "<os><type arch='x86_64'>hvm</type></os></domain>"
        ),
    )


def main() -> None:
    var_dir = Path(sys.argv[1])
    venv = Path(sys.executable).parent.parent
    port, ws_port = free_port(), free_port()
    password = base64.urlsafe_b64encode(os.urandom(12)).decode()
    env = {
        **os.environ,
        "PANEL_VENV": str(venv),
        "PANEL_VAR_DIR": str(var_dir),
        "PANEL_PORT": str(port),
        "PANEL_WEBSOCKIFY_PORT": str(ws_port),
        "PANEL_ADMIN_PASSWORD": password,
        "PANEL_CELERY_QUEUE": f"panel-check-{os.getpid()}",
        "PANEL_RECONCILE_SECONDS": "5",
        "PANEL_STATS_INTERVAL": "2",
        "PANEL_WEB_WORKERS": str(WEB_WORKERS),
        "PANEL_WATCHERS": str(WATCHERS),
        "PANEL_COLLECTORS": str(COLLECTORS),
    }
    if not env.get("REDIS_URL"):
        sys.exit("check_run: set REDIS_URL (scripts/check-run.sh sets it to the panel's Redis).")
    log_path = var_dir / "make-run.log"
    var_dir.mkdir(parents=True, exist_ok=True)
    database = "PostgreSQL" if env.get("PANEL_DB") == "postgres" else "SQLite"
    say(f"make run on port {port} (websockify {ws_port}), {database}, data in {var_dir}")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    domain = f"panel-runcheck-{os.getpid()}"
    try:
        check(proc, Panel(f"http://127.0.0.1:{port}"), password, ws_port, var_dir, domain)
        stop(proc)
    except BaseException:
        sys.stdout.write(f"--- {log_path} ---\n{log_path.read_text(errors='replace')[-8000:]}\n")
        for name in (*PROGRAMS, "supervisord"):
            path = var_dir / "log" / f"{name}.log"
            if path.exists():
                sys.stdout.write(f"--- {path} ---\n{path.read_text(errors='replace')[-3000:]}\n")
        for pid in descendants(proc.pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        raise
    finally:
        subprocess.run(
            ["virsh", "-q", "-c", "qemu:///system", "undefine", domain], capture_output=True
        )
        remove_pool(domain)
    say("PASSED")


def check(
    proc: subprocess.Popen, panel: Panel, password: str, ws_port: int, var_dir: Path, domain: str
) -> None:
    def answering() -> bool:
        if proc.poll() is not None:
            raise SystemExit(f"check-run: FAILED: make run exited with {proc.returncode}")
        return panel.status("/login/") == 200

    wait_for("the login page answers", answering, 600)
    say("web: the login page answers 200")
    assert panel.status("/api/v1/vms/") == 401, "the API must answer 401 without credentials"
    say("web: the API answers 401 without credentials")

    panel.token = panel.api("auth/token/", {"username": "admin", "password": password})["token"]
    refresh = wait_for(
        "the quick worker finishes the first host refresh",
        lambda: [j for j in panel.api("jobs/")["results"] if j["state"] == "succeeded"],
        120,
    )[0]
    say(f"worker-quick: ran job #{refresh['id']} ({refresh['kind']})")

    host = panel.api("hosts/")["results"][0]
    check_long_worker(panel, host, domain)

    beat_log = var_dir / "log" / "beat.log"
    wait_for(
        "beat sends the periodic reconcile",
        lambda: "Sending due task reconcile-all-hosts" in beat_log.read_text(),
        60,
    )
    say("beat: sent the periodic reconcile")

    wait_for("websockify answers", lambda: websockify_answers(ws_port), 30)
    say("websockify: answers on its port")

    define_stray_domain(domain)
    wait_for(
        "the watcher adds a domain defined behind the panel's back",
        lambda: panel.api(f"vms/?search={domain}")["count"] == 1,
        30,
    )
    say("watcher: a domain defined with virsh appeared in the API")
    virsh("undefine", domain)

    wait_for(
        "the collector stores the host's usage",
        lambda: panel.api(f"hosts/{host['id']}/stats/").get("latest"),
        60,
    )
    say("collector: the host's usage sample is in the API")

    check_supervised(var_dir)


def check_supervised(var_dir: Path) -> None:
    """supervisord reports every program of the panel running."""
    status = subprocess.run(
        ["scripts/panelctl", "status"],
        cwd=ROOT,
        env={
            **os.environ,
            "PANEL_VENV": str(Path(sys.executable).parent.parent),
            "PANEL_VAR_DIR": str(var_dir),
        },
        capture_output=True,
        text=True,
    ).stdout
    running = {
        line.split()[0].split(":")[-1] for line in status.splitlines() if " RUNNING " in line
    }
    missing = [name for name in PROGRAMS if name not in running]
    assert not missing, f"supervisord does not report these running: {missing}\n{status}"
    say(f"supervisord: all {len(PROGRAMS)} processes RUNNING")


def check_long_worker(panel: Panel, host: dict, name: str) -> None:
    """A long job (a fully preallocated volume: every byte written) runs on the long
    worker; the volume and its pool are removed again."""
    pool = panel.api(
        "pools/",
        {"host": host["id"], "name": name, "type": "dir", "target_path": str(POOL_ROOT / name)},
    )
    queued = panel.api(
        "volumes/",
        {
            "pool": pool["id"],
            "name": "check.img",
            "format": "raw",
            "capacity_gib": "0.01",
            "preallocation": "full",
        },
    )
    job = wait_for(
        "the long worker makes a fully preallocated volume",
        lambda: panel.finished_job(queued["job"]),
        60,
    )
    assert job["state"] == "succeeded", job
    assert job["result"]["worker"].startswith("long@"), job
    say(f"worker-long: ran job #{job['id']} ({job['kind']})")
    panel.api(f"volumes/{job['result']['volume']}/", method="DELETE")
    panel.api(f"pools/{pool['id']}/?delete_target=true", method="DELETE")


def remove_pool(name: str) -> None:
    """The pool check_long_worker made, and its directory, if they are still there."""
    for command in ("pool-destroy", "pool-undefine"):
        subprocess.run(["virsh", "-q", "-c", "qemu:///system", command, name], capture_output=True)
    shutil.rmtree(POOL_ROOT / name, ignore_errors=True)


def stop(proc: subprocess.Popen) -> None:
    pids = descendants(proc.pid)
    say(f"SIGTERM to the process group ({len(pids)} processes)")
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    while time.monotonic() - started < STOP_SECONDS:
        left = [pid for pid in pids if alive(pid)]
        if not left:
            say(f"every process was gone {time.monotonic() - started:.1f} s after SIGTERM")
            return
        time.sleep(0.2)
    left = [pid for pid in pids if alive(pid)]
    names = [Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")[:80] for pid in left]
    raise SystemExit(f"check-run: FAILED: still running {STOP_SECONDS} s after SIGTERM: {names}")


if __name__ == "__main__":
    main()
