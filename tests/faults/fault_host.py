"""Private libvirtd and panel processes that fault tests may kill and start again.

Nothing here touches the machine's own libvirtd or Redis: the libvirtd is a
``scripts/second-libvirtd.sh`` instance with a state dir and port of its own,
and every process is started and stopped by the fixture that owns it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.second_host import SECOND_HOST_SCRIPT
from tests.stack import spawn, stop_process

FAULT_HOST_DIR = Path(os.environ.get("PANEL_FAULT_HOST_DIR", "/var/lib/panel-fault-host"))
FAULT_HOST_PORT = int(os.environ.get("PANEL_FAULT_HOST_PORT", "16529"))


def wait_for(predicate: Callable[[], object], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


@dataclass(frozen=True)
class FaultHost:
    """A libvirtd of our own, reachable at uri, with its state under state_dir."""

    uri: str
    state_dir: Path

    def script(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SECOND_HOST_SCRIPT), *args],
            env={**os.environ, "PANEL_SECOND_HOST_DIR": str(self.state_dir)},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def libvirtd_pid(self) -> int:
        return int((self.state_dir / "run" / "libvirtd.pid").read_text().strip())

    def kill_libvirtd(self) -> None:
        """SIGKILL the daemon; its guests' QEMU processes and virtlogd stay."""
        pid = self.libvirtd_pid()
        os.kill(pid, 9)
        assert wait_for(lambda: not Path(f"/proc/{pid}").exists(), 5), "libvirtd did not die"

    def revive(self) -> None:
        result = self.script("revive")
        assert result.returncode == 0, f"revive failed:\n{result.stdout}{result.stderr}"

    def virsh(self, *args: str) -> str:
        result = subprocess.run(
            ["virsh", "-q", "-c", self.uri, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"virsh {args}: {result.stderr}"
        return result.stdout

    @property
    def etc_qemu(self) -> Path:
        """Where this libvirtd keeps its persistent domain definitions."""
        return self.state_dir / "etc" / "qemu"


@pytest.fixture
def fault_host() -> Iterator[FaultHost]:
    """A fresh private libvirtd; stopped and its state dir removed afterwards."""
    host = FaultHost(uri="", state_dir=FAULT_HOST_DIR)
    host.script("stop")  # a run that was itself killed
    result = host.script("start", str(FAULT_HOST_PORT))
    if result.returncode != 0:
        host.script("stop")
        pytest.fail(f"could not start the fault host:\n{result.stdout}{result.stderr}")
    host = FaultHost(uri=result.stdout.strip().splitlines()[-1], state_dir=FAULT_HOST_DIR)
    try:
        yield host
    finally:
        result = host.script("stop")
        if result.returncode == 0 and host.script("status").returncode == 3:
            shutil.rmtree(FAULT_HOST_DIR, ignore_errors=True)
        else:
            pytest.fail(f"the fault host did not stop:\n{result.stdout}{result.stderr}")


@pytest.fixture
def host_watcher(stack, tmp_path) -> Iterator[subprocess.Popen[bytes]]:
    """``manage.py watch_hosts`` as deployed, against the test database."""
    proc = spawn([sys.executable, "manage.py", "watch_hosts"], tmp_path / "watcher.log")
    try:
        yield proc
    finally:
        stop_process(proc)
