"""Pools, volumes, boot files and VMs that the attack tests on storage, boot media,
secrets and quotas set up through the panel's services, and their cleanup.

The fixtures (media_pool, make_volume, created_vms) are registered in conftest.py.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from panel import hypervisor
from panel.actors import Actor
from panel.hypervisor import storage as hv_storage
from panel.models import Project
from storage import services as storage_services
from storage.models import StoragePool, Volume
from tests.conftest import LOCAL_URI
from vms.models import VirtualMachine

IMAGES = Path("/var/lib/libvirt/images")
GUEST_DIR = Path("/var/lib/libvirt/boot/panel-test-guest")

# A boot sector that prints "boot ok" on the first serial port (COM1, 0x3f8) and halts,
# so that a VM booting a disk shows console output at once (the create job waits for it):
#     xor ax,ax / mov ds,ax / cld / mov dx,0x3f8 / mov si,msg
#     next: lodsb / test al,al / jz halt / out dx,al / jmp next
#     halt: hlt / jmp halt
#     msg: db "boot ok", 13, 10, 0
_CODE = bytes.fromhex("31c08ed8fcbaf803be167cac84c07403eeebf8f4ebfd") + b"boot ok\r\n\x00"
BOOT_SECTOR = _CODE + b"\x00" * (510 - len(_CODE)) + b"\x55\xaa"
BOOT_DISK = BOOT_SECTOR + b"\x00" * (1024 * 1024 - len(BOOT_SECTOR))  # a 1 MiB raw image


def unique(prefix: str) -> str:
    return f"{prefix}-{uuidlib.uuid4().hex[:8]}"


@pytest.fixture
def media_pool(people, local_host) -> Iterator[StoragePool]:
    """A dir pool an admin made under the images root; undefined and removed afterwards,
    with every domain whose disks or boot files were in it."""
    path = IMAGES / unique("paneltest")
    made = storage_services.create_pool(
        local_host,
        {"name": path.name, "type": "dir", "target_path": str(path)},
        actor=Actor(people["admin"]),
    )
    try:
        yield made
    finally:
        prefix = str(path) + "/"
        for info in hypervisor.list_domains(LOCAL_URI):
            if any(d.source.startswith(prefix) for d in info.disks):
                with contextlib.suppress(hypervisor.HypervisorError):
                    hypervisor.undefine_domain(LOCAL_URI, info.uuid)
        with contextlib.suppress(hypervisor.HypervisorError):
            hv_storage.delete_pool(LOCAL_URI, made.name)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def created_vms() -> Iterator[list[str]]:
    """Names of the VMs a test had the panel create; their domains go afterwards."""
    names: list[str] = []
    yield names
    for info in hypervisor.list_domains(LOCAL_URI):
        if info.name in names:
            with contextlib.suppress(hypervisor.HypervisorError):
                hypervisor.undefine_domain(LOCAL_URI, info.uuid)


@pytest.fixture
def make_volume(media_pool, people) -> Callable[..., Volume]:
    """make_volume(project, owner, content=b"", fmt="raw", capacity_gib=0.01): a volume made
    through the panel by owner (a persona's name) in project, content written at its start."""

    def make(
        project: Project | None,
        owner: str,
        *,
        content: bytes = b"",
        fmt: str = "raw",
        capacity_gib: float = 0.01,
        name: str = "",
    ) -> Volume:
        volume = storage_services.create_volume(
            media_pool,
            name=name or unique("vol") + (".qcow2" if fmt == "qcow2" else ".img"),
            format=fmt,
            capacity_gib=capacity_gib,
            project=project,
            actor=Actor(people[owner]),
        )
        assert isinstance(volume, Volume)
        if content:
            with open(volume.path, "r+b") as f:
                f.write(content)
        return volume

    return make


def shared_file(media_pool: StoragePool, content: Path | bytes, name: str, admin: Any) -> Volume:
    """A raw volume an admin made in the pool, holding content (a file's, or bytes), and
    published as a shared image: the boot-file and ISO library everyone may use."""
    data = content if isinstance(content, bytes) else content.read_bytes()
    volume = storage_services.create_volume(
        media_pool, name=name, format="raw", capacity_gib=len(data) / 1024**3, actor=Actor(admin)
    )
    assert isinstance(volume, Volume)
    with open(volume.path, "r+b") as f:
        f.write(data)
    return storage_services.set_shared(volume, True, actor=Actor(admin))


def vm_named(name: str) -> VirtualMachine:
    return VirtualMachine.objects.get(name=name)
