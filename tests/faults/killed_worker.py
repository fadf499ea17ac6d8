"""The fault tests' private Celery worker, and how a test kills it mid-job: a worker
process group on a queue of its own (killable and restartable under the same name or a
new one), and kill_and_restart(), which kills it, starts it again and waits for it to
settle the job. The fixtures that run it are in conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path

from panel.models import Job
from tests.stack import process_env, spawn

STOPPED = "The worker running this job stopped"


class Worker:
    """A Celery worker process group on its own queue, killable and restartable."""

    def __init__(self, logs: Path) -> None:
        self.queue = f"faults-{uuidlib.uuid4().hex[:8]}"
        self.name = f"{self.queue}@%h"
        self.logs = logs
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        log = self.logs / f"worker-{self.runs}.log"
        env = {
            **process_env(),
            "PANEL_CELERY_QUEUE": self.queue,
            "PANEL_WORKER_RECHECK_SECONDS": "1",
        }
        self.proc = spawn(
            [
                str(Path(sys.executable).parent / "celery"),
                "-A",
                "panel",
                "worker",
                "-l",
                "info",
                "-c",
                "1",
                "-Q",
                self.queue,
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                self.name,
            ],
            log,
            env=env,
            new_session=True,
        )
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text(errors="replace"):
            assert self.proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once, as a crash or the OOM killer would."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def job(job_id: int) -> Job:
    return Job.objects.get(pk=job_id)


def kill_and_restart(
    worker: Worker,
    job_id: int,
    *,
    new_name: bool = False,
    killed: Callable[[], object] | None = None,
) -> Job:
    """Kill the worker mid-job, see the job stuck as running (and killed(), the test's
    check that the kill came early enough for the outcome it expects), start the worker
    again (under a new name: a recreated container) and wait for it to settle the job."""
    worker.kill()
    assert job(job_id).state == "running"
    if killed is not None:
        killed()
    if new_name:
        worker.name = f"{worker.queue}-{worker.runs}@%h"
    worker.start()
    wait_until(lambda: job(job_id).is_finished, 120, f"job stayed {job(job_id).state}")
    return job(job_id)
