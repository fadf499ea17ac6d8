"""POST /api/v1/vms/ by direct kernel boot: the tiny guest with a qcow2 data disk, run by
the real worker with progress pushed live; and a failure after the disks exist undone."""

from __future__ import annotations

import json
import time

import pytest
from lxml import etree

from panel import jobs, quotas
from panel.actors import Actor
from panel.models import Job
from tests.conftest import kernel_vm
from tests.create.conftest import GUEST_DIR, domain_names, volumes_in
from tests.stack import open_ws
from tests.storage.conftest import virsh
from vms.models import VirtualMachine
from vms.services import create
from vms.tasks import vm_create_task

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(240)]


def body(project, pool, name, **extra):
    return kernel_vm(project, name, pool, os_variant="generic", **extra)


@pytest.mark.stack
def test_the_worker_creates_and_boots_the_tiny_guest_with_live_progress(
    stack, transactional_db, client, admin_user, local_host, dir_pool, project, created
):
    local_host.facts = {
        "cpus": 2,
        "memory_total_bytes": 8 * 1024**3,
        "memory_free_bytes": 4 * 1024**3,
    }
    local_host.save()
    client.force_login(admin_user)
    name = "ptc-kernel"
    created.append(name)
    response = client.post(
        "/api/v1/vms/", json.dumps(body(project, dir_pool, name)), content_type="application/json"
    )
    assert response.status_code == 202, response.content
    answer = response.json()

    progress, states = [], []
    with open_ws(stack, f"/ws/jobs/{answer['job']}/", client.cookies["sessionid"].value) as ws:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            job = json.loads(ws.recv(timeout=60))["job"]
            progress.append(job["progress"])
            states.append(job["state"])
            if job["state"] in ("succeeded", "failed"):
                break
    job = Job.objects.get(pk=answer["job"])
    assert job.state == "succeeded", job.log
    assert progress == sorted(progress) and progress[-1] == 100
    assert len(set(progress)) >= 4  # allocating, defining, waiting, done
    steps = [line.split(" ", 1)[1] for line in job.log.splitlines()]
    order = ["allocating", "defining", "started; waiting", "console:", f"{name} created (running)"]
    positions = [next(i for i, s in enumerate(steps) if s.startswith(w)) for w in order]
    assert positions == sorted(positions), steps
    # Booted with console=ttyS0 (not quiet): the kernel's first line is what it printed.
    assert "Linux version" in next(s for s in steps if s.startswith("console:")), job.log

    vm = VirtualMachine.objects.get(pk=answer["id"])
    assert (vm.name, vm.state, vm.project, vm.owner) == (name, "running", project, admin_user)
    root = etree.fromstring(virsh("dumpxml", answer["id"]).encode())
    disk = root.find("./devices/disk[@device='disk']")
    assert disk.find("driver").get("type") == "qcow2"
    assert disk.find("source").get("file").endswith(f"/{name}-disk0.qcow2")
    assert root.findtext("./os/kernel") == f"{GUEST_DIR}/vmlinuz"
    assert root.find("./devices/graphics[@type='vnc']") is not None
    assert root.find("./devices/serial") is not None
    assert f"{name}-disk0.qcow2" in volumes_in(dir_pool.name)
    assert quotas.usage(project).vms == 1


def test_a_failure_after_the_disks_exist_leaves_nothing(
    admin_user, local_host, dir_pool, project, created
):
    local_host.facts = {"cpus": 2, "memory_total_bytes": 8 * 1024**3}
    local_host.save()
    name = "ptc-broken"
    created.append(name)
    before = quotas.usage(project)
    # A kernel path that passes the checks but does not exist: qemu refuses to start.
    data = body(project, dir_pool, name)
    data["install"]["kernel"] = f"{GUEST_DIR}/no-such-vmlinuz"
    job = create.create_vm(create.CreateRequest.parse(data), actor=Actor(admin_user))
    assert quotas.usage(project).vms == before.vms + 1  # held while queued

    vm_create_task(job.pk)

    job.refresh_from_db()
    assert job.state == "failed"
    assert "allocating" in job.log and "removed" in job.log
    assert f"volume {dir_pool.name}/{name}-disk0.qcow2" in job.log
    assert volumes_in(dir_pool.name) == set()
    assert name not in domain_names()
    assert not VirtualMachine.objects.filter(name=name).exists()
    assert quotas.usage(project) == before


def test_a_worker_that_died_mid_create_is_cleaned_up_when_it_starts_again(
    admin_user, local_host, dir_pool, project, created
):
    from panel import hypervisor
    from panel.hypervisor import storage as hv_storage

    local_host.facts = {"cpus": 2, "memory_total_bytes": 8 * 1024**3}
    local_host.save()
    name = "ptc-abandoned"
    created.append(name)
    job = create.create_vm(
        create.CreateRequest.parse(body(project, dir_pool, name)), actor=Actor(admin_user)
    )
    # What a worker killed after the disk step leaves: a running job and a volume.
    hv_storage.create_volume(
        "qemu:///system",
        dir_pool.name,
        hypervisor.VolumeSpec(name=f"{name}-disk0.qcow2", capacity=1 << 20),
    )
    job.state = "running"
    job.result["worker"] = "celery@gone"
    job.result["made"]["volumes"] = [{"pool": dir_pool.name, "name": f"{name}-disk0.qcow2"}]
    job.save()

    assert jobs.fail_abandoned("celery@other") == 0
    assert jobs.fail_abandoned("celery@gone") == 1

    job.refresh_from_db()
    assert job.state == "failed"
    assert "worker running this job stopped" in job.message
    assert volumes_in(dir_pool.name) == set()
    assert quotas.usage(project).vms == 0
