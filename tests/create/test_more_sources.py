"""The other install sources as libvirt defines them (not started): ISO, PXE on an isolated
network, import of an existing disk; and UEFI firmware, booted for real through OVMF."""

from __future__ import annotations

import contextlib
import json
import time
import uuid as uuidlib
from pathlib import Path

import pytest
from lxml import etree

from networking import services as net_services
from panel import hypervisor
from panel.actors import Actor
from panel.models import Job
from storage import services as storage_services
from tests.storage.conftest import virsh
from vms.models import VirtualMachine
from vms.tasks import vm_create_task, vm_delete_task

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(180)]


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
        dir_pool, name="installer.iso", format="raw", capacity_gib=0.01, actor=Actor(admin_user)
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
        actor=Actor(admin_user),
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
        net_services.delete_network(network, actor=Actor(admin_user))


def test_import_makes_an_existing_volume_the_boot_disk(
    admin_client, admin_user, host_facts, dir_pool, project, created
):
    disk = storage_services.create_volume(
        dir_pool,
        name="existing.qcow2",
        format="qcow2",
        capacity_gib=0.02,
        project=project,
        actor=Actor(admin_user),
    )
    created.append("imp1")
    root = create(admin_client, project, "imp1", {"method": "import", "volume": disk.pk})
    first = root.find("./devices/disk[@device='disk']")
    assert first.find("target").get("dev") == "vda"
    assert first.find("source").get("file") == disk.path


def prompt(stream: hypervisor.ConsoleStream, timeout: float) -> None:
    """Wait for the guest's shell prompt, pressing Enter now and then: the guest may have
    printed its prompt before the console was opened."""
    deadline = time.monotonic() + timeout
    while True:
        mark = len(stream.output())
        stream.send(b"\n")
        try:
            stream.read_until(b"guest# ", min(5.0, max(deadline - time.monotonic(), 0.1)), mark)
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


def test_it_boots_a_uefi_vm_through_ovmf(
    admin_client, host_facts, dir_pool, project, created, panel_test_guest
):
    assert "efi" in hypervisor.firmware_choices("qemu:///system"), (
        "libvirt reports no UEFI firmware on this host: install the ovmf package "
        "(scripts/install.sh does)"
    )
    created.append("efi1")
    root = create(
        admin_client,
        project,
        "efi1",
        {
            "method": "kernel",
            "kernel": panel_test_guest.kernel,
            "initrd": panel_test_guest.initrd,
            "cmdline": "console=ttyS0",
        },
        firmware="uefi",
        memory_mib=256,
        start=True,
    )
    assert root.find("os").get("firmware") == "efi"
    vm = VirtualMachine.objects.get(name="efi1")
    assert (vm.firmware, vm.state) == ("efi", "running")
    # libvirt picked an OVMF build and gave the VM its own copy of the UEFI variables.
    live = etree.fromstring(virsh("dumpxml", str(vm.pk)).encode())
    assert "OVMF" in live.findtext("./os/loader")
    nvram = Path(live.findtext("./os/nvram"))
    assert nvram.is_file()

    # OVMF loaded the kernel (from QEMU's fw_cfg) and the guest came up under EFI: its
    # kernel shows the EFI system table in sysfs, which a BIOS boot never has.
    stream = hypervisor.open_console("qemu:///system", str(vm.pk))
    try:
        prompt(stream, 120)
        mark = len(stream.output())
        stream.send(b"cat /sys/firmware/efi/fw_platform_size; ls /sys/firmware/efi\n")
        out = stream.read_until(b"guest# ", 30, mark)[mark:].decode(errors="replace")
    finally:
        stream.close()
    lines = [line.strip() for line in out.splitlines()]
    assert "64" in lines, out  # 64-bit UEFI
    assert "systab" in out and "runtime" in out, out

    # Deleting the VM through the panel removes its NVRAM file too.
    response = admin_client.delete(f"/api/v1/vms/{vm.pk}/")
    assert response.status_code == 202, response.content
    vm_delete_task(response.json()["job"])
    assert Job.objects.get(pk=response.json()["job"]).state == "succeeded"
    assert not VirtualMachine.objects.filter(pk=vm.pk).exists()
    assert not nvram.exists()
