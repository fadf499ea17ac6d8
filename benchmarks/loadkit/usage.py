"""What the run used besides time: CPU seconds of each process group, PostgreSQL, Redis,
the load generator and the machine (Cpu, postgres_cpu), and the errors and dropped
channel-layer messages in the servers' logs (Logs)."""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import Any

OVER_CAPACITY = re.compile(r"(\d+) of \d+ channels over capacity")
LOG_ERROR = re.compile(r"Traceback \(most recent call last\)|(^|[\s\[/])(ERROR|CRITICAL)[\s/:\]]")


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
