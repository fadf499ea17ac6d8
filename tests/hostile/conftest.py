"""The fake host's world for hostile-input tests: an admin, a project, test:///default."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core import signals
from django.db import close_old_connections
from rest_framework.authtoken.models import Token

from networking.models import Network
from panel import services as panel_services
from panel.actors import Actor
from panel.hypervisor import connection
from panel.models import Grant, Host, Job, Role
from panel.services.hosts import reconcile_host
from storage.models import StoragePool, Volume
from tests.panel.conftest import FACTS, FAKE_URI
from tests.storage.conftest import dir_pool, local_host, pool_dir  # noqa: F401  (fixtures)
from vms.models import VirtualMachine

# Ids of the objects the world fixture made, by path parameter name.
KNOWN: dict[str, list] = {}


@pytest.fixture
def keep_connection():
    """Requests must not close the test's database connection (as Django's test client)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def world(db, django_user_model, keep_connection):
    """An admin, a project, the fake host and its inventory (domain, pool, volumes, network)."""
    # No password: hashing one for each of the hundred operations would cost more than the fuzz.
    admin_user = django_user_model.objects.create(
        username="admin", is_superuser=True, is_staff=True, password="!"
    )
    host = Host.objects.create(
        name="fake", uri=FAKE_URI, state="up", facts=FACTS, domain_type="qemu"
    )
    reconcile_host(host, checks=False)
    project = panel_services.create_project(
        name="alpha",
        quota={"vms": 3, "vcpus": 4, "memory_mib": 1024, "disk_gib": 4},
        actor=Actor(admin_user),
    )
    VirtualMachine.objects.update(project=project)
    job = panel_services.hosts.refresh_host(host, actor=Actor(admin_user))
    # A custom role, a group and a grant of it to the group on the project, to fuzz.
    role = Role.objects.create(name="fuzzed", privileges=["view", "power"])
    group = Group.objects.create(name="fuzzers")
    grant = Grant.objects.create(project=project, group=group, role=role)
    KNOWN.clear()
    KNOWN.update(
        {
            "id": [host.pk, project.pk, job.pk, admin_user.pk],
            "host_id": [host.pk],
            "project_id": [project.pk],
            "vm_id": [str(pk) for pk in VirtualMachine.objects.values_list("pk", flat=True)],
            "pool_id": list(StoragePool.objects.values_list("pk", flat=True)),
            "volume_id": list(Volume.objects.values_list("pk", flat=True)),
            "network_id": list(Network.objects.values_list("pk", flat=True)),
            "job_id": [job.pk],
            "role_id": [role.pk],
            "group_id": [group.pk],
            "grant_id": [grant.pk],
        }
    )
    for model in (VirtualMachine, StoragePool, Volume, Network, Job):
        KNOWN["id"] += [
            str(pk) if model is VirtualMachine else pk
            for pk in model.objects.values_list("pk", flat=True)
        ]
    token, _ = Token.objects.get_or_create(user=admin_user)
    yield {"Authorization": f"Token {token.key}"}
    # The fake driver's state lives as long as a connection to it: start the next one afresh.
    connection.pool.drop(FAKE_URI)
