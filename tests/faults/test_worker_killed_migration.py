# ruff: noqa: F811  (fixtures imported from the create, storage and migration tests)
"""The Celery worker killed (SIGKILL, the pool children with it) in the middle of a live
migration and of a migration that copies the VM's storage to the other host; when the
worker starts again the job ends failed with a message saying the worker stopped, the
migration is undone and the VM runs on exactly one host (the source), the panel says
which, and no copy of its disk is left on the target.

The worker here is private to the module (its own queue and name, tests/faults/conftest.py),
so the test can kill it without touching the stack's worker, and restart it under the same
name.
"""

from __future__ import annotations

import pytest

from panel import hypervisor
from panel.models import Job
from storage.models import StoragePool, Volume
from storage.services import refresh_pool_row
from tests.conftest import LOCAL_URI
from tests.create.conftest import local_host  # noqa: F401  (fixture)
from tests.faults.killed_worker import STOPPED, job, kill_and_restart, wait_until
from tests.migration.conftest import (  # noqa: F401  (fixtures)
    console_says,
    guest,
    pools,
    second_host,
    where,
)
from tests.migration.conftest import virsh as migration_virsh
from tests.vms.conftest import (  # noqa: F401  (fixtures)
    api_for,
    define_guest,
    fast_password_hashing,
    make_vm,
    member,
    people,
)
from vms.models import VirtualMachine

# The tests run their own Celery worker (worker_process) on Redis: stack tests.
pytestmark = [pytest.mark.libvirt, pytest.mark.stack, pytest.mark.timeout(240)]


def test_it_leaves_a_vm_whose_migration_worker_was_killed_running_on_one_host(
    worker, guest, api_for, second_host, second_host_uri
):
    vm = guest()
    console_says(LOCAL_URI, str(vm.pk), b"echo up-$((6*7))", b"up-42", boot=True)
    api = api_for("member")
    response = api.post(
        f"/api/v1/vms/{vm.pk}/migrate/",
        # 1 MiB/s: about 100 s to go when the worker dies.
        {"target_host": second_host.pk, "live": True, "bandwidth_mib": 1},
        format="json",
    )
    assert response.status_code == 202, response.content
    job_id = response.json()["job"]
    wait_until(
        lambda: "MiB sent" in job(job_id).message and job(job_id).progress > 3,
        60,
        job(job_id).log,
    )
    assert where(vm, second_host_uri) == ("running", "paused")  # the incoming copy waits

    done = kill_and_restart(worker, job_id)

    # The migration was still copying (about 100 s to go): the new worker aborts it, and the
    # VM runs on the source only; the panel says so, and leaves no ghost on the target.
    assert done.state == "failed", done.log
    assert done.message.startswith(STOPPED), done.message
    assert f"the migration was undone: {vm.name} is running on local" in done.message, done.log
    assert where(vm, second_host_uri) == ("running", "absent"), done.log
    row = VirtualMachine.objects.get(pk=vm.pk)
    assert (row.host_id, row.state) == (vm.host_id, "running")
    assert b"alive-9" in console_says(LOCAL_URI, str(vm.pk), b"echo alive-$((4+5))", b"alive-9")
    # The VM takes new actions again: its job slot is free.
    assert not Job.objects.filter(target=f"vm:{vm.pk}", state__in=["queued", "running"]).exists()


def test_it_removes_the_disk_copies_of_a_storage_migration_whose_worker_was_killed(
    worker, guest, api_for, second_host, second_host_uri, pools
):
    src_pool, src_dir = pools.local()
    dst_pool, dst_dir = pools.second()
    migration_virsh(LOCAL_URI, "vol-create-as", src_pool, "data.qcow2", "16M", "--format", "qcow2")
    target_pool = refresh_pool_row(StoragePool(host=second_host, name=dst_pool))
    vm = guest(disks=(hypervisor.DiskSpec(path=str(src_dir / "data.qcow2"), target="vda"),))
    console_says(LOCAL_URI, str(vm.pk), b"echo up-$((6*7))", b"up-42", boot=True)
    response = api_for("member").post(
        f"/api/v1/vms/{vm.pk}/migrate/",
        {
            "target_host": second_host.pk,
            "copy_storage": "all",
            "target_pool": target_pool.pk,
            "bandwidth_mib": 1,
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    job_id = response.json()["job"]
    copy = dst_dir / "data.qcow2"
    wait_until(lambda: copy.exists() and job(job_id).progress > 3, 60, job(job_id).log)

    done = kill_and_restart(worker, job_id)

    # At 1 MiB/s the copy (the disk, then the memory) was far from done: undone. The VM runs
    # on its disk here, and the copy it was making on the target is gone.
    assert done.state == "failed", done.log
    assert "the migration was undone" in done.message, done.log
    assert where(vm, second_host_uri) == ("running", "absent"), done.log
    assert not copy.exists(), done.log
    assert f"removed the incomplete copy /var/lib/libvirt/images/{dst_pool}" in done.log
    assert not Volume.objects.filter(pool__host=second_host, name="data.qcow2").exists()
    assert (src_dir / "data.qcow2").exists()
    row = VirtualMachine.objects.get(pk=vm.pk)
    assert (row.host_id, row.state) == (vm.host_id, "running")
