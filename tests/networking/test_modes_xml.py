"""The XML of the modes that cannot run here (NAT, routed, open, bridge, macvtap in its four
modes, SR-IOV pool), defined through the panel on libvirt's test:///default driver and read
back from libvirt; and the lease list in libvirt's own shape."""

from __future__ import annotations

import pytest
from lxml import etree

from networking import services
from panel import hypervisor
from panel.actors import Actor
from panel.exceptions import ServiceError
from tests.networking.conftest import TEST_URI


def libvirt_xml(name: str) -> etree._Element:
    return etree.fromstring(hypervisor.network_xml(TEST_URI, name).encode())


@pytest.mark.parametrize(
    ("mode", "extra", "forward"),
    [
        ("nat", {"dev": "eth1"}, {"mode": "nat", "dev": "eth1"}),
        ("routed", {}, {"mode": "route"}),
        ("open", {}, {"mode": "open"}),
    ],
)
def test_it_defines_bridged_ip_modes(fake_host, admin, fake_nets, mode, extra, forward):
    x = fake_nets.octet()
    name, bridge = fake_nets.name(), fake_nets.bridge()
    network = services.create_network(
        fake_host,
        name=name,
        mode=mode,
        bridge=bridge,
        ipv4={
            "address": f"10.213.{x}.1/24",
            "dhcp_start": f"10.213.{x}.10",
            "dhcp_end": f"10.213.{x}.99",
        },
        ipv6={"address": f"fd00:213:{x}::1/64"},
        domain="lab.example",
        actor=Actor(admin),
        **extra,
    )
    root = libvirt_xml(name)
    assert dict(root.find("forward").attrib) == forward
    assert root.find("bridge").get("name") == bridge
    assert root.find("ip").get("address") == f"10.213.{x}.1"
    assert root.find("ip/dhcp/range").get("end") == f"10.213.{x}.99"
    assert root.find("ip[@family='ipv6']").get("prefix") == "64"
    assert (network.mode, network.active) == (mode, True)


@pytest.mark.parametrize("macvtap_mode", ["bridge", "vepa", "private", "passthrough"])
def test_it_defines_macvtap_networks_in_each_mode(fake_host, admin, fake_nets, macvtap_mode):
    name = fake_nets.name()
    network = services.create_network(
        fake_host,
        name=name,
        mode="macvtap",
        dev="eth1",
        macvtap_mode=macvtap_mode,
        actor=Actor(admin),
    )
    root = libvirt_xml(name)
    assert root.find("forward").get("mode") == macvtap_mode
    assert root.find("forward/interface").get("dev") == "eth1"
    assert root.find("bridge") is None and root.find("ip") is None
    assert (network.mode, network.forward_mode, network.dev) == ("macvtap", macvtap_mode, "eth1")


def test_it_defines_an_sriov_pool_from_a_physical_function(fake_host, admin, fake_nets):
    name = fake_nets.name()
    network = services.create_network(
        fake_host, name=name, mode="hostdev", dev="eth1", actor=Actor(admin)
    )
    root = libvirt_xml(name)
    assert root.find("forward").attrib == {"mode": "hostdev", "managed": "yes"}
    assert root.find("forward/pf").get("dev") == "eth1"
    assert (network.mode, network.dev) == ("hostdev", "eth1")


def test_it_defines_a_network_on_an_existing_host_bridge(fake_nets):
    # The service only accepts a bridge the host has; the test driver has none, so this
    # checks the XML at the hypervisor layer.
    spec = hypervisor.NetworkSpec(name=fake_nets.name(), mode="bridge", bridge="br0")
    info = hypervisor.define_network(TEST_URI, spec, start=False)
    root = libvirt_xml(spec.name)
    assert root.find("forward").get("mode") == "bridge"
    assert root.find("bridge").get("name") == "br0"
    assert (info.mode, info.bridge) == ("bridge", "br0")


def test_it_needs_the_device_of_device_modes(fake_host, admin, fake_nets):
    for mode, text in (("macvtap", "physical NIC"), ("hostdev", "SR-IOV physical function")):
        with pytest.raises(ServiceError, match=text):
            services.create_network(fake_host, name=fake_nets.name(), mode=mode, actor=Actor(admin))
    with pytest.raises(ServiceError, match="has no interface named eth9"):
        services.create_network(
            fake_host, name=fake_nets.name(), mode="macvtap", dev="eth9", actor=Actor(admin)
        )
    with pytest.raises(ServiceError, match="NAT network needs an IPv4 address"):
        services.create_network(fake_host, name=fake_nets.name(), mode="nat", actor=Actor(admin))
    assert not set(fake_nets.names) & {n.name for n in hypervisor.list_networks(TEST_URI)}


def test_it_reads_leases_in_libvirts_shape():
    # What virNetworkGetDHCPLeases returns (virsh net-dhcp-leases prints the same fields).
    raw = [
        {
            "iface": "virbr1",
            "expirytime": 1795000000,
            "type": 0,
            "mac": "52:54:00:aa:bb:cc",
            "iaid": None,
            "ipaddr": "10.213.5.120",
            "prefix": 24,
            "hostname": "web1",
            "clientid": "01:52:54:00:aa:bb:cc",
        },
        {
            "iface": "virbr1",
            "expirytime": 1795000100,
            "type": 1,
            "mac": "52:54:00:aa:bb:cc",
            "iaid": "1",
            "ipaddr": "fd00:213:5::50",
            "prefix": 64,
            "hostname": None,
            "clientid": None,
        },
    ]
    leases = hypervisor.parse_leases(raw)
    assert [(lease.family, lease.ip, lease.prefix, lease.hostname) for lease in leases] == [
        ("ipv4", "10.213.5.120", 24, "web1"),
        ("ipv6", "fd00:213:5::50", 64, ""),
    ]
    assert leases[0].expiry == 1795000000 and leases[0].client_id == "01:52:54:00:aa:bb:cc"
