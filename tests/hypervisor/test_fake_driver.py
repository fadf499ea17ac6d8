"""The hypervisor package against libvirt's built-in fake host (test:///default)."""

from __future__ import annotations

import pytest
from lxml import etree

from panel import hypervisor
from panel.hypervisor.xml import build_domain

FAKE = "test:///default"
GIB = 1024**3


def test_it_reads_host_facts_from_the_fake_host():
    facts = hypervisor.host_facts(FAKE)
    assert facts.driver.upper() == "TEST"
    assert facts.cpus > 0 and facts.memory_total_bytes > 0
    assert facts.numa_cells, "the fake host has NUMA cells"
    assert facts.is_local


def test_it_reports_the_fake_host_as_simulated():
    report = hypervisor.host_report(FAKE, "/nonexistent")
    assert report.domain_type == "test"
    assert [c.name for c in report.checks] == ["Hypervisor"]


def test_it_reads_the_whole_inventory():
    inventory = hypervisor.read_inventory(FAKE)
    assert [d.name for d in inventory.domains] == ["test"]
    assert inventory.domains[0].state == "running"
    assert [p.name for p in inventory.pools] == ["default-pool"]
    assert [n.name for n in inventory.networks] == ["default"]
    assert inventory.networks[0].mode == "nat"
    assert inventory.networks[0].ipv4["prefix"] == 24


def test_it_defines_starts_and_removes_a_domain():
    spec = hypervisor.DomainSpec(name="fake-vm", domain_type="test", vcpus=2, memory_mib=128)
    info = hypervisor.define_domain(FAKE, spec)
    try:
        assert info.state == "shutoff" and info.persistent
        assert hypervisor.start_domain(FAKE, info.uuid).state == "running"
        with pytest.raises(hypervisor.Conflict):
            hypervisor.start_domain(FAKE, info.uuid)
        hypervisor.destroy_domain(FAKE, info.uuid)
        assert hypervisor.get_domain(FAKE, info.uuid).state == "shutoff"
    finally:
        hypervisor.undefine_domain(FAKE, info.uuid)
    with pytest.raises(hypervisor.NotFound):
        hypervisor.get_domain(FAKE, info.uuid)


def test_it_raises_not_found_for_an_unknown_domain():
    with pytest.raises(hypervisor.NotFound, match="[Dd]omain"):
        hypervisor.get_domain(FAKE, "00000000-0000-0000-0000-000000000001")


@pytest.mark.parametrize("uri", ["http://example", "not a uri", "xen:///system", ""])
def test_it_refuses_a_uri_it_cannot_drive(uri):
    with pytest.raises(hypervisor.InvalidURI):
        hypervisor.host_facts(uri)


def test_it_reports_an_unreachable_host_as_unavailable():
    with pytest.raises(hypervisor.HostUnavailable, match="127.0.0.1"):
        hypervisor.host_facts("qemu+tcp://127.0.0.1:1/system")


def test_it_keeps_names_from_changing_the_domain_xml():
    hostile = "x</name><devices><hostdev/></devices><name>y"
    xml = build_domain(hypervisor.DomainSpec(name=hostile, kernel="/boot/k'\"<>", cmdline="a & b"))
    root = etree.fromstring(xml.encode())
    assert root.findtext("name") == hostile
    assert root.find(".//hostdev") is None
    assert root.findtext("os/kernel") == "/boot/k'\"<>"
    assert root.findtext("os/cmdline") == "a & b"


@pytest.mark.parametrize(
    ("total_gib", "reserved_gib"),
    [(16, 2), (32, 2), (64, 2), (128, 3), (256, 4), (512, 6)],
)
def test_it_reserves_host_memory_by_the_handbook_rule(total_gib, reserved_gib):
    # The handbook: 256 GiB leaves 256 - (2 + 0.5 * 256/64) = 252 GiB for guests.
    assert hypervisor.reserved_memory_bytes(total_gib * GIB) == reserved_gib * GIB


def test_it_reads_what_a_domain_may_grow_to_including_a_raised_definition():
    spec = hypervisor.DomainSpec(name="fake-reach", domain_type="test", vcpus=2, memory_mib=128)
    info = hypervisor.define_domain(FAKE, spec)
    try:
        assert (info.vcpus, info.max_vcpus, info.max_memory_mib) == (2, 2, 128)
        hypervisor.start_domain(FAKE, info.uuid)
        # Raised in the definition while it runs: counted now, though it applies at boot.
        hypervisor.set_vcpus(FAKE, info.uuid, 6, live=False, persistent=True, maximum=True)
        hypervisor.set_memory(
            FAKE, info.uuid, 512 * 1024, live=False, persistent=True, maximum=True
        )
        running = hypervisor.get_domain(FAKE, info.uuid)
        assert (running.vcpus, running.max_vcpus, running.max_memory_mib) == (2, 6, 512)
    finally:
        hypervisor.undefine_domain(FAKE, info.uuid)
