"""The tiny guest with a qcow2 data disk in a scratch dir pool, and helpers to drive its
snapshots: through the API, jobs run in-process, and the guest's serial console."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import uuid as uuidlib

import pytest

from panel import hypervisor
from panel import services as panel_services
from panel.actors import Actor
from panel.hypervisor import storage as hv_storage
from panel.models import Job
from storage import services as storage_services
from tests.conftest import LOCAL_URI, guest_spec, wait_for_console_prompt
from tests.storage.conftest import (  # noqa: F401  (fixtures)
    IMAGES,
    dir_pool,
    local_host,
    pool_dir,
)
from vms import services as vm_services
from vms.tasks import vm_backup_task, vm_snapshot_task


@pytest.fixture
def project(db, admin_user):
    return panel_services.create_project(name="alpha", actor=Actor(admin_user))


@pytest.fixture
def make_vm(local_host, panel_test_guest, project, dir_pool, admin_user):  # noqa: F811
    """make_vm(start=, disk_format=, disk=, network=): the tiny guest, persistent, with a
    16 MiB data disk (qcow2 by default; disk=False for none) and, given a libvirt network's
    name, a NIC on it; in project alpha; undefined afterwards."""
    made: list[str] = []

    def make(start: bool = True, disk_format: str = "qcow2", disk: bool = True, network: str = ""):
        name = f"paneltest-{uuidlib.uuid4().hex[:8]}"
        disks: tuple[hypervisor.DiskSpec, ...] = ()
        if disk:
            volume = storage_services.create_volume(
                dir_pool,
                name=f"{name}.{disk_format}",
                format=disk_format,
                capacity_gib=16 / 1024,
                project=project,
                actor=Actor(admin_user),
            )
            disks = (hypervisor.DiskSpec(path=volume.path, format=disk_format),)
        nics = (hypervisor.NicSpec(network=network),) if network else ()
        info = hypervisor.define_domain(
            LOCAL_URI, guest_spec(panel_test_guest, name=name, disks=disks, nics=nics)
        )
        made.append(info.uuid)
        if start:
            info = hypervisor.start_domain(LOCAL_URI, info.uuid)
        vm = vm_services.sync_domain(local_host, info)
        vm.project = project
        vm.save()
        return vm

    yield make
    for uuid in made:
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.undefine_domain(LOCAL_URI, uuid)


@pytest.fixture
def backup_pool(local_host, admin_user):  # noqa: F811
    """A second dir pool, where backups go; stopped, undefined and removed afterwards."""
    path = IMAGES / f"paneltest-bk-{uuidlib.uuid4().hex[:8]}"
    pool = storage_services.create_pool(
        local_host,
        {"name": path.name, "type": "dir", "target_path": str(path)},
        actor=Actor(admin_user),
    )
    try:
        yield pool
    finally:
        with contextlib.suppress(hypervisor.HypervisorError):
            hv_storage.delete_pool(LOCAL_URI, pool.name)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def undefine_later():
    """undefine_later(uuid): a domain a test made (a restored VM) is undefined afterwards."""
    made: list[str] = []
    yield made.append
    for uuid in made:
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.undefine_domain(LOCAL_URI, uuid)


def run_backup_job(job_id: int) -> Job:
    """Run a queued backup or restore job in this process; return it finished."""
    vm_backup_task(job_id)
    return Job.objects.get(pk=job_id)


def post(client, url: str, data: dict | None = None):
    return client.post(url, json.dumps(data or {}), content_type="application/json")


def run_job(response) -> Job:
    """Run the job a 202 answer queued, in this process; return it finished."""
    assert response.status_code == 202, response.content
    job_id = response.json()["job"]
    vm_snapshot_task(job_id)
    job = Job.objects.get(pk=job_id)
    assert job.state == "succeeded", (job.message, job.log)
    return job


def snapshots(client, vm) -> list[dict]:
    response = client.get(f"/api/v1/vms/{vm.pk}/snapshots/")
    assert response.status_code == 200, response.content
    return response.json()["results"]


def virsh(*args: str) -> str:
    return subprocess.run(
        ["virsh", "-c", LOCAL_URI, *args], check=True, capture_output=True, text=True
    ).stdout


def open_shell(vm, *, booting: bool = True) -> hypervisor.ConsoleStream:
    """The guest's serial console at its shell prompt: after boot, or (booting=False) a guest
    already up, e.g. one just restored from a memory snapshot, woken with a newline."""
    stream = hypervisor.open_console(LOCAL_URI, str(vm.pk))
    if booting:
        wait_for_console_prompt(stream)
    else:
        stream.send(b"\n")
        stream.read_until(b"guest# ", 30)
    return stream


def shell(stream: hypervisor.ConsoleStream, command: str, timeout: float = 20) -> str:
    """Run command in the guest's shell and return its output (one line).

    The quotes keep the echoed command line from matching: only the answer
    reads "out: ... :end".
    """
    mark = len(stream.output())
    stream.send(f"echo o''ut: $({command}) :e''nd\n".encode())
    out = stream.read_until(b":end\r\n", timeout, start=mark)[mark:].decode(errors="replace")
    line = next(line for line in out.splitlines() if line.startswith("out:"))
    return line.removeprefix("out:").removesuffix(":end").strip()
