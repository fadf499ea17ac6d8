# ruff: noqa: F811  (fixtures imported from the create, storage and migration tests)
"""The Celery worker killed (SIGKILL, the pool children with it) in the middle of a VM
create, a volume clone and a VM clone; when the worker starts again the job ends failed
with a message saying the worker stopped, and nothing it made is left: no volume, no
domain, no quota held, no job still "running". Also: every kind of VM and volume job has
an undo for a dead worker.

The worker here is private to the module (its own queue and name, tests/faults/conftest.py),
so the test can kill it without touching the stack's worker, and restart it under the same
name.
"""

from __future__ import annotations

import json
import subprocess
import uuid as uuidlib

import pytest

from panel import hypervisor, quotas
from panel.models import Job
from storage.models import Volume
from storage.services import refresh_pool_row
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
from tests.faults.killed_worker import STOPPED, job, kill_and_restart, wait_until
from tests.vms.conftest import (  # noqa: F401  (fixtures)
    define_guest,
    fast_password_hashing,
)
from vms.models import VirtualMachine
from vms.services import sync_domain

# The tests run their own Celery worker (worker_process) on Redis: stack tests.
pytestmark = [pytest.mark.libvirt, pytest.mark.stack, pytest.mark.timeout(240)]


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
