"""Migration between hosts that are machines of their own on a network (each in its
network namespace, tests/netns_hosts.py), added through the API with their pinned SSH
keys and migrated through the API by the running panel: live there and back with the
disk on shared storage the admin declared so, live with the storage copied, offline,
and between this machine (host A) and one of them. The guest keeps running: a mark
written in its RAM file system before is read back on the target after."""

from __future__ import annotations

import secrets
import shutil
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from panel import hypervisor
from panel.models import Host, Job
from storage.models import StoragePool
from tests.conftest import LOCAL_URI, guest_spec
from tests.migration.conftest import console_says, virsh
from tests.migration.test_live import in_guest
from tests.remote.test_ssh_hosts import api, wait_job
from vms.models import VirtualMachine
from vms.services import sync_domain

pytestmark = [pytest.mark.libvirt, pytest.mark.stack, pytest.mark.timeout(300)]

SHARED = Path("/var/lib/panel-shared")


@pytest.fixture
def admin(transactional_db, django_user_model):
    return django_user_model.objects.create_superuser("root", "", "root-pass-3k")


@dataclass
class Bed:
    """Hosts b and c (and A, this machine) as the panel has them, with the URIs of their
    libvirtds' own sockets for the test to look at them directly."""

    stack: object
    admin: object
    b: Host
    c: Host
    b_socket: str
    c_socket: str
    shared_dir: Path
    guest_files: object
    made: list[tuple[str, str]]

    def add_a(self, migration_address: str) -> Host:
        status, body = api(
            self.stack,
            self.admin,
            "POST",
            "hosts/",
            {"name": "a", "uri": LOCAL_URI, "migration_address": migration_address},
        )
        assert status == 201, body
        for job in Job.objects.filter(host_id=body["id"]):
            wait_job(job.pk)
        return Host.objects.get(pk=body["id"])

    def guest(self, host: Host, *, disk: str = "", running: bool = True):
        """The tiny guest defined on host (with a disk at that path), as a VM row."""
        spec = guest_spec(
            self.guest_files,
            disks=(hypervisor.DiskSpec(path=disk, target="vdb", format="qcow2"),) if disk else (),
        )
        info = hypervisor.define_domain(host.uri, spec)
        self.made.append((info.uuid, info.name))
        if running:
            info = hypervisor.start_domain(host.uri, info.uuid)
            console_says(host.uri, info.uuid, b"echo up-$((6*7))", b"up-42", boot=True)
        return sync_domain(host, info)

    def migrate(self, vm: VirtualMachine, target: Host, **options) -> tuple[int, dict]:
        return api(
            self.stack,
            self.admin,
            "POST",
            f"vms/{vm.pk}/migrate/",
            {"target_host": target.pk, **options},
        )


def add_host(stack, admin, name: str, netns_host) -> Host:
    status, body = api(
        stack,
        admin,
        "POST",
        "hosts/",
        {
            "name": name,
            "uri": netns_host.uri,
            "ssh_host_key_fingerprint": netns_host.host_key_fingerprint,
            "migration_address": netns_host.address,
        },
    )
    assert status == 201, body
    for job in Job.objects.filter(host_id=body["id"]):
        wait_job(job.pk)  # its first refresh: its pools become rows
    return Host.objects.get(pk=body["id"])


@pytest.fixture
def bed(stack, admin, netns_host_b, netns_host_c, panel_test_guest) -> Iterator[Bed]:
    # One directory of the shared storage for this test, a dir pool at that same path
    # on b and on c.
    name = f"paneltest-shared-{uuidlib.uuid4().hex[:8]}"
    shared_dir = SHARED / name
    shared_dir.mkdir(mode=0o755)
    for host in (netns_host_b, netns_host_c):
        virsh(host.socket_uri, "pool-create-as", name, "dir", "--target", str(shared_dir))
    made: list[tuple[str, str]] = []
    b = add_host(stack, admin, "b", netns_host_b)
    c = add_host(stack, admin, "c", netns_host_c)
    yield Bed(
        stack,
        admin,
        b,
        c,
        netns_host_b.socket_uri,
        netns_host_c.socket_uri,
        shared_dir,
        panel_test_guest,
        made,
    )
    for socket in (netns_host_b.socket_uri, netns_host_c.socket_uri, LOCAL_URI):
        for uuid, _name in made:
            virsh(socket, "destroy", uuid, check=False)
            virsh(socket, "undefine", uuid, "--nvram", check=False)
    # Hosts b and c of this run are this module's alone: their test pools go too.
    for socket in (netns_host_b.socket_uri, netns_host_c.socket_uri):
        for pool in virsh(socket, "pool-list", "--name", check=False).split():
            if pool.startswith("paneltest-"):
                virsh(socket, "pool-destroy", pool, check=False)
                virsh(socket, "pool-undefine", pool, check=False)
    shutil.rmtree(shared_dir, ignore_errors=True)


def shared_pool(bed: Bed, host: Host) -> StoragePool:
    return StoragePool.objects.get(host=host, target_path=str(bed.shared_dir))


def where(bed: Bed, vm: VirtualMachine) -> tuple[str, str]:
    return hypervisor.domain_location(bed.b.uri, bed.c.uri, str(vm.pk))


def mark(uri: str, vm: VirtualMachine) -> str:
    """A mark written in the guest's RAM file system: only the same running guest has it."""
    token = secrets.token_hex(8)
    assert in_guest(uri, str(vm.pk), f"echo {token} > /tmp/marker") == []
    return token


def migrate_and_watch_speed(bed: Bed, vm, target: Host, source_socket: str, **options):
    """Migrate through the API; the job, and the speed limits libvirt reported meanwhile."""
    status, body = bed.migrate(vm, target, **options)
    assert status == 202, body
    speeds = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = Job.objects.get(pk=body["job"])
        if job.is_finished:
            return job, speeds
        out = virsh(source_socket, "migrate-getspeed", str(vm.pk), check=False).strip()
        if out.isdigit():
            speeds.add(int(out))
        time.sleep(0.2)
    raise AssertionError(f"job #{body['job']} did not finish: {job.message}")


def shared_disk(bed: Bed) -> Path:
    disk = bed.shared_dir / "data.qcow2"
    virsh(bed.b_socket, "vol-create-as", bed.shared_dir.name, disk.name, "16M", "--format", "qcow2")
    return disk


def declare_shared(bed: Bed) -> None:
    """The admin says the shared directory's pool is one storage, on b and on c."""
    for host in (bed.b, bed.c):
        status, body = api(
            bed.stack,
            bed.admin,
            "PATCH",
            f"pools/{shared_pool(bed, host).pk}/",
            {"shared_storage": True},
        )
        assert status == 200 and body["shared_storage"] is True, body


def test_a_running_vm_on_shared_storage_moves_to_c_and_back_within_its_bandwidth(bed):
    disk = shared_disk(bed)
    vm = bed.guest(bed.b, disk=str(disk))
    token = mark(bed.b.uri, vm)

    # libvirt cannot tell this directory is one storage: until the admin says so on both
    # hosts, the panel refuses and says what to do, and nothing moves.
    status, body = bed.migrate(vm, bed.c)
    assert status == 409, body
    assert "declare its pool shared storage on both hosts" in body["detail"], body
    declare_shared(bed)

    job, speeds = migrate_and_watch_speed(bed, vm, bed.c, bed.b_socket, bandwidth_mib=2)
    assert job.state == "succeeded", job.log
    assert f"to tcp://{bed.c.migration_address}\n" in job.log and "2 MiB/s" in job.log
    assert 2 in speeds, speeds  # what libvirt applied, read back while it ran
    assert where(bed, vm) == ("absent", "running")
    assert VirtualMachine.objects.get(pk=vm.pk).host == bed.c
    assert in_guest(bed.c.uri, str(vm.pk), "cat /tmp/marker") == [token]
    assert in_guest(bed.c.uri, str(vm.pk), "ls /sys/block") != []

    # Back over TLS: QEMU's own, with the hosts' certificates (scripts/netns-host.sh).
    status, body = bed.migrate(vm, bed.b, tls=True)
    assert status == 202, body
    job = wait_job(body["job"], timeout=120)
    assert job.state == "succeeded", job.log
    assert f", over TLS) to tcp://{bed.b.migration_address}\n" in job.log
    assert where(bed, vm) == ("running", "absent")
    assert VirtualMachine.objects.get(pk=vm.pk).host == bed.b
    assert in_guest(bed.b.uri, str(vm.pk), "cat /tmp/marker") == [token]
    assert disk.exists()  # shared: never copied, never removed


def test_a_running_vm_moves_with_its_storage_copied_and_a_shut_off_one_offline(bed):
    pool = f"paneltest-local-{uuidlib.uuid4().hex[:8]}"
    target_pool = f"paneltest-target-{uuidlib.uuid4().hex[:8]}"
    inside = f"/var/lib/libvirt/images/{pool}"
    virsh(bed.b_socket, "pool-create-as", pool, "dir", "--target", inside, "--build")
    virsh(bed.b_socket, "vol-create-as", pool, "data.qcow2", "16M", "--format", "qcow2")
    target_dir = f"/var/lib/libvirt/images/{target_pool}"
    virsh(bed.c_socket, "pool-create-as", target_pool, "dir", "--target", target_dir, "--build")
    status, body = api(bed.stack, bed.admin, "POST", f"hosts/{bed.c.pk}/refresh/")
    wait_job(body["job"])
    vm = bed.guest(bed.b, disk=f"{inside}/data.qcow2")
    token = mark(bed.b.uri, vm)
    pool_row = StoragePool.objects.get(host=bed.c, name=target_pool)

    status, body = bed.migrate(vm, bed.c, copy_storage="all", target_pool=pool_row.pk)
    assert status == 202, body
    job = wait_job(body["job"], timeout=120)
    assert job.state == "succeeded", job.log
    assert f"{inside}/data.qcow2 -> {target_dir}/data.qcow2 on c" in job.log
    assert where(bed, vm) == ("absent", "running")
    assert in_guest(bed.c.uri, str(vm.pk), "cat /tmp/marker") == [token]
    assert "data.qcow2" in virsh(bed.c_socket, "vol-list", target_pool)

    # A shut-off VM: its definition moves, it is no longer on b.
    off = bed.guest(bed.b, running=False)
    status, body = bed.migrate(off, bed.c, live=False)
    assert status == 202, body
    job = wait_job(body["job"], timeout=60)
    assert job.state == "succeeded", job.log
    assert where(bed, off) == ("absent", "shutoff")
    moved = VirtualMachine.objects.get(pk=off.pk)
    assert (moved.host, moved.state) == (bed.c, "shutoff")


def test_a_running_vm_moves_from_this_machine_to_b_and_back(bed, netns_panel_address):
    a = bed.add_a(netns_panel_address)
    assert a.migration_address == netns_panel_address
    info = hypervisor.start_domain(
        LOCAL_URI, hypervisor.define_domain(LOCAL_URI, guest_spec(bed.guest_files)).uuid
    )
    bed.made.append((info.uuid, info.name))
    console_says(LOCAL_URI, info.uuid, b"echo up-$((6*7))", b"up-42", boot=True)
    vm = sync_domain(a, info)
    token = mark(LOCAL_URI, vm)

    status, body = bed.migrate(vm, bed.b)
    assert status == 202, body
    job = wait_job(body["job"], timeout=120)
    assert job.state == "succeeded", job.log
    assert f"to tcp://{bed.b.migration_address}\n" in job.log
    assert hypervisor.domain_location(LOCAL_URI, bed.b.uri, info.uuid) == ("absent", "running")
    assert in_guest(bed.b.uri, info.uuid, "cat /tmp/marker") == [token]

    # Over TLS it cannot come back: this machine has no certificates for QEMU. The job
    # says so, and the guest keeps running on b.
    status, body = bed.migrate(vm, a, tls=True)
    assert status == 202, body
    job = wait_job(body["job"], timeout=120)
    assert job.state == "failed" and "ca-cert.pem" in job.message, (job.message, job.log)
    assert hypervisor.domain_location(LOCAL_URI, bed.b.uri, info.uuid) == ("absent", "running")

    # Back: b's QEMU sends to this machine's address on the hosts' network.
    status, body = bed.migrate(vm, a)
    assert status == 202, body
    job = wait_job(body["job"], timeout=120)
    assert job.state == "succeeded", job.log
    assert f"to tcp://{netns_panel_address}\n" in job.log
    assert hypervisor.domain_location(LOCAL_URI, bed.b.uri, info.uuid) == ("running", "absent")
    assert in_guest(LOCAL_URI, info.uuid, "cat /tmp/marker") == [token]
    assert VirtualMachine.objects.get(pk=vm.pk).host == a


def test_a_drain_of_b_moves_its_running_vm_to_c_on_the_shared_storage(bed):
    declare_shared(bed)
    vm = bed.guest(bed.b, disk=str(shared_disk(bed)))
    token = mark(bed.b.uri, vm)

    status, plan = api(bed.stack, bed.admin, "GET", f"hosts/{bed.b.pk}/drain-plan/")
    assert status == 200, plan
    assert [(s["vm_name"], s["target_name"], s["how"]) for s in plan] == [
        (vm.name, "c", "live, shared storage")
    ], plan
    status, body = api(bed.stack, bed.admin, "POST", f"hosts/{bed.b.pk}/drain/")
    assert status == 202, body
    job = wait_job(body["job"], timeout=180)
    assert job.state == "succeeded", job.log
    assert job.message == "1 of 1 VMs moved; 0 still run on b.", job.log
    assert where(bed, vm) == ("absent", "running")
    assert VirtualMachine.objects.get(pk=vm.pk).host == bed.c
    assert in_guest(bed.c.uri, str(vm.pk), "cat /tmp/marker") == [token]
