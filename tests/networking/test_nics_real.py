"""NICs on the tiny guest on the real libvirtd: plugged in live the guest sees a new
interface on its console; the panel shows its vnet device; unplugged it goes away."""

from __future__ import annotations

import time
import uuid as uuidlib

import pytest
from lxml import etree
from lxml import html as lxml_html

from networking import services
from panel import hypervisor
from panel.actors import Actor
from panel.models import AuditEvent, Job
from tests.conftest import LOCAL_URI, wait_for_console_prompt
from tests.networking.conftest import isolated, virsh
from tests.vms.conftest import texts
from vms.models import VirtualMachine

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(180)]


def guest_run(stream: hypervisor.ConsoleStream, command: str, timeout: float = 10.0) -> str:
    """Run a shell command on the guest's serial console and return what it printed."""
    marker = uuidlib.uuid4().hex[:6]
    start = len(stream.output())
    # Quoted apart, the echoed command line never contains the marker the output ends with.
    stream.send(f'{command}; echo {marker}""-end\n'.encode())
    out = stream.read_until(f"{marker}-end\r\n".encode(), timeout, start)[start:]
    return out.decode(errors="replace")


def guest_interfaces(stream: hypervisor.ConsoleStream) -> dict[str, str]:
    """{interface: MAC} as the guest's kernel lists them in /sys/class/net."""
    out = guest_run(stream, "for i in /sys/class/net/*; do echo ${i##*/}=$(cat $i/address); done")
    return dict(
        line.strip().split("=", 1)
        for line in out.splitlines()
        if "=" in line and "$" not in line and "for i" not in line
    )


def wait_guest(stream, predicate, timeout: float = 30.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        seen = guest_interfaces(stream)
        if predicate(seen) or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)


def test_it_attaches_a_nic_live_that_the_guest_sees_and_detaches_it(
    local_host, admin, nets, make_vm, api_for, client_for
):
    network = services.create_network(local_host, **isolated(nets), actor=Actor(admin))
    vm = make_vm(running=True)
    stream = hypervisor.open_console(LOCAL_URI, str(vm.pk))
    try:
        stream.send(b"\r")
        wait_for_console_prompt(stream, 30)
        assert set(guest_interfaces(stream)) == {"lo"}

        response = api_for("member").post(
            f"/api/v1/vms/{vm.pk}/nics/", {"network": network.pk}, format="json"
        )
        assert response.status_code == 201, response.content
        nic = response.json()
        mac = nic["mac"]
        assert mac.startswith("52:54:00:")
        assert (nic["source"], nic["model"], nic["network_id"]) == (
            network.name,
            "virtio",
            network.pk,
        )
        assert nic["target"].startswith("vnet")

        # libvirt's view: the tap device on the network's bridge, live and in the definition.
        iflist = virsh("domiflist", str(vm.pk))
        assert mac in iflist and nic["target"] in iflist and network.name in iflist
        assert mac in virsh("dumpxml", "--inactive", str(vm.pk))

        # The guest's view: a new interface with that MAC.
        seen = wait_guest(stream, lambda s: mac in s.values())
        assert seen == {"lo": "00:00:00:00:00:00", "eth0": mac}

        # The panel's view: the VM page lists the NIC with its vnet device; the
        # network page lists the VM.
        page = client_for("member").get(f"/vms/{vm.pk}/")
        row = texts(page, f"//tr[@data-nic='{mac}']")
        assert row and nic["target"] in row[0] and network.name in row[0] and "virtio" in row[0]
        net_page = client_for("admin").get(f"/networks/{network.pk}/")
        assert texts(net_page, "//table[@id='network-vms']/tbody/tr")[0].startswith(vm.name)

        response = api_for("member").delete(f"/api/v1/vms/{vm.pk}/nics/{mac}/")
        assert response.status_code == 204, response.content
        seen = wait_guest(stream, lambda s: "eth0" not in s)
        assert set(seen) == {"lo"}
        assert mac not in virsh("domiflist", str(vm.pk))
        assert mac not in virsh("dumpxml", "--inactive", str(vm.pk))
    finally:
        stream.close()
    actions = AuditEvent.objects.filter(target=vm.name, user=vm.owner).values_list(
        "action", "result"
    )
    assert ("vm.nic_attach", "success") in actions and ("vm.nic_detach", "success") in actions


def test_it_plugs_a_persistent_nic_with_model_mac_link_and_bandwidth(
    local_host, admin, nets, make_vm, api_for, client_for
):
    network = services.create_network(local_host, **isolated(nets), actor=Actor(admin))
    vm = make_vm()
    response = api_for("member").post(
        f"/api/v1/vms/{vm.pk}/nics/",
        {
            "network": network.pk,
            "model": "e1000e",
            "mac": "52-54-00-0A-0B-0C",
            "link_up": False,
            "inbound_kib": 1000,
            "outbound_kib": 500,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["mac"] == "52:54:00:0a:0b:0c"

    root = etree.fromstring(virsh("dumpxml", "--inactive", str(vm.pk)).encode())
    (iface,) = root.xpath("devices/interface[mac/@address='52:54:00:0a:0b:0c']")
    assert iface.find("source").get("network") == network.name
    assert iface.find("model").get("type") == "e1000e"
    assert iface.find("link").get("state") == "down"
    assert iface.find("bandwidth/inbound").get("average") == "1000"
    assert iface.find("bandwidth/outbound").get("average") == "500"

    row = texts(client_for("member").get(f"/vms/{vm.pk}/"), "//tr[@data-nic='52:54:00:0a:0b:0c']")
    assert "down" in row[0] and "in 1000 KiB/s out 500 KiB/s" in row[0]

    response = api_for("member").patch(
        f"/api/v1/vms/{vm.pk}/nics/52:54:00:0a:0b:0c/", {"link_up": True}, format="json"
    )
    assert response.status_code == 200 and response.json()["link_up"] is True
    assert "state='up'" in virsh("dumpxml", "--inactive", str(vm.pk))

    # A second NIC may not reuse the MAC; a live plug needs a running VM.
    again = api_for("member").post(
        f"/api/v1/vms/{vm.pk}/nics/",
        {"network": network.pk, "mac": "52:54:00:0a:0b:0c"},
        format="json",
    )
    assert again.status_code == 400 and "already has a NIC" in again.json()["mac"][0]
    live = api_for("member").post(
        f"/api/v1/vms/{vm.pk}/nics/", {"network": network.pk, "live": True}, format="json"
    )
    assert live.status_code == 409 and "needs it running" in live.json()["detail"]
    assert virsh("dumpxml", "--inactive", str(vm.pk)).count("<interface") == 1

    # The network cannot go while a VM's definition still points at it.
    refused = api_for("admin").delete(f"/api/v1/networks/{network.pk}/")
    assert refused.status_code == 409 and vm.name in refused.json()["detail"]
    assert network.name in virsh("net-list", "--all", "--name")

    gone = api_for("member").delete(
        f"/api/v1/vms/{vm.pk}/nics/", {"mac": "52:54:00:0A:0B:0C"}, format="json"
    )
    assert gone.status_code == 204
    assert "<interface" not in virsh("dumpxml", "--inactive", str(vm.pk))
    assert api_for("admin").delete(f"/api/v1/networks/{network.pk}/").status_code == 204
    assert network.name not in virsh("net-list", "--all", "--name")


def test_it_attaches_and_detaches_from_the_vm_pages_form(
    local_host, admin, nets, make_vm, client_for
):
    network = services.create_network(local_host, **isolated(nets), actor=Actor(admin))
    vm = make_vm()
    client = client_for("member")
    # What the page's form sends: each checkbox after a hidden 0; live is disabled (shut off).
    response = client.post(
        f"/vms/{vm.pk}/nics/attach/",
        {
            "network": network.pk,
            "model": "rtl8139",
            "mac": "",
            "link_up": ["0", "1"],
            "live": ["0"],
            "persistent": ["0", "1"],
        },
        follow=True,
    )
    alerts = texts(response, "//div[@role='alert']")
    assert any("attached to" in a for a in alerts), alerts
    (mac,) = lxml_html.fromstring(response.content).xpath("//div[@id='vm-nics']//tr/@data-nic")
    cells = texts(response, f"//tr[@data-nic='{mac}']/td")
    assert cells[1:3] == ["rtl8139", network.name] and cells[4] == "up"
    assert "<model type='rtl8139'/>" in virsh("dumpxml", "--inactive", str(vm.pk))

    response = client.post(f"/vms/{vm.pk}/nics/detach/", {"mac": mac}, follow=True)
    assert any("detached" in a for a in texts(response, "//div[@role='alert']")), texts(
        response, "//div[@role='alert']"
    )
    assert "<interface" not in virsh("dumpxml", "--inactive", str(vm.pk))
    refused = client.post(f"/vms/{vm.pk}/nics/detach/", {"mac": mac}, follow=True)
    assert any("has no NIC with MAC" in a for a in texts(refused, "//div[@role='alert']"))


def test_nic_changes_wait_for_the_vms_job_and_stop_at_a_missing_vm_while_a_vnc_password_does_not_wait(
    local_host, admin, nets, make_vm, api_for, client_for
):
    network = services.create_network(local_host, **isolated(nets), actor=Actor(admin))
    vm = make_vm(vnc=True)
    api = api_for("member")
    plugged = api.post(f"/api/v1/vms/{vm.pk}/nics/", {"network": network.pk}, format="json")
    assert plugged.status_code == 201, plugged.content
    mac = plugged.json()["mac"]
    job_id = api.post(f"/api/v1/vms/{vm.pk}/shutdown/", {}, format="json").data["job"]

    link = api.patch(f"/api/v1/vms/{vm.pk}/nics/{mac}/", {"link_up": False}, format="json")
    assert link.status_code == 409 and f"job #{job_id}" in link.json()["detail"]
    assert "state='down'" not in virsh("dumpxml", "--inactive", str(vm.pk))
    # Setting the VNC password is the one quick change a running job does not hold up.
    password = client_for("member").post(
        f"/vms/{vm.pk}/vnc-password/", {"password": "s3cret12"}, follow=True
    )
    assert "VNC password set." in texts(password, "//div[@role='alert']"), texts(
        password, "//div[@role='alert']"
    )
    assert AuditEvent.objects.filter(action="vm.vnc_password", result="success").exists()

    Job.objects.filter(pk=job_id).update(state="cancelled")
    virsh("undefine", str(vm.pk))
    VirtualMachine.objects.filter(pk=vm.pk).update(state="missing")
    gone = api.delete(f"/api/v1/vms/{vm.pk}/nics/", {"mac": mac}, format="json")
    assert gone.status_code == 409 and "missing from its host" in gone.json()["detail"]
    assert not AuditEvent.objects.filter(action="vm.nic_detach").exists()


def test_a_nic_on_a_stopped_network_is_flagged_and_the_vm_start_says_which_network(
    local_host, admin, nets, make_vm, api_for, client_for
):
    network = services.create_network(local_host, **isolated(nets), actor=Actor(admin))
    services.network_action(network, "stop", actor=Actor(admin))
    vm = make_vm()

    attached = client_for("member").post(
        f"/vms/{vm.pk}/nics/attach/",
        {"network": network.pk, "model": "virtio", "persistent": ["0", "1"]},
        follow=True,
    )
    said = texts(attached, "//div[@role='alert']")
    assert any("attached to" in a for a in said), said
    assert any(f"Network '{network.name}' is not running" in a for a in said), said

    refused = api_for("member").post(f"/api/v1/vms/{vm.pk}/start/", {}, format="json")
    assert refused.status_code == 409, refused.content
    assert f"NIC on network '{network.name}', which is not running" in refused.json()["detail"]
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state == "shutoff"

    services.network_action(network, "start", actor=Actor(admin))
    started = api_for("member").post(f"/api/v1/vms/{vm.pk}/start/", {}, format="json")
    assert started.status_code == 200, started.content
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state == "running"
