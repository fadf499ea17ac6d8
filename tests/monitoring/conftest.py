"""Personas, the real local host and tiny guests (from tests/vms), and a clean stats store."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from monitoring.store import StatsStore
from tests.networking.conftest import nets  # noqa: F401 - isolated networks, removed after
from tests.second_host import GUEST_DIR, TestGuest
from tests.vms.conftest import (  # noqa: F401 - fixtures shared with tests/vms
    admin,
    alpha,
    api_for,
    beta,
    client_for,
    define_guest,
    fast_password_hashing,
    local_host,
    make_vm,
    member,
    people,
)


@pytest.fixture
def store():
    """The stats store of this test run, emptied before and after the test."""
    store = StatsStore(step=5)

    def wipe() -> None:
        keys = list(store.client.scan_iter(f"{store.prefix}:*"))
        if keys:
            store.client.delete(*keys)

    wipe()
    yield store
    wipe()


BALLOON_DIR = GUEST_DIR.parent / f"{GUEST_DIR.name}-balloon"


def _sh(command: str, cwd: str | Path | None = None) -> str:
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"{command} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


@pytest.fixture(scope="session")
def balloon_guest(panel_test_guest) -> TestGuest:
    """The tiny guest with the virtio balloon driver loaded too, so a live memory change
    inflates its balloon: the tiny guest's initrd plus an archive that adds the module.

    Kept apart from the shared guest (its own directory), rebuilt when that one changes.
    """
    base = Path(panel_test_guest.initrd)
    initrd, stamp = BALLOON_DIR / "initrd.img", BALLOON_DIR / "base"
    key = f"{base.stat().st_size}-{base.stat().st_mtime_ns}"
    if initrd.exists() and stamp.exists() and stamp.read_text() == key:
        return TestGuest(kernel=panel_test_guest.kernel, initrd=str(initrd))
    version = _sh(f"file -b {panel_test_guest.kernel}").split("version ")[1].split()[0]
    work = Path(tempfile.mkdtemp(prefix="balloon-guest-"))
    try:
        _sh(f"apt-get download -q linux-image-{version} >/dev/null", cwd=work)
        _sh("dpkg-deb -x linux-image-*.deb kernel", cwd=work)
        module = work / f"kernel/lib/modules/{version}/kernel/drivers/virtio/virtio_balloon.ko"
        overlay = work / "overlay/lib/modules"
        overlay.mkdir(parents=True)
        shutil.copy(module, overlay / "virtio_balloon.ko")
        order = _sh(f"zcat {base} | cpio -i --quiet --to-stdout lib/modules/order")
        (overlay / "order").write_text(order.rstrip("\n") + "\nvirtio_balloon.ko\n")
        _sh("find . | cpio -o -H newc --quiet | gzip -9 > ../overlay.img", cwd=work / "overlay")
        BALLOON_DIR.mkdir(parents=True, exist_ok=True)
        # Linux unpacks concatenated archives in turn: the second adds the module and
        # replaces the load order.
        tmp = BALLOON_DIR / "initrd.img.tmp"
        tmp.write_bytes(base.read_bytes() + (work / "overlay.img").read_bytes())
        tmp.chmod(0o644)
        tmp.replace(initrd)
        stamp.write_text(key)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return TestGuest(kernel=panel_test_guest.kernel, initrd=str(initrd))
