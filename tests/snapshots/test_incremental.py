"""Incremental backups on the real libvirtd: the running tiny guest's data disk backed up
full, then incremental twice with data written between; each point restores with its own
content; deleting a point in the middle folds it into the next, which still restores; a
restore in place or a snapshot revert breaks the chain, and the next backup is full and
says why; a verification hashes the chain's files again and reads the point back."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from panel.actors import Actor
from panel.models import Job
from storage import services as storage_services
from tests.snapshots.conftest import open_shell, run_backup_job, run_job, shell, virsh
from tests.snapshots.test_backups import backup_now, force_off, restore_here
from tests.snapshots.test_external import read_disk, write_disk
from tests.snapshots.test_merge import backing
from vms.models import Backup, VirtualMachine
from vms.services import backups, disks, restores

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


def test_an_in_place_restore_of_one_disk_leaves_the_other_as_it_is(
    make_vm, backup_pool, dir_pool, project, admin_user, admin_client
):
    vm = make_vm(start=False)
    second = storage_services.create_volume(
        dir_pool, name=f"{vm.name}-b.qcow2", format="qcow2", capacity_gib=16 / 1024,
        project=project, actor=Actor(admin_user),
    )  # fmt: skip
    disks.attach_disk(vm, volume=second, target="vdb", live=False, actor=Actor(admin_user))
    virsh("start", str(vm.pk))
    VirtualMachine.objects.filter(pk=vm.pk).update(state="running")
    vm.refresh_from_db()
    console = open_shell(vm)
    shell(console, "echo alpha > /dev/vda; echo uno > /dev/vdb; sync")
    first = backup_now(vm, backup_pool, admin_user)
    shell(console, "echo bravo > /dev/vda; echo dos > /dev/vdb; sync")
    console.close()
    assert backup_now(vm, backup_pool, admin_user).kind == "incremental"
    force_off(vm)

    url = f"/api/v1/vms/{vm.pk}/backups/{first.pk}/restore/"
    refused = admin_client.post(url, {"mode": "new", "name": "x", "pool": dir_pool.pk,
                                      "disks": ["vdb"]}, content_type="application/json")  # fmt: skip
    assert refused.status_code == 400 and "in-place" in refused.json()["disks"][0]
    refused = admin_client.post(
        url, {"mode": "in_place", "disks": ["vdz"]}, content_type="application/json"
    )
    assert refused.status_code == 400 and "holds vda, vdb, not vdz" in refused.json()["disks"][0]
    response = admin_client.post(
        url, {"mode": "in_place", "disks": ["vdb"], "start": True}, content_type="application/json"
    )
    assert response.status_code == 202, response.content
    job = run_backup_job(response.json()["job"])
    assert job.state == "succeeded", (job.message, job.log)
    assert "vdb: " in job.log and "vda: " not in job.log  # only vdb was checked and copied
    console = open_shell(vm)
    assert shell(console, "head -c 5 /dev/vda") == "bravo"  # untouched
    assert shell(console, "head -c 3 /dev/vdb") == "uno"  # back to the first point
    console.close()


def test_a_qcow2_version_2_disk_gets_full_backups_and_the_note_says_how_to_upgrade_it(
    make_vm, backup_pool, admin_user
):
    vm = make_vm(start=False)
    path = vm.disks[0]["source"]
    subprocess.run(["qemu-img", "amend", "-f", "qcow2", "-o", "compat=0.10", path], check=True)
    virsh("start", str(vm.pk))
    VirtualMachine.objects.filter(pk=vm.pk).update(state="running")
    vm.refresh_from_db()
    first = backup_now(vm, backup_pool, admin_user)
    second = backup_now(vm, backup_pool, admin_user)
    for backup in (first, second):
        assert backup.method == "push" and backup.kind == "full" and backup.checkpoint == ""
        assert "vda is a qcow2 version 2 image" in backup.note
        assert "qemu-img amend -o compat=1.1" in backup.note
    assert virsh("checkpoint-list", str(vm.pk), "--name").strip() == ""


def raw_digest(path: str, fmt: str, tmp_path) -> str:
    out = tmp_path / "disk.raw"
    subprocess.run(
        ["qemu-img", "convert", "-U", "-f", fmt, "-O", "raw", path, str(out)], check=True
    )
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    out.unlink()
    return digest


def verify_now(client, backup: Backup) -> Job:
    url = f"/api/v1/vms/{backup.vm_id}/backups/{backup.pk}/verify/"
    response = client.post(url, {}, content_type="application/json")
    assert response.status_code == 202, response.content
    return run_backup_job(response.json()["job"])


def test_a_verification_rehashes_the_chain_and_reads_the_point_back_as_the_disk_was(
    make_vm, backup_pool, admin_user, admin_client, tmp_path
):
    vm = make_vm(start=True)
    console = open_shell(vm)
    write_disk(console, "alpha")
    full = backup_now(vm, backup_pool, admin_user)
    write_disk(console, "bravo")
    inc = backup_now(vm, backup_pool, admin_user)
    console.close()
    force_off(vm)  # nothing writes to the disk any more: it is as the last backup saw it
    assert len(inc.verify[0]["sha256"]) == 64
    disk = raw_digest(vm.disks[0]["source"], "qcow2", tmp_path)

    job = verify_now(admin_client, inc)
    assert job.state == "succeeded", (job.message, job.log)
    inc.refresh_from_db()
    [result] = inc.verified["disks"]
    assert inc.verified["ok"] and result["sha256"] == disk
    assert [f["backup"] for f in result["files"]] == [inc.pk, full.pk]
    assert all(f["ok"] for f in result["files"]) and result["same_as_before"] is None
    assert "as written" in job.log
    assert not [n for n in os.listdir(backup_pool.target_path) if "-verify-" in n]
    again = verify_now(admin_client, inc)
    inc.refresh_from_db()
    assert again.state == "succeeded" and inc.verified["disks"][0]["same_as_before"] is True

    # A byte of the full copy changes on disk: the incremental built on it fails.
    with open(full.disks[0]["path"], "r+b") as image:
        image.seek(-1, os.SEEK_END)
        last = image.read(1)
        image.seek(-1, os.SEEK_END)
        image.write(bytes([last[0] ^ 0xFF]))
    job = verify_now(admin_client, inc)
    assert job.state == "failed" and "failed its verification" in job.message
    inc.refresh_from_db()
    assert inc.state == "failed" and not inc.verified["ok"]
    assert f"the file of backup #{full.pk} changed" in inc.verified["disks"][0]["summary"]
    page = admin_client.get(f"/vms/{vm.pk}/?tab=backups").content.decode()
    assert "verification failed" in page
