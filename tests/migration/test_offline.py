"""Offline migration of a shut-off VM: its definition moves, and with storage copy its
qcow2 data disk is streamed into a pool of the target first; it then boots there."""

from __future__ import annotations

import subprocess

import pytest

from panel import hypervisor
from panel.actors import Actor
from panel.models import Job
from storage import services as storage_services
from storage.models import StoragePool
from tests.conftest import LOCAL_URI
from tests.migration.conftest import console_says, virsh, where
from vms import services as vm_services
from vms.models import VirtualMachine
from vms.tasks import vm_migrate_task

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(240)]


def qcow2_with(path, text: bytes, tmp_path) -> None:
    raw = tmp_path / "content.raw"
    raw.write_bytes(text.ljust(16 * 2**20, b"\0"))
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)], check=True
    )


def test_it_moves_a_shut_off_vm_and_its_disk_offline(
    guest, api_for, member, local_host, second_host, second_host_uri, pools, tmp_path
):
    src_pool, src_dir = pools.local()
    dst_pool, dst_dir = pools.second()
    qcow2_with(src_dir / "data.qcow2", b"offline-42", tmp_path)
    virsh(LOCAL_URI, "pool-refresh", src_pool)
    target_pool = storage_services.refresh_pool_row(StoragePool(host=second_host, name=dst_pool))
    source_path = str(src_dir / "data.qcow2")
    vm = guest(
        running=False,
        disks=(hypervisor.DiskSpec(path=source_path, target="vdb", format="qcow2"),),
    )

    response = api_for("member").post(
        f"/api/v1/vms/{vm.pk}/migrate/",
        {
            "target_host": second_host.pk,
            "live": False,
            "copy_storage": "all",
            "target_pool": target_pool.pk,
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    vm_migrate_task(response.json()["job"])

    job = Job.objects.get(pk=response.json()["job"])
    assert job.state == "succeeded", job.log
    assert "migration started (offline, all storage copy)" in job.log
    assert where(vm, second_host_uri) == ("absent", "shutoff")
    assert not (src_dir / "data.qcow2").exists()
    assert (dst_dir / "data.qcow2").exists()
    moved = VirtualMachine.objects.get(pk=vm.pk)
    assert (moved.host, moved.state, moved.persistent) == (second_host, "shutoff", True)

    # It boots there, from the copied disk, started through the panel as its owner would.
    vm_services.perform_action(moved, "start", actor=Actor(member))
    out = console_says(
        second_host_uri, str(vm.pk), b"head -c 10 /dev/vda; echo", b"offline-42", boot=True
    )
    assert b"offline-42" in out


def test_incremental_copy_is_refused_offline(guest, api_for, second_host, pools):
    dst_pool, _dst_dir = pools.second()
    target_pool = storage_services.refresh_pool_row(StoragePool(host=second_host, name=dst_pool))
    vm = guest(running=False)
    response = api_for("member").post(
        f"/api/v1/vms/{vm.pk}/migrate/",
        {
            "target_host": second_host.pk,
            "copy_storage": "incremental",
            "target_pool": target_pool.pk,
        },
        format="json",
    )
    assert response.status_code == 409
    assert "Incremental storage copy needs a live migration" in response.json()["detail"]
