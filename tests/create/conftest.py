"""Creating VMs on the real libvirtd: a dir pool, a project, and cleanup of what a test made."""

from __future__ import annotations

import contextlib

import pytest

from panel import hypervisor
from panel import services as panel_services
from panel.actors import Actor
from panel.hypervisor import storage as hv_storage
from tests.conftest import LOCAL_URI
from tests.storage.conftest import (  # noqa: F401  (fixtures)
    dir_pool,
    host_facts,
    local_host,
    pool_dir,
)
from vms.models import VirtualMachine

GUEST_DIR = "/var/lib/libvirt/boot/panel-test-guest"


@pytest.fixture
def project(db, admin_user):
    return panel_services.create_project(
        name="alpha",
        quota={"vms": 3, "vcpus": 4, "memory_mib": 1024, "disk_gib": 4},
        actor=Actor(admin_user),
    )


@pytest.fixture
def created(panel_test_guest):
    """Names of domains a test creates through the panel; undefined afterwards."""
    names: list[str] = []
    yield names
    for vm in VirtualMachine.objects.filter(name__in=names):
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.undefine_domain(LOCAL_URI, str(vm.pk))
    for name in names:
        with contextlib.suppress(Exception):
            for info in hypervisor.list_domains(LOCAL_URI):
                if info.name == name:
                    hypervisor.undefine_domain(LOCAL_URI, info.uuid)


def volumes_in(pool_name: str) -> set[str]:
    return {v.name for v in hv_storage.list_volumes(LOCAL_URI, pool_name)}


def domain_names() -> set[str]:
    return {d.name for d in hypervisor.list_domains(LOCAL_URI)}
