"""Move storage: a VM's qcow2 disk moved to another pool of the same host, as a job, for
a running VM (mirrored while it runs) and a shut-off one (copied); the definition names
the new volume, the old one is gone, and the data came along."""

from __future__ import annotations

import pytest

from panel import hypervisor
from panel.models import AuditEvent, Job
from storage import services as storage_services
from storage.models import StoragePool, Volume
from tests.conftest import LOCAL_URI
from tests.migration.conftest import console_says, virsh
from tests.migration.test_offline import qcow2_with
from tests.migration.test_storage_copy import image_starts_with
from vms.models import VirtualMachine
from vms.tasks import vm_move_storage_task

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(180)]


def two_pools(pools, local_host, tmp_path, marker: bytes):
    a_name, a_dir = pools.local()
    b_name, b_dir = pools.local()
    qcow2_with(a_dir / "data.qcow2", marker, tmp_path)
    virsh(LOCAL_URI, "pool-refresh", a_name)
    a = storage_services.refresh_pool_row(StoragePool(host=local_host, name=a_name))
    b = storage_services.refresh_pool_row(StoragePool(host=local_host, name=b_name))
    return a, a_dir, b, b_dir


@pytest.mark.parametrize("running", [True, False], ids=["running", "shut-off"])
def test_it_moves_a_disk_to_another_pool(
    guest, api_for, alpha, member, local_host, pools, tmp_path, running
):
    a, a_dir, b, b_dir = two_pools(pools, local_host, tmp_path, b"moved-42")
    old_path, new_path = str(a_dir / "data.qcow2"), str(b_dir / "data.qcow2")
    vm = guest(
        running=running,
        disks=(hypervisor.DiskSpec(path=old_path, target="vda", format="qcow2"),),
    )
    Volume.objects.filter(pool=a, name="data.qcow2").update(project=alpha, owner=member)

    response = api_for("member").post(
        f"/api/v1/vms/{vm.pk}/move-storage/", {"disk": "vda", "pool": b.pk}, format="json"
    )
    assert response.status_code == 202, response.content
    vm_move_storage_task(response.json()["job"])

    job = Job.objects.get(pk=response.json()["job"])
    assert (job.state, job.kind) == ("succeeded", "vm.move_storage"), job.log
    assert job.message == f"vda of {vm.name} is now {new_path}."
    live = hypervisor.domain_xml(LOCAL_URI, str(vm.pk))
    defined = hypervisor.domain_xml(LOCAL_URI, str(vm.pk), inactive=True)
    assert new_path in live and old_path not in live
    assert new_path in defined and old_path not in defined
    assert not (a_dir / "data.qcow2").exists()
    assert image_starts_with(new_path, b"moved-42", tmp_path)
    row = VirtualMachine.objects.get(pk=vm.pk)
    assert [d["source"] for d in row.disks] == [new_path]
    assert row.state == ("running" if running else "shutoff")
    assert not Volume.objects.filter(pool=a, name="data.qcow2").exists()
    moved = Volume.objects.get(pool=b, name="data.qcow2")
    assert (moved.project, moved.owner) == (alpha, member)
    assert AuditEvent.objects.filter(action="vm.move_storage", result="success").count() == 2
    if running:
        out = console_says(
            LOCAL_URI, str(vm.pk), b"head -c 8 /dev/vda; echo", b"moved-42", boot=True
        )
        assert b"moved-42" in out


def test_it_refuses_bad_moves_naming_the_field(guest, api_for, local_host, pools, tmp_path):
    a, a_dir, _b, _b_dir = two_pools(pools, local_host, tmp_path, b"x")
    vm = guest(
        running=False,
        disks=(hypervisor.DiskSpec(path=str(a_dir / "data.qcow2"), target="vda"),),
    )
    api = api_for("member")
    url = f"/api/v1/vms/{vm.pk}/move-storage/"
    assert (
        "name one of"
        in api.post(url, {"disk": "vdz", "pool": a.pk}, format="json").json()["disk"][0]
    )
    assert (
        "choose a pool of local"
        in api.post(url, {"disk": "vda", "pool": 0}, format="json").json()["pool"][0]
    )
    assert (
        "already in pool"
        in api.post(url, {"disk": "vda", "pool": a.pk}, format="json").json()["pool"][0]
    )
    assert (
        api_for("viewer").post(url, {"disk": "vda", "pool": a.pk}, format="json").status_code == 403
    )
    assert not Job.objects.exists()
