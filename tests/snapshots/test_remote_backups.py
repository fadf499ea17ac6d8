"""Backups of a VM on another host (the second libvirtd, in its own mount namespace: its
files are not this machine's): taken there by libvirt, checked here on a copy streamed
back, verified through libvirt's streams, restored into a new VM there that boots with
the data disk as it was. Incremental chains are made on the panel's own host only, and
the note says so. A local VM's incremental point restores into a new VM on the other
host, its copies streamed across."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid as uuidlib

import pytest

from panel import hypervisor
from panel.actors import Actor
from panel.hypervisor import storage as hv_storage
from storage import services as storage_services
from tests.conftest import guest_spec
from tests.migration.conftest import SECOND_LIB, console_says, second_host  # noqa: F401  (fixture)
from tests.snapshots.conftest import open_shell, run_backup_job
from tests.snapshots.test_backups import backup_now
from tests.snapshots.test_external import write_disk
from tests.snapshots.test_incremental import verify_now
from vms import services as vm_services
from vms.models import VirtualMachine
from vms.services import restores

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(420)]


@pytest.fixture
def remote_pools(second_host, second_host_uri, admin_user):  # noqa: F811
    """pool(): a dir pool on the second host; emptied and removed afterwards."""
    made = []

    def pool():
        name = f"paneltest-rb-{uuidlib.uuid4().hex[:8]}"
        spec = {"name": name, "type": "dir", "target_path": f"/var/lib/libvirt/images/{name}"}
        made.append(storage_services.create_pool(second_host, spec, actor=Actor(admin_user)))
        return made[-1]

    yield pool
    for p in made:
        with contextlib.suppress(hypervisor.HypervisorError):
            for volume in hv_storage.list_volumes(second_host_uri, p.name):
                hv_storage.delete_volume(second_host_uri, p.name, volume.name)
            hv_storage.delete_pool(second_host_uri, p.name)
        shutil.rmtree(SECOND_LIB / "images" / p.name, ignore_errors=True)


@pytest.fixture
def remote_vm(second_host, second_host_uri, remote_pools, panel_test_guest, project, admin_user):  # noqa: F811
    disks = remote_pools()
    volume = storage_services.create_volume(
        disks, name="data.qcow2", format="qcow2", capacity_gib=16 / 1024, project=project,
        actor=Actor(admin_user),
    )  # fmt: skip
    spec = guest_spec(
        panel_test_guest, disks=(hypervisor.DiskSpec(path=volume.path, format="qcow2"),)
    )
    info = hypervisor.define_domain(second_host_uri, spec)
    info = hypervisor.start_domain(second_host_uri, info.uuid)
    vm = vm_services.sync_domain(second_host, info)
    vm.project = project
    vm.save()
    yield vm
    with contextlib.suppress(hypervisor.HypervisorError):
        hypervisor.undefine_domain(second_host_uri, info.uuid)


def test_a_vm_on_another_host_is_backed_up_checked_verified_and_restored_there(
    remote_vm, remote_pools, second_host_uri, admin_user, admin_client
):
    uri, uuid = second_host_uri, str(remote_vm.pk)
    console_says(uri, uuid, b"echo kilo > /dev/vda; sync; echo w''rote", b"wrote", boot=True)
    target = remote_pools()
    first = backup_now(remote_vm, target, admin_user)
    assert first.method == "push" and first.state == "good" and first.verify[0]["ok"]
    assert "No errors were found" in first.verify[0]["summary"]  # checked on a copy here
    assert first.kind == "full" and first.checkpoint == ""
    second = backup_now(remote_vm, target, admin_user)
    assert second.kind == "full" and "panel's own host only" in second.note

    job = verify_now(admin_client, second)
    assert job.state == "succeeded", (job.message, job.log)
    second.refresh_from_db()
    assert second.verified["ok"] and len(second.verified["disks"][0]["sha256"]) == 64

    job = restores.restore_backup(
        first, mode="new", name=f"{remote_vm.name}-r", pool=target, start=True,
        actor=Actor(admin_user),
    )  # fmt: skip
    job = run_backup_job(job.pk)
    assert job.state == "succeeded", (job.message, job.log)
    restored = VirtualMachine.objects.get(pk=job.result["restored"])
    try:
        assert restored.host_id == remote_vm.host_id and restored.state == "running"
        answer = console_says(
            uri, str(restored.pk), b"head -c 4 /dev/vda; echo", b"kilo", boot=True
        )
        assert b"kilo" in answer
    finally:
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.undefine_domain(uri, str(restored.pk))


def test_an_incremental_point_of_a_local_vm_restores_into_a_new_vm_on_another_host(
    make_vm, backup_pool, remote_pools, second_host_uri, admin_user, admin_client
):
    vm = make_vm(start=True)
    console = open_shell(vm)
    write_disk(console, "alpha")
    backup_now(vm, backup_pool, admin_user)
    write_disk(console, "bravo")
    console.close()
    point = backup_now(vm, backup_pool, admin_user)
    assert point.kind == "incremental"
    there = remote_pools()

    page = admin_client.get(f"/vms/{vm.pk}/?tab=backups").content.decode()
    assert f"{there.name} on second" in page  # offered by the restore form
    response = admin_client.post(
        f"/api/v1/vms/{vm.pk}/backups/{point.pk}/restore/",
        {"mode": "new", "name": f"{vm.name}-far", "pool": there.pk, "start": True},
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    job = run_backup_job(response.json()["job"])
    assert job.state == "succeeded", (job.message, job.log)
    assert "the copies go from local to second" in job.log
    restored = VirtualMachine.objects.get(pk=job.result["restored"])
    try:
        assert restored.host.uri == second_host_uri and restored.name == f"{vm.name}-far"
        assert restored.disks[0]["source"].startswith(f"/var/lib/libvirt/images/{there.name}/")
        answer = console_says(
            second_host_uri, str(restored.pk), b"head -c 5 /dev/vda; echo", b"bravo", boot=True
        )
        assert b"bravo" in answer
        # Nothing stays in the backup pool but the backups.
        assert not [n for n in os.listdir(backup_pool.target_path) if n.endswith(".scratch")]
    finally:
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.undefine_domain(second_host_uri, str(restored.pk))
