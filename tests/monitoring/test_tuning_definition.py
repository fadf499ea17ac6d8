"""Tuning that changes a VM's definition, on the real libvirtd: maximum vCPUs (then a live
hotplug up to it), maximum memory, NUMA policy over the host's cells, huge pages backing."""

from __future__ import annotations

import contextlib

import pytest
from lxml import etree

from panel import hypervisor
from panel.models import AuditEvent
from tests.conftest import LOCAL_URI
from tests.vms.conftest import virsh
from vms import services as vm_services

pytestmark = [pytest.mark.libvirt]


def definition(name: str) -> etree._Element:
    return etree.fromstring(virsh("dumpxml", "--inactive", name).encode())


def tune(api, vm, what: str, body: dict):
    return api.post(f"/api/v1/vms/{vm.pk}/tuning/{what}/", body, format="json")


def test_it_raises_the_maximum_vcpus_then_hotplugs_one(api_for, make_vm):
    vm = make_vm(vcpus=1)
    member = api_for("member")
    assert tune(member, vm, "max-vcpus", {"max_vcpus": 2}).status_code == 200
    vcpu = definition(vm.name).find("vcpu")
    assert vcpu.text == "2" and vcpu.get("current") == "1"
    # Started outside the panel: mirrored as the host watcher would.
    vm_services.sync_domain(vm.host, hypervisor.start_domain(LOCAL_URI, str(vm.pk)))
    try:
        response = tune(member, vm, "vcpus", {"vcpus": 2, "persistent": False})
        assert response.status_code == 200, response.content
        assert "current      live           2" in virsh("vcpucount", vm.name)
        too_many = tune(member, vm, "vcpus", {"vcpus": 3, "persistent": False})
        assert too_many.status_code == 400 and "between 1 and 2" in too_many.json()["vcpus"][0]
    finally:
        with contextlib.suppress(hypervisor.HypervisorError):
            hypervisor.destroy_domain(LOCAL_URI, str(vm.pk))


def test_it_sets_the_maximum_memory(api_for, make_vm):
    vm = make_vm(memory_mib=96)
    response = tune(api_for("member"), vm, "max-memory", {"max_memory_mib": 160})
    assert response.status_code == 200, response.content
    assert definition(vm.name).findtext("memory") == str(160 * 1024)
    assert AuditEvent.objects.filter(action="vm.max_memory", result="success").exists()


def test_it_sets_numa_policy_on_cells_the_host_has_only(api_for, make_vm):
    vm = make_vm()
    member = api_for("member")
    response = tune(member, vm, "numatune", {"mode": "strict", "nodeset": "0"})
    assert response.status_code == 200, response.content
    memory = definition(vm.name).find("numatune/memory")
    assert (memory.get("mode"), memory.get("nodeset")) == ("strict", "0")
    missing = tune(member, vm, "numatune", {"mode": "interleave", "nodeset": "0-7"})
    assert missing.status_code == 400
    assert "has no NUMA cell 1, 2, 3, 4, 5, 6, 7" in missing.json()["nodeset"][0]
    garbled = tune(member, vm, "numatune", {"mode": "strict", "nodeset": "first"})
    assert garbled.status_code == 400 and "write it like 0" in garbled.json()["nodeset"][0]
    assert definition(vm.name).find("numatune/memory").get("mode") == "strict"


def test_it_refuses_huge_pages_the_host_lacks_unless_an_admin_overrides(api_for, make_vm):
    free_kib = sum(
        size * free
        for cell in hypervisor.host_tuning(LOCAL_URI).cells
        for size, _total, free in cell.pages
    )
    # More memory than the host's free huge pages hold, whatever it has reserved: the
    # VM is only defined, never started, so its size costs nothing.
    vm = make_vm(memory_mib=free_kib // 1024 + 96)
    refused = tune(api_for("member"), vm, "hugepages", {"enabled": True})
    assert refused.status_code == 400 and "free huge pages" in refused.json()["enabled"][0]
    assert definition(vm.name).find("memoryBacking") is None
    forced = tune(api_for("admin"), vm, "hugepages", {"enabled": True, "force": True})
    assert forced.status_code == 200 and forced.json()["warning"].startswith("Warning:")
    assert definition(vm.name).find("memoryBacking/hugepages") is not None
    off = tune(api_for("member"), vm, "hugepages", {"enabled": False})
    assert off.status_code == 200 and definition(vm.name).find("memoryBacking") is None
