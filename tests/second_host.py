"""Pytest plugin: a second libvirt host on this machine, and the test guest.

List it in ``pytest_plugins`` of tests/conftest.py. Fixtures:

``second_host_uri`` (session)
    Starts ``scripts/second-libvirtd.sh`` (a second libvirtd in its own mount
    namespace, listening on 127.0.0.1 only) and returns its URI,
    ``qemu+tcp://127.0.0.1:16519/system`` unless ``PANEL_SECOND_HOST_PORT``
    says otherwise. Stops it at the end of the session only if this fixture
    started it; a second host that was already running is left running.

``panel_test_guest`` (session)
    Builds the tiny test guest with ``scripts/build-test-guest.sh`` if its
    files are missing or of an older recipe, and returns their paths. Both hosts see them at the
    same path, which migration needs.
"""

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SECOND_HOST_SCRIPT = REPO_ROOT / "scripts" / "second-libvirtd.sh"
BUILD_GUEST_SCRIPT = REPO_ROOT / "scripts" / "build-test-guest.sh"
GUEST_DIR = Path(os.environ.get("PANEL_TEST_GUEST_DIR", "/var/lib/libvirt/boot/panel-test-guest"))


@dataclass(frozen=True)
class TestGuest:
    __test__ = False  # not a test class, despite the name

    kernel: str
    initrd: str
    cmdline: str = "console=ttyS0"


def _run_script(script, *args, timeout):
    return subprocess.run(
        ["bash", str(script), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _second_host(*args, timeout=60):
    return _run_script(SECOND_HOST_SCRIPT, *args, timeout=timeout)


@pytest.fixture(scope="session")
def panel_test_guest():
    kernel, initrd = GUEST_DIR / "vmlinuz", GUEST_DIR / "initrd.img"
    # Always run: the script returns at once when the files of its current recipe
    # are in place, and rebuilds a guest of an older recipe.
    result = _run_script(BUILD_GUEST_SCRIPT, timeout=600)
    if result.returncode != 0:
        pytest.fail(
            f"{BUILD_GUEST_SCRIPT} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return TestGuest(kernel=str(kernel), initrd=str(initrd))


@pytest.fixture(scope="session")
def second_host_uri():
    port = os.environ.get("PANEL_SECOND_HOST_PORT", "16519")
    already_running = _second_host("status").returncode == 0
    result = _second_host("start", port)
    if result.returncode != 0:
        pytest.fail(
            f"{SECOND_HOST_SCRIPT} start {port} failed ({result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )
    uri = result.stdout.strip().splitlines()[-1]
    yield uri
    if not already_running:
        result = _second_host("stop")
        if result.returncode != 0:
            pytest.fail(
                f"{SECOND_HOST_SCRIPT} stop failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
