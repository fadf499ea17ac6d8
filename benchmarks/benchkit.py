"""What the benchmarks share once they run: printing (say, phase), timing (timed,
percentile), the closing table of figures against goals (Report), the subprocesses they
start and stop (Processes, proc_status, wait_http), and HTTP timing against the web
server with the SQL of one request replayed in process (Timer, query_profile). Until the
split it lived in vm_inventory.py, which the other scripts imported for it."""

from __future__ import annotations

import contextlib
import http.client
import math
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


# --- small helpers --------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of values (which need not be sorted)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    result = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                result[key] = int(value.split()[0])
    return result


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def mib(kib: int) -> float:
    return kib / 1024


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """with timed() as t: ...; t[0] is the elapsed seconds afterwards."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


RUN_STARTED = time.monotonic()


def say(text: str = "") -> None:
    print(text, flush=True)


def phase(title: str) -> None:
    say(f"\n{title}   [t+{time.monotonic() - RUN_STARTED:.0f} s]")


# --- the report -------------------------------------------------------------------------------


@dataclass
class Figure:
    name: str
    value: str
    goal: str = ""
    ok: bool | None = None  # None: a baseline or information, no goal

    @property
    def verdict(self) -> str:
        if self.ok is None:
            return "info"
        return "PASS" if self.ok else "MISS"


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)

    def add(self, name: str, value: str, goal: str = "", ok: bool | None = None) -> None:
        self.figures.append(Figure(name, value, goal, ok))

    def table(self) -> str:
        rows = [("figure", "measured", "goal", "result")]
        rows += [(f.name, f.value, f.goal, f.verdict) for f in self.figures]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = []
        for n, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)


# --- processes --------------------------------------------------------------------------------


class Processes:
    """Every subprocess started here, stopped (by its own pid) at the end."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen, object]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        fh = open(log, "wb")
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        self.procs.append((name, proc, fh))
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def stop_all(self) -> None:
        for _name, proc, fh in reversed(self.procs):
            with contextlib.suppress(Exception):
                self.stop(proc)
            with contextlib.suppress(Exception):
                fh.close()  # type: ignore[attr-defined]


def wait_http(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/login/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "the web server did not start:\n" + log.read_text()[-3000:]
                ) from None
            time.sleep(0.2)


# --- timing the web server ----------------------------------------------------------------------


class Timer:
    """Sequential GETs on one keep-alive connection, timed end to end."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str, headers: dict[str, str]) -> tuple[float, int, bytes]:
        start = time.perf_counter()
        try:
            self.conn.request("GET", path, headers=headers)
            response = self.conn.getresponse()
            body = response.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.conn.request("GET", path, headers=headers)
            response = self.conn.getresponse()
            body = response.read()
        return time.perf_counter() - start, response.status, body

    def series(
        self, path: str, headers: dict[str, str], n: int, warmup: int = 3
    ) -> tuple[list[float], bytes]:
        body = b""
        for _ in range(warmup):
            _t, status, body = self.get(path, headers)
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
        times = []
        for _ in range(n):
            t, status, body = self.get(path, headers)
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
            times.append(t)
        return times, body


def query_profile(user, path: str, api: bool) -> tuple[int, float, str]:  # type: ignore[no-untyped-def]
    """Run the request once in this process: (queries, SQL ms, slowest SQL), session lookups left out."""
    from django.db import connection
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    headers = {"Accept": "application/json"} if api else {}
    client.get(path, headers=headers)  # warm
    timings: list[tuple[float, str]] = []

    def clock(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            if "django_session" not in sql:
                timings.append((time.perf_counter() - start, sql))

    with connection.execute_wrapper(clock):
        response = client.get(path, headers=headers)
    assert response.status_code == 200, (path, response.status_code)
    total = sum(t for t, _ in timings) * 1000
    worst = max(timings, default=(0.0, "(none)"))
    return len(timings), total, f"{worst[0] * 1000:.1f} ms: {worst[1][:150]}"
