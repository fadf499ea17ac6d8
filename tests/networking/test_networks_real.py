"""Isolated networks on the real libvirtd: created with DHCP, static hosts and DNS, started,
stopped and deleted through the panel, checked in libvirt's own XML (virsh)."""

from __future__ import annotations

import pytest
from lxml import etree

from networking import services
from networking.models import Network
from panel.actors import Actor
from panel.exceptions import ConflictError
from panel.models import AuditEvent
from tests.networking.conftest import isolated, network_names, virsh

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(120)]


def test_it_creates_starts_stops_and_deletes_an_isolated_network(local_host, admin, nets):
    x = nets.octet()
    name, bridge = nets.name(), nets.bridge()
    network = services.create_network(
        local_host,
        name=name,
        mode="isolated",
        bridge=bridge,
        ipv4={
            "address": f"10.213.{x}.1/24",
            "dhcp_start": f"10.213.{x}.100",
            "dhcp_end": f"10.213.{x}.150",
        },
        ipv6={"address": f"fd00:213:{x}::1", "prefix": 64},
        dhcp_hosts=[{"mac": "52:54:00:AB:CD:01", "ip": f"10.213.{x}.20", "name": "web1"}],
        dns_hosts=[{"ip": f"10.213.{x}.20", "hostnames": ["web1", "www"]}],
        domain="pt.example",
        mtu=1400,
        actor=Actor(admin),
    )

    # What libvirt holds: no <forward> (isolated), the range, the static host, DNS, MTU.
    root = etree.fromstring(virsh("net-dumpxml", name).encode())
    assert root.find("forward") is None
    assert root.find("bridge").get("name") == bridge
    ip4 = root.find(f"ip[@address='10.213.{x}.1']")
    assert ip4.get("prefix") == "24"
    assert ip4.find("dhcp/range").attrib == {"start": f"10.213.{x}.100", "end": f"10.213.{x}.150"}
    host = ip4.find("dhcp/host")
    assert (host.get("mac"), host.get("ip"), host.get("name")) == (
        "52:54:00:ab:cd:01",
        f"10.213.{x}.20",
        "web1",
    )
    assert root.find("ip[@family='ipv6']").get("address") == f"fd00:213:{x}::1"
    assert [h.text for h in root.iterfind("dns/host/hostname")] == ["web1", "www"]
    assert root.find("mtu").get("size") == "1400"
    assert root.find("domain").get("name") == "pt.example"
    assert "Active:         yes" in virsh("net-info", name)

    # What the panel shows.
    assert network.active and network.mode == "isolated" and network.bridge == bridge
    assert network.ipv4 == {
        "address": f"10.213.{x}.1",
        "prefix": 24,
        "dhcp_start": f"10.213.{x}.100",
        "dhcp_end": f"10.213.{x}.150",
    }
    assert network.dhcp_hosts == [
        {"mac": "52:54:00:ab:cd:01", "ip": f"10.213.{x}.20", "name": "web1"}
    ]
    assert AuditEvent.objects.filter(action="network.create", target=str(network)).exists()

    network = services.network_action(network, "stop", actor=Actor(admin))
    assert not network.active
    assert "Active:         no" in virsh("net-info", name)
    network = services.network_action(network, "start", actor=Actor(admin))
    assert network.active
    network = services.set_network_autostart(network, True, actor=Actor(admin))
    assert "Autostart:      yes" in virsh("net-info", name)

    services.delete_network(network, actor=Actor(admin))
    assert name not in network_names()
    assert not Network.objects.filter(name=name).exists()
    assert list(
        AuditEvent.objects.filter(target__startswith=name).values_list("action", flat=True)
    ) == [
        "network.delete",
        "network.autostart",
        "network.start",
        "network.stop",
        "network.create",
    ]


def test_it_reads_the_empty_lease_list_of_a_fresh_network(local_host, admin, nets, api_for):
    network = services.create_network(local_host, **isolated(nets), actor=Actor(admin))
    response = api_for("admin").get(f"/api/v1/networks/{network.pk}/leases/")
    assert response.status_code == 200
    assert response.json() == []
    network.refresh_from_db()
    assert network.leases_read is not None


def test_it_shows_the_network_page_with_its_settings_and_xml(local_host, admin, nets, client_for):
    args = isolated(nets)
    network = services.create_network(local_host, **args, actor=Actor(admin))
    response = client_for("admin").get(f"/networks/{network.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert args["ipv4"]["dhcp_start"] in body and args["bridge"] in body
    assert "No DHCP leases" in body
    assert f"&lt;name&gt;{network.name}&lt;/name&gt;" in body  # the XML view
    listing = client_for("admin").get("/networks/").content.decode()
    assert network.name in listing


def test_it_deletes_a_network_already_gone_from_its_host_and_drops_one_it_cannot_find(
    local_host, admin, nets
):
    gone = services.create_network(local_host, **isolated(nets), actor=Actor(admin))
    stale = services.create_network(local_host, **isolated(nets), actor=Actor(admin))
    # Both removed behind the panel's back (virsh on the host).
    for name in (gone.name, stale.name):
        virsh("net-destroy", name)
        virsh("net-undefine", name)

    # Deleting what the host no longer has deletes the panel's row, and says so in the log.
    services.delete_network(gone, actor=Actor(admin))
    assert not Network.objects.filter(pk=gone.pk).exists()
    assert AuditEvent.objects.filter(action="network.delete", target=str(gone)).exists()

    # Any other call about it says it is gone and drops it from the list.
    with pytest.raises(ConflictError, match="no longer on .*removed from the list"):
        services.network_action(stale, "start", actor=Actor(admin))
    assert not Network.objects.filter(pk=stale.pk).exists()
