"""Incremental backups on the real libvirtd: the running tiny guest's data disk backed up
full, then incremental twice with data written between; each point restores with its own
content; deleting a point in the middle folds it into the next, which still restores; a
restore in place or a snapshot revert breaks the chain, and the next backup is full and
says why."""

from __future__ import annotations

import os

import pytest

from panel.actors import Actor
from tests.snapshots.conftest import open_shell, run_backup_job, run_job, shell, virsh
from tests.snapshots.test_backups import backup_now, force_off, restore_here
from tests.snapshots.test_external import read_disk, write_disk
from tests.snapshots.test_merge import backing
from vms.models import Backup, VirtualMachine
from vms.services import backups, restores

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(420)]


def restored_word(backup: Backup, pool, admin_user, undefine_later) -> str:
    """What the data disk of a new VM restored from backup starts with."""
    job = restores.restore_backup(
        backup,
        mode="new",
        name=f"{backup.vm_name}-r{backup.pk}",
        pool=pool,
        start=True,
        actor=Actor(admin_user),
    )
    job = run_backup_job(job.pk)
    assert job.state == "succeeded", (job.message, job.log)
    restored = VirtualMachine.objects.get(pk=job.result["restored"])
    undefine_later(str(restored.pk))
    console = open_shell(restored)
    try:
        return read_disk(console)
    finally:
        console.close()
        virsh("destroy", str(restored.pk))


def test_full_then_incrementals_restore_each_point_and_a_deleted_point_folds_into_the_next(
    make_vm, backup_pool, dir_pool, admin_user, undefine_later
):
    vm = make_vm(start=True)
    console = open_shell(vm)
    # 4 MiB of data in the full copy, which the incrementals need not copy again.
    shell(console, "dd if=/dev/urandom of=/dev/vda bs=1M seek=2 count=4 2>/dev/null; sync")
    points = []
    for word in ("alpha", "bravo", "charl"):
        write_disk(console, word)
        points.append(backup_now(vm, backup_pool, admin_user))
    console.close()
    full, inc1, inc2 = points
    assert full.kind == "full" and full.parent is None and full.checkpoint
    assert (inc1.kind, inc1.parent_id) == ("incremental", full.pk)
    assert (inc2.kind, inc2.parent_id) == ("incremental", inc1.pk)
    assert all(b.method == "push" and b.state == "good" for b in points)
    # Each incremental copy holds only what changed, and its header names the one below.
    assert full.size > 4 * 2**20 and inc1.size < 2**20 and inc2.size < 2**20
    assert backing(inc1.disks[0]["path"]) == full.disks[0]["path"]
    assert backing(inc2.disks[0]["path"]) == inc1.disks[0]["path"]
    assert backing(full.disks[0]["path"]) == ""
    assert "incremental: only what changed since backup" in inc2.job.log

    assert restored_word(inc1, dir_pool, admin_user, undefine_later) == "bravo"
    assert restored_word(full, dir_pool, admin_user, undefine_later) == "alpha"

    # The middle point goes: the last takes over its files, its own clusters written in.
    own = inc2.disks[0]["path"]
    backups.delete_backup(Backup.objects.get(pk=inc1.pk), actor=Actor(admin_user))
    inc2.refresh_from_db()
    assert inc2.parent_id == full.pk and inc2.kind == "incremental"
    assert inc2.disks[0]["path"] == inc1.disks[0]["path"]
    assert not os.path.exists(own)
    assert backing(inc2.disks[0]["path"]) == full.disks[0]["path"]
    assert set(virsh("checkpoint-list", str(vm.pk), "--name").split()) == {
        full.checkpoint,
        inc2.checkpoint,
    }
    force_off(vm)
    restore_here(inc2, admin_user)  # in place, started
    console = open_shell(vm)
    assert read_disk(console) == "charl"
    write_disk(console, "delta")
    console.close()

    # Restoring in place gave the VM new images: their changes are not in any bitmap.
    vm.refresh_from_db()
    after = backup_now(vm, backup_pool, admin_user)
    assert after.kind == "full" and after.parent is None
    assert "no longer has the checkpoint" in after.note
    assert virsh("checkpoint-list", str(vm.pk), "--name").split() == [after.checkpoint]
    assert "full copy: the domain no longer has the checkpoint" in after.job.log


def test_a_reverted_snapshot_makes_the_next_backup_full(make_vm, backup_pool, admin_user, client):
    vm = make_vm(start=True)
    first = backup_now(vm, backup_pool, admin_user)
    client.force_login(admin_user)
    url = f"/api/v1/vms/{vm.pk}/snapshots/"
    response = client.post(url, {"name": "s1"}, content_type="application/json")
    assert response.status_code == 202, response.content
    run_job(response)
    response = client.post(f"{url}s1/revert/", {}, content_type="application/json")
    job = run_job(response)
    # qemu refuses to load a snapshot while a disk has bitmaps: the checkpoints went first.
    assert f"deleted the backup checkpoint(s) {first.checkpoint}" in job.log
    vm.refresh_from_db()
    second = backup_now(vm, backup_pool, admin_user)
    assert second.kind == "full" and "no longer has the checkpoint" in second.note
    listed = client.get(f"/api/v1/vms/{vm.pk}/backups/").json()["results"]
    assert {b["id"]: (b["kind"], b["parent"]) for b in listed} == {
        first.pk: ("full", None),
        second.pk: ("full", None),
    }
    assert listed[0]["note"] == second.note
