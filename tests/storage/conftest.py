"""A directory pool on the real libvirtd, made through the panel, and API helpers."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid as uuidlib
from pathlib import Path

import pytest

from panel import hypervisor
from panel.actors import Actor
from panel.hypervisor import storage as hv_storage
from panel.models import Host
from storage import services
from tests.conftest import LOCAL_URI

IMAGES = Path("/var/lib/libvirt/images")
MIB = 1024 * 1024


def virsh(*args: str) -> str:
    return subprocess.run(
        ["virsh", "-c", LOCAL_URI, *args], check=True, capture_output=True, text=True
    ).stdout


def qemu_img_info(path: str) -> dict:
    import json

    out = subprocess.run(
        ["qemu-img", "info", "--output=json", "-U", path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def allocated_bytes(path: str) -> int:
    return Path(path).stat().st_blocks * 512


@pytest.fixture
def local_host(db) -> Host:
    return Host.objects.create(name="local", uri=LOCAL_URI, state="up")


@pytest.fixture
def host_facts(local_host):
    """The local host with the facts a create's checks read (2 CPUs, 4 of 8 GiB free)."""
    local_host.facts = {
        "cpus": 2,
        "memory_total_bytes": 8 * 1024**3,
        "memory_free_bytes": 4 * 1024**3,
    }
    local_host.save()
    return local_host


@pytest.fixture
def pool_dir():
    """A fresh directory under the allowed images root; removed afterwards."""
    path = IMAGES / f"paneltest-{uuidlib.uuid4().hex[:8]}"
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def dir_pool(local_host, pool_dir, admin_user):
    """A dir pool built and started by the panel in pool_dir; stopped and undefined after."""
    pool = services.create_pool(
        local_host,
        {"name": pool_dir.name, "type": "dir", "target_path": str(pool_dir)},
        actor=Actor(admin_user),
    )
    try:
        yield pool
    finally:
        with contextlib.suppress(hypervisor.HypervisorError):
            hv_storage.delete_pool(LOCAL_URI, pool.name)
