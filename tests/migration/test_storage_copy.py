"""Live migration with storage copy: a qcow2 data disk in a pool only the local host
knows is copied into a pool only the second host knows, content and all."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
from django.db import connection

from panel import hypervisor, quotas
from panel.actors import Actor
from panel.models import Job
from panel.services import cancel_job
from storage import services as storage_services
from storage.models import StoragePool, Volume
from tests.conftest import LOCAL_URI
from tests.migration.conftest import console_says, virsh, where
from vms.models import VirtualMachine
from vms.services import migrate
from vms.tasks import vm_migrate_task

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(240)]


def image_starts_with(path, marker: bytes, tmp_path) -> bool:
    """Whether the disk image at path (qcow2, maybe in use) begins with marker."""
    raw = tmp_path / "read.raw"
    subprocess.run(
        ["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", str(path), str(raw)], check=True
    )
    with raw.open("rb") as f:
        return f.read(len(marker)) == marker


def test_it_copies_a_qcow2_data_disk_with_its_content(
    guest, api_for, alpha, member, local_host, second_host, second_host_uri, pools, tmp_path
):
    src_pool, src_dir = pools.local()
    dst_pool, dst_dir = pools.second()
    virsh(LOCAL_URI, "vol-create-as", src_pool, "data.qcow2", "16M", "--format", "qcow2")
    source_path = str(src_dir / "data.qcow2")
    storage_services.refresh_pool_row(StoragePool(host=local_host, name=src_pool))
    # The disk is alpha's, counted in its disk quota.
    Volume.objects.filter(path=source_path).update(project=alpha, owner=member)
    disk_before = quotas.usage(alpha).disk_gib
    assert disk_before >= 1
    target_pool = storage_services.refresh_pool_row(StoragePool(host=second_host, name=dst_pool))
    vm = guest(
        disks=(hypervisor.DiskSpec(path=source_path, target="vdb", format="qcow2"),),
    )
    # The guest writes a marker onto its data disk before it moves.
    console_says(
        LOCAL_URI,
        str(vm.pk),
        b"test -b /dev/vda && printf copied-%s $((6*7)) > /dev/vda; sync; echo wrote-$((1+1))",
        b"wrote-2",
        boot=True,
    )

    # Without storage copy the pre-check refuses: the disk is not reachable there.
    api = api_for("member")
    refused = api.post(
        f"/api/v1/vms/{vm.pk}/migrate/", {"target_host": second_host.pk}, format="json"
    )
    assert refused.status_code == 409
    assert "is not on storage the target sees" in refused.json()["detail"]

    response = api.post(
        f"/api/v1/vms/{vm.pk}/migrate/",
        {"target_host": second_host.pk, "copy_storage": "all", "target_pool": target_pool.pk},
        format="json",
    )
    assert response.status_code == 202, response.content
    vm_migrate_task(response.json()["job"])

    job = Job.objects.get(pk=response.json()["job"])
    assert job.state == "succeeded", job.log
    assert f"disk vdb: {source_path} -> /var/lib/libvirt/images/{dst_pool}/data.qcow2" in job.log
    assert where(vm, second_host_uri) == ("absent", "running")
    # The data came along: in the target's file (read from this machine), and the guest
    # still reads its disk there.
    assert image_starts_with(dst_dir / "data.qcow2", b"copied-42", tmp_path)
    out = console_says(second_host_uri, str(vm.pk), b"head -c 9 /dev/vda; echo", b"copied-42")
    assert b"copied-42" in out
    moved = VirtualMachine.objects.get(pk=vm.pk)
    assert moved.host == second_host
    assert [d["source"] for d in moved.disks if d["target"] == "vdb"] == [
        f"/var/lib/libvirt/images/{dst_pool}/data.qcow2"
    ]
    # The source's copy is gone (undefine_source by default), in libvirt and in the panel.
    assert not (src_dir / "data.qcow2").exists()
    assert not Volume.objects.filter(path=source_path).exists()
    # The copy is alpha's and member's now, and the quota counts it instead of the original.
    copied = Volume.objects.get(pool=target_pool, name="data.qcow2")
    assert (copied.project, copied.owner) == (alpha, member)
    assert quotas.usage(alpha).disk_gib == disk_before


def test_a_cancelled_copy_leaves_no_volume_on_the_target(
    transactional_db, guest, member, local_host, second_host, second_host_uri, pools
):
    src_pool, src_dir = pools.local()
    dst_pool, dst_dir = pools.second()
    virsh(LOCAL_URI, "vol-create-as", src_pool, "data.qcow2", "16M", "--format", "qcow2")
    target_pool = storage_services.refresh_pool_row(StoragePool(host=second_host, name=dst_pool))
    vm = guest(disks=(hypervisor.DiskSpec(path=str(src_dir / "data.qcow2"), target="vda"),))
    job = migrate.migrate_vm(
        vm,
        migrate.MigrationAsk(
            target_host=second_host.pk,
            copy_storage="all",
            target_pool=target_pool.pk,
            bandwidth_mib=1,
        ),
        actor=Actor(member),
    )
    seen_volume = []

    def cancel_once_copying() -> None:
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if (dst_dir / "data.qcow2").exists() and Job.objects.get(pk=job.pk).progress > 3:
                    seen_volume.append(True)
                    cancel_job(Job.objects.get(pk=job.pk), actor=Actor(member))
                    return
                time.sleep(0.2)
        finally:
            connection.close()

    canceller = threading.Thread(target=cancel_once_copying)
    canceller.start()
    vm_migrate_task(job.pk)
    canceller.join(5)

    job.refresh_from_db()
    assert seen_volume == [True], job.log  # the target volume existed while copying
    assert job.state == "cancelled", job.log
    assert where(vm, second_host_uri) == ("running", "absent")
    assert not (dst_dir / "data.qcow2").exists()
    assert "data.qcow2" not in virsh(second_host_uri, "vol-list", dst_pool)
    assert (src_dir / "data.qcow2").exists()
    assert VirtualMachine.objects.get(pk=vm.pk).host == local_host
