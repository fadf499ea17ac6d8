"""Placement, affinity groups and maintenance: the two real hosts of tests/migration
(the local libvirtd and the second one), their guests and people."""

from __future__ import annotations

import contextlib
import shutil
import uuid as uuidlib
from collections.abc import Iterator

import pytest

from panel import hypervisor
from panel.actors import Actor
from panel.hypervisor import storage as hv_storage
from storage import services as storage_services
from storage.models import StoragePool
from tests.conftest import GUEST_DIR, LOCAL_URI, kernel_vm  # noqa: F401  (for the tests here)
from tests.migration.conftest import (  # noqa: F401  (fixtures)
    IMAGES,
    admin,
    alpha,
    api_for,
    beta,
    client_for,
    define_guest,
    fast_password_hashing,
    guest,
    local_host,
    make_vm,
    member,
    people,
    second_host,
)
from vms.models import VirtualMachine

GIB = 1024**3


def facts(host, free_gib: float, cpus: int = 4):
    """host as last read: cpus CPUs, free_gib of 16 GiB free."""
    host.facts = {
        "cpus": cpus,
        "memory_total_bytes": 16 * GIB,
        "memory_free_bytes": int(free_gib * GIB),
    }
    host.save(update_fields=["facts"])
    return host


@pytest.fixture
def local_pool(local_host, admin) -> Iterator[StoragePool]:  # noqa: F811
    """A dir pool of the local host alone (the second host has no pool of that name)."""
    path = IMAGES / f"paneltest-place-{uuidlib.uuid4().hex[:8]}"
    pool = storage_services.create_pool(
        local_host,
        {"name": path.name, "type": "dir", "target_path": str(path)},
        actor=Actor(admin),
    )
    try:
        yield pool
    finally:
        for vm in VirtualMachine.objects.all():
            with contextlib.suppress(hypervisor.HypervisorError):
                hypervisor.undefine_domain(LOCAL_URI, str(vm.pk))
        with contextlib.suppress(hypervisor.HypervisorError):
            hv_storage.delete_pool(LOCAL_URI, pool.name)
        shutil.rmtree(path, ignore_errors=True)
