"""Backups on the real libvirtd: a schedule fired by calling the beat task creates backups
of the running tiny guest and prunes them to its retention; a backup restored into a new VM
boots and holds the data disk as it was; offline and snapshot-copy-merge backups restored in
place."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from networking import services as net_services
from panel.actors import Actor
from panel.exceptions import ConflictError
from panel.models import AuditEvent, Job
from tests.networking.conftest import isolated, nets  # noqa: F401  (fixture)
from tests.snapshots.conftest import open_shell, run_backup_job, virsh
from tests.snapshots.test_external import read_disk, source, write_disk
from tests.snapshots.test_merge import backing
from vms.models import Backup, BackupSchedule, VirtualMachine
from vms.services import backups, restores
from vms.tasks import run_backup_schedules, vm_snapshot_task

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(420)]


def fire(schedule: BackupSchedule) -> Job:
    """Make the schedule due, call the beat task, run the backup job it queued."""
    BackupSchedule.objects.filter(pk=schedule.pk).update(
        next_run=timezone.now() - timedelta(minutes=1)
    )
    before = set(Job.objects.values_list("pk", flat=True))
    lines = run_backup_schedules()
    [job] = Job.objects.exclude(pk__in=before)
    assert f"job #{job.pk}" in " ".join(lines)
    assert BackupSchedule.objects.get(pk=schedule.pk).next_run > timezone.now()
    job = run_backup_job(job.pk)
    assert job.state == "succeeded", (job.message, job.log)
    return job


def test_a_fired_schedule_backs_up_prunes_and_a_backup_restores_into_a_new_vm_that_boots(
    make_vm,
    backup_pool,
    dir_pool,
    admin_user,
    undefine_later,
    local_host,
    nets,  # noqa: F811
):
    # An isolated network (no forward, no traffic leaves the host) so the VM has a MAC.
    network = net_services.create_network(local_host, **isolated(nets), actor=Actor(admin_user))
    vm = make_vm(start=True, network=network.name)
    assert vm.nics
    schedule = BackupSchedule.objects.create(
        vm=vm,
        project=vm.project,
        kind="backup",
        pool=backup_pool,
        minute="*/5",
        hour="*",
        keep_last=2,
        created_by=admin_user,
    )
    console = open_shell(vm)
    made = []
    for word in ("first", "secnd", "third"):
        write_disk(console, word)
        job = fire(schedule)
        made.append(Backup.objects.get(job=job))
        assert "copied by the push method" in job.log
        if word == "secnd":  # the first one's copies, before the third firing prunes them
            first_files = [d["path"] for d in made[0].disks]
            assert all(os.path.exists(p) for p in first_files)
    console.close()

    kept = list(Backup.objects.filter(vm=vm).order_by("created"))
    assert len(kept) == 2 and all(b.state == "good" for b in kept)
    assert not Backup.objects.filter(pk=made[0].pk).exists()  # pruned to keep_last=2
    assert AuditEvent.objects.filter(action="vm.backup.prune").count() == 1
    second, third = kept
    assert second.pk == made[1].pk
    assert [d["target"] for d in third.disks] == ["vda"]
    assert third.method == "push" and third.size > 0 and third.duration is not None
    assert "<domain" in third.xml and str(vm.pk) in third.xml
    assert third.verify[0]["ok"] and third.rpo_seconds is not None
    assert 0 <= third.rpo_seconds < 300
    # A chain: the first full, each next one incremental on the one before. Pruning the
    # first folded the second into the first's files, which the second now keeps as a full
    # copy; the third's header names them.
    assert (made[0].kind, made[1].kind) == ("full", "incremental")
    assert second.kind == "full" and second.parent_id is None
    assert third.kind == "incremental" and third.parent_id == second.pk
    assert [d["path"] for d in second.disks] == first_files
    assert not any(os.path.exists(d["path"]) for d in made[1].disks)
    assert backing(first_files[0]) == "" and backing(third.disks[0]["path"]) == first_files[0]
    remaining = sorted(os.listdir(backup_pool.target_path))
    assert remaining == sorted(os.path.basename(d["path"]) for d in second.disks + third.disks)
    checkpoints = set(virsh("checkpoint-list", str(vm.pk), "--name").split())
    assert checkpoints == {second.checkpoint, third.checkpoint}
    assert source(vm).startswith(os.path.dirname(vm.disks[0]["source"]))  # not moved

    job = restores.restore_backup(
        second, mode="new", name=f"{vm.name}-r", pool=dir_pool, start=True, actor=Actor(admin_user)
    )
    job = run_backup_job(job.pk)
    assert job.state == "succeeded", (job.message, job.log)
    restored = VirtualMachine.objects.get(pk=job.result["restored"])
    undefine_later(str(restored.pk))
    assert restored.name == f"{vm.name}-r" and restored.pk != vm.pk
    assert restored.project == vm.project and restored.state == "running"
    assert len(restored.nics) == 1
    assert restored.nics[0]["mac"] != vm.nics[0]["mac"]
    new_disk = restored.disks[0]["source"]
    assert new_disk.startswith(dir_pool.target_path) and new_disk != source(vm)
    console = open_shell(restored)  # boots: the guest's ready line, then its shell
    assert read_disk(console) == "secnd"
    console.close()
    console = open_shell(vm, booting=False)
    assert read_disk(console) == "third"  # the original is untouched
    console.close()
    assert virsh("domstate", str(restored.pk)).strip() == "running"


def backup_now(vm, pool, admin_user, method: str = "") -> Backup:
    job = backups.take_backup(vm, pool, method=method, actor=Actor(admin_user))
    job = run_backup_job(job.pk)
    assert job.state == "succeeded", (job.message, job.log)
    return Backup.objects.get(job=job)


def restore_here(backup: Backup, admin_user) -> Job:
    backup = Backup.objects.select_related("vm__host").get(pk=backup.pk)  # the VM as it is now
    job = restores.restore_backup(backup, mode="in_place", start=True, actor=Actor(admin_user))
    job = run_backup_job(job.pk)
    assert job.state == "succeeded", (job.message, job.log)
    return job


def force_off(vm) -> None:
    virsh("destroy", str(vm.pk))
    VirtualMachine.objects.filter(pk=vm.pk).update(state="shutoff")


def test_offline_and_snapshot_copy_backups_restore_in_place(make_vm, backup_pool, admin_user):
    vm = make_vm(start=True)
    original = source(vm)
    console = open_shell(vm)
    write_disk(console, "alpha")
    console.close()
    force_off(vm)
    vm.refresh_from_db()
    offline = backup_now(vm, backup_pool, admin_user)
    assert offline.method == "offline" and offline.rpo_seconds is None
    assert offline.verify[0]["ok"] and offline.size > 0

    virsh("start", str(vm.pk))
    VirtualMachine.objects.filter(pk=vm.pk).update(state="running")
    vm.refresh_from_db()
    console = open_shell(vm)
    write_disk(console, "bravo")
    console.close()
    # The way for hosts without libvirt's backup API: overlay, copy, commit back.
    copied = backup_now(vm, backup_pool, admin_user, method="snapshot")
    assert copied.method == "snapshot" and copied.rpo_seconds is not None
    assert source(vm) == original and backing(original) == ""
    assert not [f for f in os.listdir(os.path.dirname(original)) if ".backup-" in f]
    assert virsh("snapshot-list", str(vm.pk), "--name").strip() == ""
    console = open_shell(vm, booting=False)
    write_disk(console, "charl")
    console.close()

    with pytest.raises(ConflictError, match="shut it down before restoring it in place"):
        restores.restore_backup(copied, mode="in_place", actor=Actor(admin_user))
    force_off(vm)
    job = restore_here(copied, admin_user)
    assert f"deleted the replaced image {original}" in job.log
    console = open_shell(vm)
    assert read_disk(console) == "bravo"
    console.close()

    force_off(vm)
    restore_here(offline, admin_user)
    console = open_shell(vm)
    assert read_disk(console) == "alpha"
    console.close()
    # Every restore left exactly one image for the disk, no chain.
    assert backing(source(vm)) == ""
    disks = [f for f in os.listdir(os.path.dirname(original)) if f.startswith(vm.name)]
    assert disks == [os.path.basename(source(vm))]


def test_a_project_schedule_snapshots_each_vm_and_keeps_the_newest(
    make_vm, admin_user, django_user_model
):
    vm = make_vm(start=False)
    schedule = BackupSchedule.objects.create(
        project=vm.project, kind="snapshot", keep_last=2, created_by=admin_user
    )
    names = []
    for _ in range(3):
        BackupSchedule.objects.filter(pk=schedule.pk).update(
            next_run=timezone.now() - timedelta(minutes=1)
        )
        before = set(Job.objects.values_list("pk", flat=True))
        run_backup_schedules()
        [job] = Job.objects.exclude(pk__in=before)
        assert job.kind == "vm.snapshot.create" and job.result["vm"] == str(vm.pk)
        vm_snapshot_task(job.pk)
        job.refresh_from_db()
        assert job.state == "succeeded", (job.message, job.log)
        names.append(job.result["name"])
    assert "pruned (retention of schedule" in job.log
    assert virsh("snapshot-list", str(vm.pk), "--name").split() == names[1:]
    assert sorted(vm.snapshots.values_list("name", flat=True)) == names[1:]

    # The schedule acts as its creator: one who may no longer change the VM is refused.
    nobody = django_user_model.objects.create_user("nobody", password="x" * 12)
    BackupSchedule.objects.filter(pk=schedule.pk).update(
        created_by=nobody, next_run=timezone.now() - timedelta(minutes=1)
    )
    before = set(Job.objects.values_list("pk", flat=True))
    lines = run_backup_schedules()
    assert not Job.objects.exclude(pk__in=before).exists()
    assert any("does not allow" in line for line in lines), lines
    assert AuditEvent.objects.filter(action="vm.snapshot.create", result="denied").exists()
