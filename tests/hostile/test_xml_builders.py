"""No name or field can change the structure of the XML the panel hands libvirt.

Each builder is fed values full of XML metacharacters, unicode, control
characters, NUL and huge lengths in one field at a time. The result must have
the same elements and attributes as the XML built from a plain value, with
the value carried exactly; or the builder refuses the value with our own
InvalidValue error, and only for characters XML cannot carry.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from panel.hypervisor import networks, snapshots
from panel.hypervisor import xml as hv_xml
from panel.hypervisor.errors import InvalidValue
from panel.hypervisor.specs import (
    DhcpHost,
    DiskSpec,
    DnsHost,
    DomainSpec,
    IPConfig,
    NetworkSpec,
    NicSpec,
    PoolSpec,
    VolumeSpec,
)

PLAIN = "plain-value"
# What XML 1.0 can carry; anything else must be refused, never escaped into structure.
NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

NASTY = st.one_of(
    st.text(
        alphabet=st.sampled_from(
            list("<>&'\"/=!?[]-;#%\\ \t\n\r\x00\x01\x08\x0b\x1f\x7fé中😀\ufffe")
        ),
        min_size=1,
        max_size=40,
    ),
    st.text(min_size=1, max_size=40),
    st.sampled_from(
        [
            "</name><evil/>",
            "'/><evil a='",
            '"/><evil a="',
            "]]><evil/>",
            "<!ENTITY x SYSTEM 'file:///etc/passwd'>&x;",
            "<?xml-stylesheet href='x'?>",
            "&amp;&lt;&#0;",
            "../../etc/passwd",
            "x" * 1_000_000,
        ]
    ),
)

Build = Callable[[str], str]

BUILDERS: dict[str, Build] = {
    "domain.name": lambda v: hv_xml.build_domain(DomainSpec(name=v)),
    "domain.description": lambda v: hv_xml.build_domain(DomainSpec(name="d", description=v)),
    "domain.kernel": lambda v: hv_xml.build_domain(
        DomainSpec(name="d", kernel=v, initrd="/i", cmdline="c")
    ),
    "domain.initrd": lambda v: hv_xml.build_domain(
        DomainSpec(name="d", kernel="/k", initrd=v, cmdline="c")
    ),
    "domain.cmdline": lambda v: hv_xml.build_domain(
        DomainSpec(name="d", kernel="/k", initrd="/i", cmdline=v)
    ),
    "domain.disk_path": lambda v: hv_xml.build_domain(
        DomainSpec(name="d", disks=(DiskSpec(path="/images/" + v),))
    ),
    "domain.nic_network": lambda v: hv_xml.build_domain(
        DomainSpec(name="d", nics=(NicSpec(network=v, mac="52:54:00:00:00:01"),))
    ),
    "domain.nic_bridge": lambda v: hv_xml.build_domain(
        DomainSpec(name="d", nics=(NicSpec(bridge=v, mac="52:54:00:00:00:01"),))
    ),
    "domain.nic_mac": lambda v: hv_xml.build_domain(DomainSpec(name="d", nics=(NicSpec(mac=v),))),
    "disk.path": lambda v: hv_xml.disk_xml(DiskSpec(path="/images/" + v)),
    "disk.target": lambda v: hv_xml.disk_xml(DiskSpec(path="/images/a", target=v)),
    "pool.name": lambda v: hv_xml.build_pool(PoolSpec(name=v, type="dir", target_path="/p")),
    "pool.target_path": lambda v: hv_xml.build_pool(
        PoolSpec(name="p", type="dir", target_path="/" + v)
    ),
    "pool.source_host": lambda v: hv_xml.build_pool(
        PoolSpec(name="p", type="netfs", target_path="/p", source_host=v, source_path="/e")
    ),
    "pool.source_path": lambda v: hv_xml.build_pool(
        PoolSpec(name="p", type="netfs", target_path="/p", source_host="h", source_path=v)
    ),
    "pool.source_name": lambda v: hv_xml.build_pool(PoolSpec(name="p", type="rbd", source_name=v)),
    "pool.source_device": lambda v: hv_xml.build_pool(
        PoolSpec(name="p", type="fs", target_path="/p", source_devices=("/dev/" + v,))
    ),
    "pool.initiator": lambda v: hv_xml.build_pool(
        PoolSpec(name="p", type="iscsi-direct", source_host="h", source_path="t", initiator=v)
    ),
    "volume.name": lambda v: hv_xml.build_volume(VolumeSpec(name=v, capacity=1)),
    "volume.backing_path": lambda v: hv_xml.build_volume(
        VolumeSpec(name="v", capacity=1, backing_path="/" + v, backing_format="qcow2")
    ),
    "network.name": lambda v: networks.build_network(NetworkSpec(name=v, mode="isolated")),
    "network.bridge": lambda v: networks.build_network(
        NetworkSpec(name="n", mode="isolated", bridge=v)
    ),
    "network.dev": lambda v: networks.build_network(NetworkSpec(name="n", mode="macvtap", dev=v)),
    "network.domain": lambda v: networks.build_network(
        NetworkSpec(name="n", mode="isolated", domain=v)
    ),
    "network.dns_hostname": lambda v: networks.build_network(
        NetworkSpec(name="n", mode="isolated", dns_hosts=(DnsHost(ip="10.0.0.2", hostnames=(v,)),))
    ),
    "network.dhcp_host_name": lambda v: networks.build_network(
        NetworkSpec(
            name="n",
            mode="isolated",
            ips=(
                IPConfig(
                    family="ipv4",
                    address="10.0.0.1",
                    prefix=24,
                    hosts=(DhcpHost(mac="52:54:00:00:00:02", ip="10.0.0.2", name=v),),
                ),
            ),
        )
    ),
    "interface.network": lambda v: networks.build_interface(NicSpec(network=v)),
    "interface.bridge": lambda v: networks.build_interface(NicSpec(bridge=v)),
    "interface.mac": lambda v: networks.build_interface(NicSpec(network="n", mac=v)),
    "snapshot.name": lambda v: snapshots.snapshot_xml(v, "d", "internal", False),
    "snapshot.description": lambda v: snapshots.snapshot_xml("s", v, "external", False),
}


def _shape(xml: str) -> list[tuple[str, tuple[str, ...]]]:
    root = etree.fromstring(xml.encode())
    return [(str(el.tag), tuple(sorted(el.attrib))) for el in root.iter()]


def _values(xml: str) -> list[str]:
    root = etree.fromstring(xml.encode())
    out = []
    for el in root.iter():
        if el.text:
            out.append(el.text)
        out.extend(el.attrib.values())
    return out


@pytest.mark.parametrize("field", sorted(BUILDERS))
@settings(
    max_examples=20,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(value=NASTY)
def test_a_field_never_changes_the_structure(field, value):
    build = BUILDERS[field]
    baseline = build(PLAIN)
    assert any(PLAIN in v for v in _values(baseline)), "the baseline carries the plain value"
    try:
        xml = build(value)
    except InvalidValue as exc:
        assert NOT_XML_CHAR.search(value), f"refused a value XML can carry: {value!r}"
        assert "character" in str(exc)
        return
    assert not NOT_XML_CHAR.search(value), "a value XML cannot carry went through"
    assert _shape(xml) == _shape(baseline)
    assert any(value in v for v in _values(xml)), "the value is carried exactly"
