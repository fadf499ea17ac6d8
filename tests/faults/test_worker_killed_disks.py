# ruff: noqa: F811  (fixtures imported from the create, storage and migration tests)
"""The Celery worker killed (SIGKILL, the pool children with it) in the middle of a job
that copies a VM's big disk: a snapshot backup of the running VM, a restore of a backup
as a new VM, and a move of the running VM's disk to another pool; when the worker starts
again the job ends failed with a message saying the worker stopped, the guest runs on
its own disk image (no overlay, no half-made copy in use) and no unfinished copy is left.

The worker here is private to the module (its own queue and name, tests/faults/conftest.py),
so the test can kill it without touching the stack's worker, and restart it under the same
name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from panel import hypervisor
from panel.actors import Actor
from panel.models import Job
from storage import services as storage_services
from storage.models import StoragePool, Volume
from storage.services import refresh_pool_row
from tests.conftest import LOCAL_URI
from tests.create.conftest import (  # noqa: F401  (fixtures)
    dir_pool,
    domain_names,
    local_host,
    pool_dir,
    project,
)
from tests.faults.killed_worker import STOPPED, job, kill_and_restart, wait_until
from tests.vms.conftest import (  # noqa: F401  (fixtures)
    define_guest,
    fast_password_hashing,
)
from vms.models import Backup, VirtualMachine
from vms.services import backups, move_storage, restores, sync_domain

# The tests run their own Celery worker (worker_process) on Redis: stack tests.
pytestmark = [pytest.mark.libvirt, pytest.mark.stack, pytest.mark.timeout(240)]


def mirror_throttled(vm: VirtualMachine, target: str) -> bool:
    """Slow the running block job of the disk to 1 MiB/s; false while libvirt shows none."""
    return (
        subprocess.run(
            ["virsh", "-c", LOCAL_URI, "blockjob", str(vm.pk), target, "--bandwidth", "1"],
            capture_output=True,
        ).returncode
        == 0
    )


def disks_in_use(vm: VirtualMachine) -> dict[str, str]:
    """Target -> source of the disks the running domain uses now, as virsh lists them."""
    listed = subprocess.run(
        ["virsh", "-c", LOCAL_URI, "domblklist", str(vm.pk)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split()[:2] for line in listed.splitlines()[2:] if line.strip())


@pytest.fixture
def big_disk_vm(local_host, dir_pool, pool_dir, project, define_guest, tmp_path):
    """big_disk_vm(start=): the tiny guest with a 512 MiB qcow2 data disk full of data
    (copies of it take seconds); the VM and the disk's path."""

    def make(start: bool) -> tuple[VirtualMachine, Path]:
        filler = tmp_path / "fill.raw"
        subprocess.run(
            f"yes panel-fault-test | head -c {512 * 1024**2} > {filler}", shell=True, check=True
        )
        disk = pool_dir / "data.qcow2"
        subprocess.run(
            ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(filler), str(disk)],
            check=True,
        )
        filler.unlink()
        refresh_pool_row(dir_pool)
        spec = hypervisor.DiskSpec(path=str(disk), target="vdb", format="qcow2")
        info = define_guest(disks=(spec,))
        if start:
            info = hypervisor.start_domain(LOCAL_URI, info.uuid)
        vm = sync_domain(local_host, info)
        VirtualMachine.objects.filter(pk=vm.pk).update(project=project)
        vm.refresh_from_db()
        return vm, disk

    return make


@pytest.fixture
def backup_pool(local_host, admin_user) -> Iterator[tuple[StoragePool, Path]]:
    """A dir pool for backups, and its directory; removed afterwards."""
    path = Path("/var/lib/libvirt/images") / f"paneltest-bk-{uuidlib.uuid4().hex[:8]}"
    pool = storage_services.create_pool(
        local_host,
        {"name": path.name, "type": "dir", "target_path": str(path)},
        actor=Actor(admin_user),
    )
    yield pool, path
    with contextlib.suppress(hypervisor.HypervisorError):
        hypervisor.storage.delete_pool(LOCAL_URI, pool.name)
    shutil.rmtree(path, ignore_errors=True)


def test_it_puts_a_vm_back_on_its_own_disk_when_a_snapshot_backup_worker_was_killed(
    worker, pool_dir, big_disk_vm, backup_pool, admin_user
):
    vm, disk = big_disk_vm(start=True)
    pool, backup_dir = backup_pool
    job_id = backups.take_backup(vm, pool, method="snapshot", actor=Actor(admin_user)).pk

    def overlay() -> list[str]:
        return [f for f in os.listdir(pool_dir) if ".backup-" in f]

    wait_until(
        lambda: overlay() and any(backup_dir.iterdir()) and job(job_id).state == "running",
        60,
        job(job_id).log,
    )

    done = kill_and_restart(worker, job_id)

    assert done.state == "failed", done.log
    assert done.message.startswith(STOPPED), done.message
    assert f"{vm.name} runs on its own disk images again" in done.message, done.message
    # The guest runs on its own image, which has no overlay above or below it.
    assert disks_in_use(vm)["vdb"] == str(disk)
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state == "running"
    assert overlay() == []
    image = json.loads(
        subprocess.run(
            ["qemu-img", "info", "-U", "--output=json", str(disk)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert "backing-filename" not in image
    # No copy is left, and the backup says it failed.
    assert list(backup_dir.iterdir()) == []
    assert Backup.objects.get(job_id=job_id).state == "failed"


def test_it_removes_the_unfinished_copies_of_a_restore_whose_worker_was_killed(
    worker, dir_pool, pool_dir, big_disk_vm, backup_pool, admin_user
):
    vm, _disk = big_disk_vm(start=False)
    pool, _backup_dir = backup_pool
    taken = backups.take_backup(vm, pool, actor=Actor(admin_user)).pk
    wait_until(lambda: job(taken).is_finished, 120, job(taken).log)
    assert job(taken).state == "succeeded", job(taken).log
    backup = Backup.objects.get(job_id=taken)
    name = f"paneltest-r-{uuidlib.uuid4().hex[:8]}"
    job_id = restores.restore_backup(
        backup, mode="new", name=name, pool=dir_pool, actor=Actor(admin_user)
    ).pk
    copy = pool_dir / f"{name}-vdb.qcow2"
    wait_until(lambda: copy.exists() and job(job_id).state == "running", 60, job(job_id).log)

    def not_defined_yet() -> None:
        # The restored VM is defined only once its disks are copied (seconds for this one):
        # killed before that, so the restore can only be undone.
        assert name not in domain_names(), "the restored VM was defined before the kill"

    done = kill_and_restart(worker, job_id, killed=not_defined_yet)

    assert done.state == "failed", done.log
    assert done.message.startswith(STOPPED), done.message
    assert f"its unfinished copies were removed ({name}-vdb.qcow2)" in done.message
    assert not copy.exists()
    assert name not in domain_names()
    assert not VirtualMachine.objects.filter(name=name).exists()
    assert not Volume.objects.filter(pool=dir_pool, name=f"{name}-vdb.qcow2").exists()
    # The backup is untouched and can be restored again.
    assert Backup.objects.get(pk=backup.pk).state == "good"


def test_it_settles_a_disk_move_whose_worker_was_killed(
    worker, big_disk_vm, backup_pool, admin_user
):
    vm, disk = big_disk_vm(start=True)
    target, target_dir = backup_pool  # another dir pool of the same host
    job_id = move_storage.move_storage(
        vm, move_storage.MoveAsk(disk="vdb", pool=target.pk), actor=Actor(admin_user)
    ).pk
    copy = target_dir / disk.name
    # The mirror slowed to 1 MiB/s as soon as libvirt shows it (512 MiB: minutes to go),
    # so the kill lands before the worker could switch the guest over to the copy.
    wait_until(
        lambda: copy.exists() and job(job_id).state == "running" and mirror_throttled(vm, "vdb"),
        60,
        job(job_id).log,
    )

    def still_on_its_disk() -> None:
        assert disks_in_use(vm)["vdb"] == str(disk), "the guest was switched before the kill"

    done = kill_and_restart(worker, job_id, killed=still_on_its_disk)

    # Undone: the guest stays on its disk, and the half-made copy is gone.
    assert done.state == "failed", done.log
    assert done.message.startswith(STOPPED), done.message
    assert f"the move was undone: vdb stays on {disk}" in done.message, done.message
    in_use = disks_in_use(vm)
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state == "running"
    assert in_use["vdb"] == str(disk) and disk.exists()
    assert not copy.exists()
    row = VirtualMachine.objects.get(pk=vm.pk)
    assert [d["source"] for d in row.disks if d["target"] == "vdb"] == [in_use["vdb"]]
    assert not Job.objects.filter(target=f"vm:{vm.pk}", state="running").exists()
