"""Full and linked clones on the real libvirtd: new name, UUID and MACs; the clones boot."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid as uuidlib
from pathlib import Path

import pytest

from panel import hypervisor, services
from panel.actors import Actor
from panel.models import Host, Job
from tests.conftest import LOCAL_URI, guest_spec, wait_for_console_prompt
from vms import services as vm_services
from vms.models import VirtualMachine
from vms.tasks import vm_clone_task

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(180)]


def virsh(*args: str) -> str:
    return subprocess.run(
        ["virsh", "-c", LOCAL_URI, *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def pool():
    name = f"paneltest-{uuidlib.uuid4().hex[:8]}"
    path = Path("/var/lib/libvirt/images") / name
    path.mkdir(parents=True)
    virsh("pool-create-as", name, "dir", "--target", str(path))
    virsh("vol-create-as", name, "disk.qcow2", "16M", "--format", "qcow2")
    try:
        yield name, path
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            virsh("pool-destroy", name)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def source_vm(db, pool, panel_test_guest, admin_user):
    _, path = pool
    spec = guest_spec(
        panel_test_guest,
        disks=(hypervisor.DiskSpec(path=str(path / "disk.qcow2"), target="vdb"),),
    )
    info = hypervisor.define_domain(LOCAL_URI, spec)
    host = Host.objects.create(name="local", uri=LOCAL_URI, state="up")
    vm = vm_services.sync_domain(host, info)
    vm.project = services.create_project(name="alpha", quota={"vms": 5}, actor=Actor(admin_user))
    vm.save()
    made = [info.uuid]
    try:
        yield vm, made
    finally:
        for uuid in made:
            with contextlib.suppress(hypervisor.HypervisorError):
                hypervisor.undefine_domain(LOCAL_URI, uuid)


@pytest.mark.parametrize("linked", [False, True], ids=["full", "linked"])
def test_it_clones_a_vm_that_then_boots(source_vm, pool, admin_user, linked):
    vm, made = source_vm
    name = f"{vm.name}-{'l' if linked else 'f'}"
    job = vm_services.clone_vm(vm, name, linked=linked, actor=Actor(admin_user))
    vm_clone_task(job.pk)
    job = Job.objects.get(pk=job.pk)
    assert job.state == "succeeded", job.message
    clone = VirtualMachine.objects.get(name=name)
    made.append(str(clone.pk))
    assert str(clone.pk) != str(vm.pk)
    assert (clone.project, clone.owner) == (vm.project, admin_user)
    disk = next(d for d in clone.disks if d["target"] == "vdb")
    assert disk["source"] != vm.disks[0]["source"]
    assert Path(disk["source"]).exists()
    vol_xml = virsh("vol-dumpxml", "--pool", pool[0], Path(disk["source"]).name)
    assert ("<backingStore>" in vol_xml) is linked
    # The clone boots to a shell.
    hypervisor.start_domain(LOCAL_URI, str(clone.pk))
    stream = hypervisor.open_console(LOCAL_URI, str(clone.pk))
    try:
        stream.send(b"\r")
        wait_for_console_prompt(stream, 30)
    finally:
        stream.close()
        hypervisor.destroy_domain(LOCAL_URI, str(clone.pk))


def test_it_refuses_to_clone_a_running_vm_or_reuse_a_name(source_vm, admin_user):
    vm, _ = source_vm
    with pytest.raises(services.ServiceError, match="already has a VM named"):
        vm_services.clone_vm(vm, vm.name, linked=False, actor=Actor(admin_user))
    vm = vm_services.perform_action(vm, "start", actor=Actor(admin_user))
    with pytest.raises(services.ConflictError, match="shut it down"):
        vm_services.clone_vm(vm, "copy", linked=False, actor=Actor(admin_user))
    with pytest.raises(services.ServiceError, match="letters, digits"):
        vm_services.clone_vm(vm, "bad name!", linked=False, actor=Actor(admin_user))
    assert not Job.objects.filter(kind="vm.clone").exists()
