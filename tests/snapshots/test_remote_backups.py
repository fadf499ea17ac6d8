"""Backups of a VM on another host (the second libvirtd, in its own mount namespace: its
files are not this machine's): taken there by libvirt, checked here on a copy streamed
back, verified through libvirt's streams, restored into a new VM there that boots with
the data disk as it was. Incremental chains are made on the panel's own host only, and
the note says so."""

from __future__ import annotations

import contextlib
import shutil
import uuid as uuidlib

import pytest

from panel import hypervisor
from panel.actors import Actor
from panel.hypervisor import storage as hv_storage
from storage import services as storage_services
from tests.conftest import guest_spec
from tests.migration.conftest import SECOND_LIB, console_says, second_host  # noqa: F401  (fixture)
from tests.snapshots.conftest import run_backup_job
from tests.snapshots.test_backups import backup_now
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
