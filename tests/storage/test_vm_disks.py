"""Disks and CD-ROMs on VMs, on the real libvirtd: hot-plug seen inside the tiny guest."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from lxml import etree

from panel import hypervisor
from panel import services as panel_services
from panel.actors import Actor
from panel.models import Membership
from storage import services
from storage.models import Volume
from tests.conftest import LOCAL_URI, guest_spec, wait_for_console_prompt
from tests.storage.conftest import virsh
from vms import services as vm_services

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(180)]


@pytest.fixture
def project(db, admin_user):
    return panel_services.create_project(
        name="alpha", quota={"disk_gib": 10}, actor=Actor(admin_user)
    )


@pytest.fixture
def make_vm(local_host, panel_test_guest, project):
    made = []

    def make(start: bool):
        info = hypervisor.define_domain(LOCAL_URI, guest_spec(panel_test_guest))
        made.append(info.uuid)
        if start:
            info = hypervisor.start_domain(LOCAL_URI, info.uuid)
        vm = vm_services.sync_domain(local_host, info)
        vm.project = project
        vm.save()
        return vm

    yield make
    for uuid in made:
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.undefine_domain(LOCAL_URI, uuid)


@pytest.fixture
def data_volume(dir_pool, admin_user, project):
    return services.create_volume(
        dir_pool,
        name="data.qcow2",
        format="qcow2",
        capacity_gib=8 / 1024,
        project=project,
        actor=Actor(admin_user),
    )


def post(client, url, data, method="post"):
    return getattr(client, method)(url, json.dumps(data), content_type="application/json")


def disk_targets(uuid: str, inactive: bool) -> dict[str, str]:
    args = ["dumpxml", uuid] + (["--inactive"] if inactive else [])
    root = etree.fromstring(virsh(*args).encode())
    out = {}
    for disk in root.iterfind("./devices/disk"):
        source = disk.find("source")
        out[disk.find("target").get("dev")] = source.get("file", "") if source is not None else ""
    return out


def block_devices(stream: hypervisor.ConsoleStream) -> list[str]:
    """The guest's /sys/block, read through its serial console."""
    mark = len(stream.output())
    # Quotes keep the echoed command from matching: only the answer reads "blk: ... :end".
    stream.send(b"echo b''lk: $(ls /sys/block) :e''nd\n")
    out = stream.read_until(b":end\r\n", 15, start=mark)[mark:].decode(errors="replace")
    line = next(line for line in out.splitlines() if line.startswith("blk: "))
    return line.removeprefix("blk: ").removesuffix(" :end").split()


def test_a_disk_attached_live_shows_up_in_the_guest_and_goes_away(
    make_vm, data_volume, admin_client
):
    vm = make_vm(start=True)
    console = hypervisor.open_console(LOCAL_URI, str(vm.pk))
    wait_for_console_prompt(console)
    assert "vda" not in block_devices(console)

    response = post(
        admin_client,
        f"/api/v1/vms/{vm.pk}/disks/",
        {
            "volume": data_volume.pk,
            "bus": "virtio",
            "cache": "none",
            "live": True,
            "persistent": True,
        },
    )
    assert response.status_code == 201, response.content
    disks = {d["target"]: d for d in response.json()["disks"]}
    assert disks["vda"]["source"] == data_volume.path
    assert disks["vda"]["cache"] == "none"
    assert disk_targets(str(vm.pk), inactive=False)["vda"] == data_volume.path
    assert disk_targets(str(vm.pk), inactive=True)["vda"] == data_volume.path
    deadline = time.monotonic() + 20
    while "vda" not in (seen := block_devices(console)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "vda" in seen

    response = post(
        admin_client,
        f"/api/v1/vms/{vm.pk}/disks/",
        {"target": "vda", "live": True, "persistent": True},
        method="delete",
    )
    assert response.status_code == 200, response.content
    assert "vda" not in {d["target"] for d in response.json()["disks"]}
    assert "vda" not in disk_targets(str(vm.pk), inactive=True)
    assert Volume.objects.filter(pk=data_volume.pk).exists()
    console.close()


def test_a_disk_another_vm_uses_is_refused_unless_shareable(
    make_vm, dir_pool, data_volume, admin_user, admin_client
):
    first, second = make_vm(start=False), make_vm(start=False)
    body = {"volume": data_volume.pk, "live": False, "persistent": True}
    assert post(admin_client, f"/api/v1/vms/{first.pk}/disks/", body).status_code == 201

    response = post(admin_client, f"/api/v1/vms/{second.pk}/disks/", body)
    assert response.status_code == 409
    assert f"already a disk of {first.name}" in response.json()["detail"]
    assert "vda" not in disk_targets(str(second.pk), inactive=True)

    response = post(admin_client, f"/api/v1/vms/{second.pk}/disks/", {**body, "shareable": True})
    assert response.status_code == 400
    assert "only raw volumes" in response.json()["shareable"][0]

    shared = services.create_volume(
        dir_pool, name="cluster.img", format="raw", capacity_gib=1 / 1024, actor=Actor(admin_user)
    )
    body = {"volume": shared.pk, "live": False, "persistent": True, "shareable": True}
    assert post(admin_client, f"/api/v1/vms/{first.pk}/disks/", body).status_code == 201
    response = post(admin_client, f"/api/v1/vms/{second.pk}/disks/", body)
    assert response.status_code == 201, response.content
    assert disk_targets(str(second.pk), inactive=True)["vda"] == shared.path


def test_cdrom_media_is_inserted_and_ejected(make_vm, dir_pool, admin_user, admin_client):
    vm = make_vm(start=False)
    iso = services.create_volume(
        dir_pool, name="tools.iso", format="raw", capacity_gib=1 / 1024, actor=Actor(admin_user)
    )
    response = post(
        admin_client,
        f"/api/v1/vms/{vm.pk}/disks/",
        {"device": "cdrom", "bus": "sata", "live": False, "persistent": True},
    )
    assert response.status_code == 201, response.content
    assert disk_targets(str(vm.pk), inactive=True)["sda"] == ""

    response = post(
        admin_client,
        f"/api/v1/vms/{vm.pk}/disks/media/",
        {"target": "sda", "volume": iso.pk, "live": False, "persistent": True},
    )
    assert response.status_code == 200, response.content
    assert disk_targets(str(vm.pk), inactive=True)["sda"] == iso.path

    response = post(
        admin_client,
        f"/api/v1/vms/{vm.pk}/disks/media/",
        {"target": "sda", "volume": None, "live": False, "persistent": True},
    )
    assert response.status_code == 200, response.content
    assert disk_targets(str(vm.pk), inactive=True)["sda"] == ""


def test_bad_disk_requests_change_nothing(make_vm, data_volume, admin_client):
    vm = make_vm(start=False)
    url = f"/api/v1/vms/{vm.pk}/disks/"
    # Bad input is 400 with the field named; a live change of a shut-off VM is 409.
    cases = [
        ({"volume": data_volume.pk, "bus": "floppy", "live": False}, "bus"),
        ({"volume": data_volume.pk, "cache": "sometimes", "live": False}, "cache"),
        ({"volume": data_volume.pk, "io": "native", "cache": "writeback", "live": False}, "io"),
        ({"volume": data_volume.pk, "live": True}, None),  # shut off: no live change
        ({"volume": 999999, "live": False}, "volume"),
        ({"device": "cdrom", "bus": "virtio", "live": False}, "bus"),
    ]
    before = disk_targets(str(vm.pk), inactive=True)
    for body, field in cases:
        response = post(admin_client, url, body)
        assert response.status_code == (400 if field else 409), (body, response.content)
        if field:
            assert field in response.json(), (body, response.json())
        else:
            assert "not running" in response.json()["detail"]
    assert disk_targets(str(vm.pk), inactive=True) == before


def test_members_attach_only_their_projects_volumes(
    make_vm, dir_pool, data_volume, admin_user, plain_user, client
):
    other = panel_services.create_project(name="beta", actor=Actor(admin_user))
    foreign = services.create_volume(
        dir_pool,
        name="foreign.img",
        format="raw",
        capacity_gib=1 / 1024,
        project=other,
        actor=Actor(admin_user),
    )
    vm = make_vm(start=False)
    vm.owner = plain_user
    vm.save()
    Membership.objects.create(user=plain_user, project=vm.project, role="member")
    client.force_login(plain_user)
    url = f"/api/v1/vms/{vm.pk}/disks/"

    response = post(client, url, {"volume": foreign.pk, "live": False})
    assert response.status_code == 400
    assert "volume" in response.json()
    # A volume of the project that another member created: not theirs to use.
    response = post(client, url, {"volume": data_volume.pk, "live": False})
    assert response.status_code == 400
    assert "may use" in response.json()["volume"][0]

    Membership.objects.filter(user=plain_user).update(role="viewer")
    assert post(client, url, {"volume": data_volume.pk, "live": False}).status_code == 403
    assert "vda" not in disk_targets(str(vm.pk), inactive=True)
