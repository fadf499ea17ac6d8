# ruff: noqa: F811  (fixtures imported from the create, storage and migration tests)
"""The Celery worker killed (SIGKILL, the pool children with it) in the middle of a VM
create, a volume clone and a live migration; when the worker starts again the job ends
failed with a message saying the worker stopped, and nothing it made is left: no
volume, no domain, no quota held, no job still "running"; a migrated VM runs on exactly
one host and the panel says which.

The worker here is private to the module (its own queue and name), so the test can kill
it without touching the stack's worker, and restart it under the same name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery.contrib.django.task import DjangoTask

from panel import hypervisor, quotas
from panel.actors import Actor
from panel.models import Job
from storage import services as storage_services
from storage.models import StoragePool, Volume
from storage.services import refresh_pool_row
from tests.conftest import LOCAL_URI
from tests.create.conftest import (  # noqa: F401  (fixtures)
    GUEST_DIR,
    created,
    dir_pool,
    domain_names,
    local_host,
    pool_dir,
    project,
    volumes_in,
)
from tests.migration.conftest import (  # noqa: F401  (fixtures)
    console_says,
    guest,
    pools,
    second_host,
    where,
)
from tests.migration.conftest import virsh as migration_virsh
from tests.stack import process_env, spawn
from tests.vms.conftest import (  # noqa: F401  (fixtures)
    api_for,
    define_guest,
    fast_password_hashing,
    make_vm,
    member,
    people,
)
from vms.models import Backup, VirtualMachine
from vms.services import backups, move_storage, restores, sync_domain

# The tests run their own Celery worker (worker_process) on Redis: stack tests.
pytestmark = [pytest.mark.libvirt, pytest.mark.stack, pytest.mark.timeout(240)]

STOPPED = "The worker running this job stopped"


class Worker:
    """A Celery worker process group on its own queue, killable and restartable."""

    def __init__(self, logs: Path) -> None:
        self.queue = f"faults-{uuidlib.uuid4().hex[:8]}"
        self.name = f"{self.queue}@%h"
        self.logs = logs
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        log = self.logs / f"worker-{self.runs}.log"
        env = {
            **process_env(),
            "PANEL_CELERY_QUEUE": self.queue,
            "PANEL_WORKER_RECHECK_SECONDS": "1",
        }
        self.proc = spawn(
            [
                str(Path(sys.executable).parent / "celery"),
                "-A",
                "panel",
                "worker",
                "-l",
                "info",
                "-c",
                "1",
                "-Q",
                self.queue,
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                self.name,
            ],
            log,
            env=env,
            new_session=True,
        )
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text(errors="replace"):
            assert self.proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once, as a crash or the OOM killer would."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def worker_process(django_db_setup, tmp_path_factory) -> Iterator[Worker]:
    w = Worker(tmp_path_factory.mktemp("faults-worker"))
    w.start()
    yield w
    w.stop()


@pytest.fixture
def worker(worker_process, transactional_db, monkeypatch) -> Worker:
    """The private worker, running; every task this test queues goes to it."""

    send = DjangoTask.apply_async

    def to_private_queue(task, args=None, kwargs=None, **options):  # type: ignore[no-untyped-def]
        return send(task, args, kwargs, **{**options, "queue": worker_process.queue})

    monkeypatch.setattr(DjangoTask, "apply_async", to_private_queue)
    if worker_process.proc is None or worker_process.proc.poll() is not None:
        worker_process.start()
    return worker_process


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def job(job_id: int) -> Job:
    return Job.objects.get(pk=job_id)


def kill_and_restart(
    worker: Worker,
    job_id: int,
    *,
    new_name: bool = False,
    killed: Callable[[], object] | None = None,
) -> Job:
    """Kill the worker mid-job, see the job stuck as running (and killed(), the test's
    check that the kill came early enough for the outcome it expects), start the worker
    again (under a new name: a recreated container) and wait for it to settle the job."""
    worker.kill()
    assert job(job_id).state == "running"
    if killed is not None:
        killed()
    if new_name:
        worker.name = f"{worker.queue}-{worker.runs}@%h"
    worker.start()
    wait_until(lambda: job(job_id).is_finished, 120, f"job stayed {job(job_id).state}")
    return job(job_id)


def test_every_kind_of_vm_and_volume_job_has_an_undo_for_a_dead_worker():
    from panel import registry
    from panel.choices import JobKind

    kinds = {k.value for k in JobKind if k.value.startswith(("vm.", "volume."))}
    assert kinds <= set(registry.undo_abandoned), kinds - set(registry.undo_abandoned)
    for undo in registry.undo_abandoned.values():
        assert callable(undo), undo


def test_it_undoes_a_create_whose_worker_was_killed_while_the_vm_booted(
    worker, admin_client, local_host, dir_pool, project, created
):
    local_host.facts = {"cpus": 2, "memory_total_bytes": 8 * 1024**3}
    local_host.save()
    name = "ptc-killed"
    created.append(name)
    before = quotas.usage(project)
    body = {
        "name": name,
        "project": project.pk,
        "vcpus": 1,
        "memory_mib": 96,
        "os_variant": "generic",
        "disks": [{"pool": dir_pool.pk, "size_gib": 0.05, "format": "qcow2"}],
        "networks": [],
        # No serial console: the job waits its full minute for the first output.
        "install": {
            "method": "kernel",
            "kernel": f"{GUEST_DIR}/vmlinuz",
            "initrd": f"{GUEST_DIR}/initrd.img",
            "cmdline": "console=tty0",
        },
        "start": True,
    }
    response = admin_client.post("/api/v1/vms/", json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    job_id = response.json()["job"]
    wait_until(lambda: "started; waiting" in job(job_id).log, 60, job(job_id).log)
    assert name in domain_names() and f"{name}-disk0.qcow2" in volumes_in(dir_pool.name)
    assert quotas.usage(project).vms == before.vms + 1

    done = kill_and_restart(worker, job_id)

    assert done.state == "failed"
    assert done.message.startswith(STOPPED) and "removed" in done.message, done.message
    assert name not in domain_names()
    assert volumes_in(dir_pool.name) == set()
    assert not VirtualMachine.objects.filter(name=name).exists()
    assert quotas.usage(project) == before
    # The page and the API show the job as the user sees it: failed, not running.
    api_job = admin_client.get(f"/api/v1/jobs/{job_id}/").json()
    assert (api_job["state"], api_job["message"]) == ("failed", done.message)


def test_it_removes_the_half_made_copy_of_a_clone_whose_worker_was_killed(
    worker, admin_client, local_host, dir_pool, pool_dir, project
):
    # A raw volume full of data (not zeros, which the copy would skip): the clone takes
    # a few seconds.
    source = pool_dir / "big.img"
    subprocess.run(
        f"yes panel-fault-test | head -c {512 * 1024**2} > {source}", shell=True, check=True
    )
    refresh_pool_row(dir_pool)
    volume = Volume.objects.get(pool=dir_pool, name="big.img")
    # Written behind the panel: an admin takes it into the project, declaring its format.
    assigned = admin_client.post(
        f"/api/v1/volumes/{volume.pk}/assign/",
        json.dumps({"project": project.pk, "format": "raw"}),
        content_type="application/json",
    )
    assert assigned.status_code == 200, assigned.content
    before = quotas.usage(project)

    response = admin_client.post(
        f"/api/v1/volumes/{volume.pk}/clone/",
        json.dumps({"name": "big-copy.img"}),
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    job_id = response.json()["job"]
    wait_until(lambda: "copying" in job(job_id).log, 30, job(job_id).log)
    wait_until(lambda: 0 < job(job_id).progress, 30, job(job_id).log)
    assert job(job_id).progress < 90, "the copy ended before the kill"

    # The new worker has another name: it finds the old one silent and cleans up for it.
    done = kill_and_restart(worker, job_id, new_name=True)

    assert done.state == "failed", done.log
    assert done.message.startswith(STOPPED), done.message
    assert "big-copy.img was removed" in done.message
    assert volumes_in(dir_pool.name) == {"big.img"}
    assert not (pool_dir / "big-copy.img").exists()
    assert list(Volume.objects.filter(pool=dir_pool).values_list("name", flat=True)) == ["big.img"]
    assert quotas.usage(project) == before
    # The volume takes new work again: no job is left holding it.
    assert not Job.objects.filter(target=f"volume:{volume.pk}", state="running").exists()


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


def test_it_removes_the_unfinished_disks_of_a_vm_clone_whose_worker_was_killed(
    worker, admin_client, local_host, dir_pool, pool_dir, project, define_guest
):
    # A VM whose data disk is a raw volume full of data: its full clone takes seconds.
    disk = pool_dir / "data.img"
    subprocess.run(
        f"yes panel-fault-test | head -c {512 * 1024**2} > {disk}", shell=True, check=True
    )
    refresh_pool_row(dir_pool)
    info = define_guest(disks=(hypervisor.DiskSpec(path=str(disk), target="vdb", format="raw"),))
    vm = sync_domain(local_host, info)
    VirtualMachine.objects.filter(pk=vm.pk).update(project=project)
    name = f"paneltest-clone-{uuidlib.uuid4().hex[:8]}"

    response = admin_client.post(f"/vms/{vm.pk}/clone/", {"name": name})
    assert response.status_code == 302, response.content
    job_id = Job.objects.get(kind="vm.clone", target=f"vm:{vm.pk}").pk
    copy = pool_dir / f"{name}-vdb.img"
    wait_until(lambda: copy.exists() and job(job_id).state == "running", 30, job(job_id).log)

    def not_defined_yet() -> None:
        # The worker defines the clone only once its disks are copied (seconds for this
        # one): killed before that, so the clone can only be undone.
        assert name not in domain_names(), "the clone was defined before the kill"

    done = kill_and_restart(worker, job_id, new_name=True, killed=not_defined_yet)

    assert done.state == "failed", done.log
    assert done.message.startswith(STOPPED), done.message
    assert f"the unfinished clone's disks were removed: {name}-vdb.img" in done.message
    assert not copy.exists()
    assert volumes_in(dir_pool.name) == {"data.img"}
    assert name not in domain_names()
    assert not VirtualMachine.objects.filter(name=name).exists()
    assert not Volume.objects.filter(pool=dir_pool, name=f"{name}-vdb.img").exists()
    # The VM takes new work again.
    assert not Job.objects.filter(target=f"vm:{vm.pk}", state="running").exists()


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
        vm, {"disk": "vdb", "pool": target.pk}, actor=Actor(admin_user)
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
