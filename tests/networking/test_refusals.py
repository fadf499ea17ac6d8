"""Bad network input is refused with a message saying what is wrong and what to do,
400 in the API, an audit row, and nothing defined in libvirt."""

from __future__ import annotations

import pytest

from networking import services
from networking.models import Network
from panel.actors import Actor
from panel.models import AuditEvent
from tests.networking.conftest import isolated, network_names, virsh

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(120)]


@pytest.fixture
def existing(local_host, admin, nets) -> Network:
    """An isolated network already on the host, to collide with."""
    return services.create_network(local_host, **isolated(nets), actor=Actor(admin))


def refuse(api, payload: dict, field: str, text: str) -> None:
    before = network_names()
    known = set(Network.objects.values_list("name", flat=True))
    response = api.post("/api/v1/networks/", payload, format="json")
    assert response.status_code == 400, response.content
    messages = response.json()[field]
    assert any(text in m for m in messages), messages
    assert network_names() == before, "libvirt changed"
    assert set(Network.objects.values_list("name", flat=True)) <= known | before
    event = AuditEvent.objects.filter(action="network.create").first()
    assert event.result == "failure" and text in event.detail


def payload(local_host, nets, **changes) -> dict:
    values = isolated(nets)
    values["host"] = local_host.pk
    values.update(changes)
    return values


def test_it_refuses_a_bad_cidr(local_host, nets, api_for):
    api = api_for("admin")
    refuse(
        api,
        payload(local_host, nets, ipv4={"address": "10.213.300.1", "prefix": 24}),
        "ipv4",
        "is not a valid IPv4 address and prefix",
    )
    refuse(
        api,
        payload(local_host, nets, ipv4={"address": "10.213.7.1/33"}),
        "ipv4",
        "is not a valid IPv4 address and prefix",
    )
    refuse(
        api,
        payload(local_host, nets, ipv4={"address": "10.213.7.0/24"}),
        "ipv4",
        "network or broadcast address",
    )
    refuse(
        api,
        payload(local_host, nets, ipv6={"address": "10.213.7.1", "prefix": 64}),
        "ipv6",
        "is not a valid IPv6 address and prefix",
    )
    refuse(
        api,
        payload(local_host, nets, ipv6={"address": "10.213.7.1", "prefix": 24}),
        "ipv6",
        "10.213.7.1 is not an IPv6 address",
    )


def test_it_refuses_a_dhcp_range_outside_the_subnet(local_host, nets, api_for):
    api = api_for("admin")
    ipv4 = {
        "address": "10.213.8.1",
        "prefix": 24,
        "dhcp_start": "10.213.8.100",
        "dhcp_end": "10.213.9.20",
    }
    refuse(
        api,
        payload(local_host, nets, ipv4=ipv4),
        "ipv4",
        "10.213.9.20 is outside the subnet 10.213.8.0/24",
    )
    ipv4 = {
        "address": "10.213.8.1",
        "prefix": 24,
        "dhcp_start": "10.213.8.200",
        "dhcp_end": "10.213.8.100",
    }
    refuse(api, payload(local_host, nets, ipv4=ipv4), "ipv4", "swap them")
    ipv4 = {
        "address": "10.213.8.1",
        "prefix": 24,
        "dhcp_start": "10.213.8.1",
        "dhcp_end": "10.213.8.9",
    }
    refuse(api, payload(local_host, nets, ipv4=ipv4), "ipv4", "contains the network's own address")


def test_it_refuses_a_duplicate_name(local_host, existing, nets, api_for):
    refuse(
        api_for("admin"),
        payload(local_host, nets, name=existing.name),
        "name",
        "already has a network named",
    )


def test_it_refuses_an_overlapping_subnet(local_host, existing, nets, api_for):
    inner = str(existing.ipv4["address"]).rsplit(".", 1)[0] + ".129"
    refuse(
        api_for("admin"),
        payload(local_host, nets, ipv4={"address": f"{inner}/25"}),
        "ipv4",
        f"overlaps {existing.ipv4['address'].rsplit('.', 1)[0]}.0/24 of network '{existing.name}'",
    )
    # libvirt's own default NAT network (defined, never started by the tests) counts too.
    assert "default" in network_names()
    refuse(
        api_for("admin"),
        payload(local_host, nets, ipv4={"address": "192.168.0.1/16"}),
        "ipv4",
        "of network 'default'",
    )


def test_it_refuses_a_subnet_the_host_has_on_its_own_interfaces(local_host, nets, api_for):
    refuse(
        api_for("admin"),
        payload(local_host, nets, ipv4={"address": "127.213.0.1/24"}),
        "ipv4",
        "overlaps 127.0.0.0/8 on local's interface lo",
    )


def test_it_refuses_a_bridge_name_already_in_use(local_host, existing, nets, api_for):
    refuse(
        api_for("admin"),
        payload(local_host, nets, bridge=existing.bridge),
        "bridge",
        f"already in use by network '{existing.name}'",
    )
    refuse(
        api_for("admin"),
        payload(local_host, nets, bridge="lo"),
        "bridge",
        "An interface named lo already exists",
    )
    refuse(
        api_for("admin"),
        payload(local_host, nets, bridge="pt-br-far-too-long"),
        "bridge",
        "1 to 15 letters",
    )


def test_it_refuses_bad_macs_of_static_hosts(local_host, nets, api_for):
    for mac, text in (
        ("52:54:00:zz:00:01", "is not a MAC address"),
        ("01:00:5e:00:00:01", "multicast"),
    ):
        values = payload(local_host, nets)
        subnet = values["ipv4"]["address"].rsplit(".", 1)[0]
        values["dhcp_hosts"] = [{"mac": mac, "ip": f"{subnet}.20"}]
        refuse(api_for("admin"), values, "dhcp_hosts", text)
    values = payload(local_host, nets)
    values["dhcp_hosts"] = [{"mac": "52:54:00:00:00:01", "ip": "10.99.0.20"}]
    refuse(api_for("admin"), values, "dhcp_hosts", "outside the subnet")


def test_it_refuses_addresses_on_modes_that_take_them_from_the_lan(local_host, nets, api_for):
    values = payload(local_host, nets, mode="macvtap", dev="eth0")
    refuse(api_for("admin"), values, "ipv4", "takes its addresses from the LAN")
    values = payload(local_host, nets, mode="bridge", bridge="pt-br-none", ipv4=None)
    refuse(api_for("admin"), values, "bridge", "has no interface named pt-br-none")


def test_it_refuses_bad_nic_input_and_changes_nothing(local_host, existing, make_vm, api_for):
    vm = make_vm()
    before = virsh("dumpxml", "--inactive", str(vm.pk))
    api = api_for("member")
    for body, field, text in (
        ({"network": existing.pk, "mac": "52:54:00:12:34"}, "mac", "is not a MAC address"),
        ({"network": existing.pk, "mac": "03:54:00:12:34:56"}, "mac", "multicast"),
        ({"network": existing.pk, "model": "ne2k"}, "model", "is not a valid choice"),
        ({"network": existing.pk, "inbound_kib": -5}, "inbound_kib", "whole number of KiB/s"),
        ({"network": 999999}, "network", "no such network"),
        ({}, "network", "Choose either a network or a host bridge"),
    ):
        response = api.post(f"/api/v1/vms/{vm.pk}/nics/", body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert any(text in m for m in response.json()[field]), response.json()
    assert virsh("dumpxml", "--inactive", str(vm.pk)) == before
