"""The other install sources as libvirt defines them (not started): ISO, PXE on an isolated
network, import of an existing disk, and UEFI firmware."""

from __future__ import annotations

import contextlib
import json
import uuid as uuidlib

import pytest
from lxml import etree

from networking import services as net_services
from panel import hypervisor
from panel.models import Job
from storage import services as storage_services
from tests.storage.conftest import virsh
from vms.models import VirtualMachine
from vms.tasks import vm_create_task

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(180)]


@pytest.fixture
def host_facts(local_host):
    local_host.facts = {
        "cpus": 2,
        "memory_total_bytes": 8 * 1024**3,
        "memory_free_bytes": 4 * 1024**3,
    }
    local_host.save()
    return local_host


def create(client, project, name, install, **extra):
    response = client.post(
        "/api/v1/vms/",
        json.dumps(
            {
                "name": name,
                "project": project.pk,
                "memory_mib": 128,
                "install": install,
                "start": False,
                **extra,
            }
        ),
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    vm_create_task(response.json()["job"])
    job = Job.objects.get(pk=response.json()["job"])
    assert job.state == "succeeded", job.log
    return etree.fromstring(virsh("dumpxml", "--inactive", response.json()["id"]).encode())


def test_an_iso_install_boots_the_cdrom_first(
    admin_client, admin_user, host_facts, dir_pool, project, created
):
    iso = storage_services.create_volume(
        dir_pool, name="installer.iso", format="raw", capacity_gib=0.01, actor=admin_user
    )
    created.append("iso1")
    root = create(
        admin_client,
        project,
        "iso1",
        {"method": "iso", "iso_volume": iso.pk},
        disks=[{"pool": dir_pool.pk, "size_gib": 0.05}],
    )
    assert [b.get("dev") for b in root.iterfind("./os/boot")] == ["cdrom", "hd"]
    cdrom = root.find("./devices/disk[@device='cdrom']")
    assert cdrom.find("source").get("file") == iso.path
    assert cdrom.find("target").get("bus") == "sata"


def test_a_pxe_install_boots_from_an_isolated_network(
    admin_client, admin_user, host_facts, project, created
):
    name = f"pt-pxe-{uuidlib.uuid4().hex[:6]}"
    network = net_services.create_network(
        host_facts,
        name=name,
        mode="isolated",
        ipv4={
            "address": "10.213.77.1",
            "prefix": 24,
            "dhcp_start": "10.213.77.100",
            "dhcp_end": "10.213.77.150",
        },
        actor=admin_user,
    )
    try:
        created.append("pxe1")
        root = create(admin_client, project, "pxe1", {"method": "pxe"}, networks=[network.pk])
        assert [b.get("dev") for b in root.iterfind("./os/boot")] == ["network", "hd"]
        assert root.find("./devices/interface/source").get("network") == name
    finally:
        for vm in VirtualMachine.objects.filter(name="pxe1"):
            with contextlib.suppress(hypervisor.HypervisorError):
                hypervisor.undefine_domain("qemu:///system", str(vm.pk))
            vm.delete()
        net_services.delete_network(network, actor=admin_user)


def test_import_makes_an_existing_volume_the_boot_disk(
    admin_client, admin_user, host_facts, dir_pool, project, created
):
    disk = storage_services.create_volume(
        dir_pool,
        name="existing.qcow2",
        format="qcow2",
        capacity_gib=0.02,
        project=project,
        actor=admin_user,
    )
    created.append("imp1")
    root = create(admin_client, project, "imp1", {"method": "import", "volume": disk.pk})
    first = root.find("./devices/disk[@device='disk']")
    assert first.find("target").get("dev") == "vda"
    assert first.find("source").get("file") == disk.path


def test_uefi_firmware_where_ovmf_is_installed(
    admin_client, host_facts, dir_pool, project, created
):
    if "efi" not in hypervisor.firmware_choices("qemu:///system"):
        pytest.skip("this host's libvirt reports no UEFI firmware (package ovmf)")
    created.append("efi1")
    root = create(
        admin_client,
        project,
        "efi1",
        {"method": "kernel", "kernel": "/var/lib/libvirt/boot/panel-test-guest/vmlinuz"},
        firmware="uefi",
    )
    # libvirt picks the OVMF build (and its NVRAM) when the guest starts.
    assert root.find("os").get("firmware") == "efi"
    assert VirtualMachine.objects.get(name="efi1").firmware == "efi"
