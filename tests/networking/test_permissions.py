"""Who may see and change networks and NICs: admins manage networks; members see and attach
only the networks their project may use, on VMs they may change; outsiders see nothing."""

from __future__ import annotations

import pytest

from networking import services as networking_services
from networking.models import Network
from panel import services as panel_services
from panel.actors import Actor
from panel.choices import ProjectRole
from panel.models import AuditEvent
from tests.networking.conftest import isolated, virsh
from tests.vms.conftest import page_text, texts
from vms.services import nics


@pytest.fixture
def two_networks(local_host, alpha, beta, people, admin):
    """alpha may use only 'pt-a'; beta only 'pt-b'; member is in both projects."""
    a = Network.objects.create(host=local_host, name="pt-a", mode="isolated", active=True)
    b = Network.objects.create(host=local_host, name="pt-b", mode="isolated", active=True)
    alpha.allowed_networks.set([a])
    beta.allowed_networks.set([b])
    panel_services.add_member(
        beta, user=people["member"], role=ProjectRole.MEMBER, actor=Actor(admin)
    )
    return a, b


def names(response) -> set[str]:
    return {n["name"] for n in response.json()["results"]}


def test_it_scopes_the_network_list_to_the_projects_networks(two_networks, api_for, local_host):
    a, b = two_networks
    Network.objects.create(host=local_host, name="pt-c", mode="nat")
    assert names(api_for("admin").get("/api/v1/networks/")) == {"pt-a", "pt-b", "pt-c"}
    assert names(api_for("viewer").get("/api/v1/networks/")) == {"pt-a"}
    assert names(api_for("member").get("/api/v1/networks/")) == {"pt-a", "pt-b"}
    assert api_for("viewer").get(f"/api/v1/networks/{b.pk}/").status_code == 404
    assert api_for("viewer").get(f"/api/v1/networks/{b.pk}/leases/").status_code == 404
    assert api_for("anonymous").get("/api/v1/networks/").status_code == 401


def test_it_lets_only_admins_create_and_act_on_networks(two_networks, api_for, local_host):
    a, _b = two_networks
    member = api_for("member")
    body = {"host": local_host.pk, "name": "pt-x", "mode": "isolated"}
    response = member.post("/api/v1/networks/", body, format="json")
    assert response.status_code == 403 and "Only administrators" in response.json()["detail"]
    for verb in ("start", "stop"):
        assert member.post(f"/api/v1/networks/{a.pk}/{verb}/").status_code == 403
        assert api_for("admin").get(f"/api/v1/networks/{a.pk}/{verb}/").status_code == 405
    assert member.delete(f"/api/v1/networks/{a.pk}/").status_code == 403
    assert api_for("anonymous").post("/api/v1/networks/", body, format="json").status_code == 401
    assert Network.objects.filter(pk=a.pk, active=True).exists()
    assert AuditEvent.objects.filter(result="denied", username="member").count() >= 4


def test_it_shows_the_create_form_to_admins_only(two_networks, client_for):
    assert client_for("member").get("/networks/add/").status_code == 403
    page = client_for("admin").get("/networks/add/")
    assert page.status_code == 200
    text = page_text(page)
    assert "IP masquerading" in text and "virbr0" in text  # the NAT mode's explanation
    for label in ("Routed", "Isolated", "Open", "Bridged", "Direct (macvtap)", "SR-IOV"):
        assert label in text


@pytest.mark.libvirt
def test_it_lets_members_attach_only_networks_their_project_may_use(two_networks, make_vm, api_for):
    a, b = two_networks
    vm = make_vm()
    before = virsh("dumpxml", "--inactive", str(vm.pk))
    url = f"/api/v1/vms/{vm.pk}/nics/"

    response = api_for("member").post(url, {"network": b.pk}, format="json")
    assert response.status_code == 403
    assert "Project alpha may not use network 'pt-b'" in response.json()["detail"]
    assert api_for("member2").post(url, {"network": a.pk}, format="json").status_code == 403
    assert api_for("viewer").post(url, {"network": a.pk}, format="json").status_code == 403
    assert api_for("outsider").post(url, {"network": a.pk}, format="json").status_code == 404
    assert api_for("outsider").get(url).status_code == 404
    assert api_for("anonymous").post(url, {"network": a.pk}, format="json").status_code == 401
    bridge = api_for("member").post(url, {"bridge": "br0"}, format="json")
    assert bridge.status_code == 403 and "host bridge" in bridge.json()["detail"]
    assert api_for("viewer").get(url).status_code == 200
    assert virsh("dumpxml", "--inactive", str(vm.pk)) == before


@pytest.mark.libvirt
def test_it_offers_members_only_their_projects_networks_on_the_vm_page(
    two_networks, make_vm, client_for
):
    vm = make_vm()
    page = client_for("member").get(f"/vms/{vm.pk}/")
    options = page_text(page)
    assert "pt-a (Isolated)" in options and "pt-b" not in options
    assert "Attach NIC" not in page_text(client_for("viewer").get(f"/vms/{vm.pk}/"))


@pytest.mark.libvirt
def test_it_shows_host_interfaces_with_bridges_and_vnet_devices(
    local_host, admin, nets, make_vm, client_for
):
    network = networking_services.create_network(local_host, **isolated(nets), actor=Actor(admin))
    vm = make_vm(running=True)
    vm, mac = nics.attach_nic(vm, network=network, actor=Actor(admin))
    vnet = next(n["target"] for n in nics.vm_nics(vm) if n["mac"] == mac)

    page = client_for("admin").get(f"/networks/hosts/{local_host.pk}/interfaces/")
    assert page.status_code == 200
    columns = ["name", "kind", "state", "mac", "mtu", "addresses", "ports", "master"]
    rows = {
        cells[0]: dict(zip(columns, cells, strict=True))
        for cells in (
            texts(page, f"//tr[@data-interface='{n}']/td") for n in ("lo", network.bridge, vnet)
        )
    }
    assert rows["lo"]["kind"] == "loopback" and "127.0.0.1/8" in rows["lo"]["addresses"]
    bridge = rows[network.bridge]
    assert bridge["kind"] == "bridge" and bridge["ports"] == vnet
    assert f"{network.ipv4['address']}/24" in bridge["addresses"]
    assert rows[vnet]["kind"] == "vnet (VM NIC)" and rows[vnet]["master"] == network.bridge
    assert rows[vnet]["mac"] == "fe" + mac[2:]  # the host side of a tap takes fe:...

    refused = client_for("member").get(f"/networks/hosts/{local_host.pk}/interfaces/")
    assert refused.status_code == 403


@pytest.mark.libvirt
def test_it_shows_a_networks_leases_with_the_vm_holding_each(
    two_networks, make_vm, client_for, api_for
):
    a, _b = two_networks
    vm = make_vm()
    mac = "52:54:00:5e:00:01"
    vm.nics = [{"mac": mac, "type": "network", "source": a.name, "model": "virtio"}]
    vm.save(update_fields=["nics"])
    # Stored as refresh_leases() stores what libvirt returns (see test_modes_xml); the
    # network is inactive, so the page shows them without asking the host again.
    lease = {
        "mac": mac,
        "ip": "10.213.250.77",
        "prefix": 24,
        "family": "ipv4",
        "hostname": "guest1",
        "client_id": "",
        "expiry": 1795000000,
        "iface": "pt-br-a",
    }
    Network.objects.filter(pk=a.pk).update(active=False, leases=[lease])

    page = client_for("member").get(f"/networks/{a.pk}/")
    cells = texts(page, "//table[@id='leases']/tbody/tr/td")
    assert cells[:4] == [mac, "10.213.250.77/24", "guest1", vm.name]
    (item,) = api_for("member").get(f"/api/v1/networks/{a.pk}/leases/").json()
    assert (item["ip"], item["vm"], item["vm_name"]) == ("10.213.250.77", str(vm.pk), vm.name)
    # Someone who cannot see the VM sees the lease, not whose it is.
    vm.project = None
    vm.save(update_fields=["project"])
    (item,) = api_for("member").get(f"/api/v1/networks/{a.pk}/leases/").json()
    assert (item["vm"], item["vm_name"]) == (None, "")
