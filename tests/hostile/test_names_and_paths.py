"""Traversal and trick names in every name and path field of the API are refused.

Each answer is a 400 naming the field, and nothing is created: no row, and on
the fake host (test:///default) no pool, volume or network. Volume files on a
real pool are covered in tests/storage/test_api_garbage.py; paths of kernels
and ISOs in tests/create/.
"""

from __future__ import annotations

import importlib
import json

import pytest

from networking.models import Network
from panel.hypervisor import inventory as hv_inventory
from panel.hypervisor import networks as hv_networks
from panel.models import Host, Project
from storage.models import StoragePool, Volume
from tests.panel.conftest import FAKE_URI
from vms.models import Snapshot, VirtualMachine

TRICKS = [
    "../x",
    "..",
    ".",
    "/etc/passwd",
    "a/../../b",
    "%2e%2e%2fx",
    "..%2fx",
    "a\x00b",
    "a\\..\\b",
    "web\n1",
    "web\r1",
    "web\x011",
    " web1/",
    "<evil/>",
    "x" * 300,
]


def post(client, path: str, headers: dict, body: dict):
    return client.post(path, json.dumps(body), content_type="application/json", headers=headers)


def assert_refused(response, field: str) -> None:
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert field in response.json(), response.json()


@pytest.fixture
def world_api(client, world):
    headers = {"Authorization": world["Authorization"]}
    return client, headers


@pytest.mark.parametrize("name", TRICKS)
def test_pool_volume_and_network_names_are_refused(world_api, name):
    client, headers = world_api
    host = Host.objects.get()
    pool = StoragePool.objects.get(name="default-pool")  # test:///default's, running
    counts = (StoragePool.objects.count(), Volume.objects.count(), Network.objects.count())
    pools_before = {p.name for p in hv_inventory.list_pools(FAKE_URI)}
    nets_before = {n.name for n in hv_networks.list_networks(FAKE_URI)}

    body = {"host": host.pk, "name": name, "type": "dir", "target_path": "/srv/libvirt/x"}
    assert_refused(post(client, "/api/v1/pools/", headers, body), "name")
    body = {"pool": pool.pk, "name": name, "format": "raw", "capacity_gib": 1}
    assert_refused(post(client, "/api/v1/volumes/", headers, body), "name")
    body = {"host": host.pk, "name": name, "mode": "isolated"}
    assert_refused(post(client, "/api/v1/networks/", headers, body), "name")
    body = {"host": host.pk, "name": "isol1", "mode": "isolated", "bridge": name}
    assert_refused(post(client, "/api/v1/networks/", headers, body), "bridge")

    assert counts == (StoragePool.objects.count(), Volume.objects.count(), Network.objects.count())
    assert {p.name for p in hv_inventory.list_pools(FAKE_URI)} == pools_before
    assert {n.name for n in hv_networks.list_networks(FAKE_URI)} == nets_before


@pytest.mark.parametrize("name", TRICKS)
def test_vm_clone_and_snapshot_names_are_refused(world_api, name):
    client, headers = world_api
    vm = VirtualMachine.objects.get(name="test")
    pool = StoragePool.objects.get(name="default-pool")
    body = {"pool": pool.pk, "name": "base.img", "format": "raw", "capacity_gib": 1}
    created = post(client, "/api/v1/volumes/", headers, body)
    assert created.status_code == 201, created.content  # raw, not preallocated: no job
    volume = Volume.objects.get(name="base.img")
    counts = (VirtualMachine.objects.count(), Snapshot.objects.count(), Volume.objects.count())

    body = {
        "name": name,
        "project": Project.objects.get(name="alpha").pk,
        "host": vm.host_id,
        "vcpus": 1,
    }
    body |= {
        "memory_mib": 64,
        "install": {"method": "pxe"},
        "networks": [Network.objects.first().pk],
    }
    assert_refused(post(client, "/api/v1/vms/", headers, body), "name")
    body = {"name": name, "kind": "internal"}
    assert_refused(post(client, f"/api/v1/vms/{vm.pk}/snapshots/", headers, body), "name")
    assert_refused(
        post(client, f"/api/v1/volumes/{volume.pk}/clone/", headers, {"name": name}), "name"
    )

    assert counts == (
        VirtualMachine.objects.count(),
        Snapshot.objects.count(),
        Volume.objects.count(),
    )


@pytest.mark.parametrize(
    "path",
    [
        "/srv/libvirt/../../etc",
        "/srv/libvirt/a/../../../etc",
        "/etc",
        "relative/dir",
        "/srv/libvirt/a\x00b",
        "/srv/libvirt\\..\\..\\etc",
        "/srv/libvirtX/escape",
    ],
)
def test_pool_target_paths_outside_the_roots_are_refused(world_api, settings, path):
    settings.PANEL_STORAGE_ROOTS = ["/srv/libvirt"]
    client, headers = world_api
    before = StoragePool.objects.count()
    pools_before = {p.name for p in hv_inventory.list_pools(FAKE_URI)}
    body = {"host": Host.objects.get().pk, "name": "escape", "type": "dir", "target_path": path}
    assert_refused(post(client, "/api/v1/pools/", headers, body), "target_path")
    assert StoragePool.objects.count() == before
    assert {p.name for p in hv_inventory.list_pools(FAKE_URI)} == pools_before


@pytest.mark.parametrize(
    "pattern",
    [
        "vms.services.create.request.NAME_RE",
        "vms.services.snapshots.NAME_RE",
        "storage.services.NAME_RE",
        "networking.services.NAME_RE",
        "networking.services.IFNAME_RE",
        "networking.services.MAC_RE",
        "networking.services.HOSTNAME_RE",
        "vms.install.cloudinit.USER_NAME",
        "vms.install.cloudinit.HOST_LABEL",
    ],
)
def test_name_patterns_refuse_a_trailing_newline(pattern):
    """`$` matches before a final newline; the validators must not let one through."""
    module, name = pattern.rsplit(".", 1)
    regex = getattr(importlib.import_module(module), name)
    good = "52:54:00:00:00:01" if name == "MAC_RE" else "web1"
    assert regex.match(good)
    assert not regex.match(good + "\n")


def test_vm_names_of_dots_only_are_refused():
    from vms.services.create.request import NAME_RE

    assert NAME_RE.match("web.1") and NAME_RE.match("a..b")
    assert not NAME_RE.match(".") and not NAME_RE.match("..") and not NAME_RE.match("...")


@pytest.mark.parametrize("text", ["a\x01b", "a\x1bb", "x\ufffe"])
def test_control_characters_in_text_fields_get_a_400(world_api, text):
    client, headers = world_api
    vm = VirtualMachine.objects.get(name="test")
    before = Snapshot.objects.count()
    body = {"name": "s1", "description": text, "kind": "internal"}
    response = post(client, f"/api/v1/vms/{vm.pk}/snapshots/", headers, body)
    assert response.status_code == 400, response.content[:300]
    assert Snapshot.objects.count() == before
