"""Attack: pass for another machine on a shared network.

A member's VM shares a virtual network with other projects' VMs and the host. Inside it
the member owns the guest: they can give its NIC an address that its DHCP lease did not
give (another VM's, the gateway's, one nobody checks), or another MAC, and answer ARP for
them, to take traffic meant for others. And through the panel they could give their
NIC the MAC of another VM on that network, which the switch then confuses with it.

What the panel does: every NIC a non-admin plugs into a network whose guests share a
bridge (NAT, routed, isolated, open, host bridge) carries libvirt's `clean-traffic`
nwfilter, with the NIC's one address: a static DHCP host's, else the one its DHCP lease
gives (CTRL_IP_LEARNING=dhcp). The host drops every frame from another MAC, another IP or
with forged ARP. A MAC already used on the network is refused (400 on `mac`), under a
claim on the network so two requests cannot both take it.
"""

from __future__ import annotations

import re
import time

import pytest
from lxml import etree

from networking import services as net_services
from panel import hypervisor
from panel.actors import Actor
from tests.conftest import LOCAL_URI, wait_for_console_prompt
from tests.networking.conftest import isolated, nets  # noqa: F401 - fixture
from tests.networking.test_nics_real import guest_run, wait_guest
from tests.vms.conftest import virsh
from vms.services import nics

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(300)]

SPOOFED_MAC = "52:54:00:de:ad:01"


def received(output: str) -> int:
    """How many replies busybox's ping counted."""
    found = re.search(r"(\d+) packets received", output)
    assert found, f"no ping summary in: {output!r}"
    return int(found.group(1))


def ping(stream, iface: str, gateway: str) -> int:
    return received(guest_run(stream, f"ping -c 3 -W 2 -I {iface} {gateway} 2>&1", timeout=30))


def filters(vm_uuid: str) -> list[str]:
    """The nwfilters on the running VM's NICs."""
    root = etree.fromstring(virsh("dumpxml", vm_uuid).encode())
    return [ref.get("filter", "") for ref in root.iterfind("./devices/interface/filterref")]


def test_it_drops_what_a_members_guest_sends_as_another_address_or_mac(
    attacker,
    people,
    local_host,
    nets,  # noqa: F811
    make_vm,
):
    network = net_services.create_network(
        local_host, **isolated(nets), actor=Actor(people["admin"])
    )
    gateway = network.ipv4["address"]
    vm = make_vm(running=True)
    member = attacker("member")

    attached = member.api("POST", f"vms/{vm.pk}/nics/", json={"network": network.pk})
    assert attached.status_code == 201, attached.text
    mac = attached.json()["mac"]

    stream = hypervisor.open_console(LOCAL_URI, str(vm.pk))
    try:
        stream.send(b"\r")
        wait_for_console_prompt(stream, 30)
        seen = wait_guest(stream, lambda s: mac in s.values())
        iface = next(name for name, address in seen.items() if address == mac)
        guest_run(stream, f"ip link set {iface} up")

        # Its own lease: the network answers (the filter learnt the address from DHCP).
        out = guest_run(stream, f"udhcpc -i {iface} -n -q -t 5 2>&1", timeout=60)
        lease = re.search(r"lease of (\S+) obtained", out)
        assert lease, out
        guest_run(stream, f"ip addr add {lease.group(1)}/24 dev {iface}")
        deadline = time.monotonic() + 60
        replies = ping(stream, iface, gateway)
        while not replies and time.monotonic() < deadline:
            replies = ping(stream, iface, gateway)
        assert replies > 0, "the guest's own lease does not reach the network"

        # Another address on the same NIC: nothing gets through.
        spoofed_ip = gateway.rsplit(".", 1)[0] + ".77"
        guest_run(stream, f"ip addr flush dev {iface}; ip addr add {spoofed_ip}/24 dev {iface}")
        assert ping(stream, iface, gateway) == 0, f"{spoofed_ip} was let through"

        # Its own address from another MAC: nothing either.
        guest_run(
            stream,
            f"ip addr flush dev {iface}; ip link set {iface} down; "
            f"ip link set {iface} address {SPOOFED_MAC}; ip link set {iface} up; "
            f"ip addr add {lease.group(1)}/24 dev {iface}",
        )
        assert ping(stream, iface, gateway) == 0, f"{SPOOFED_MAC} was let through"
    finally:
        stream.close()
    assert filters(str(vm.pk)) == ["clean-traffic"]


def test_it_refuses_a_mac_another_vm_already_has_on_the_network(
    attacker,
    people,
    local_host,
    nets,  # noqa: F811
    make_vm,
):
    network = net_services.create_network(
        local_host, **isolated(nets), actor=Actor(people["admin"])
    )
    victim = make_vm()
    own = make_vm()
    victim, victim_mac = nics.attach_nic(
        victim, network=network, actor=Actor(people["admin"]), persistent=True
    )
    member = attacker("member")

    response = member.api(
        "POST", f"vms/{own.pk}/nics/", json={"network": network.pk, "mac": victim_mac.upper()}
    )

    assert response.status_code == 400, response.text
    assert f"MAC {victim_mac} is already used on network '{network.name}'" in response.text
    assert victim.name not in response.text  # which VM has it is not the member's business
    definition = etree.fromstring(virsh("dumpxml", "--inactive", str(own.pk)).encode())
    assert definition.find("./devices/interface") is None

    # Another MAC is fine, and carries the filter.
    other = member.api(
        "POST", f"vms/{own.pk}/nics/", json={"network": network.pk, "mac": "52:54:00:aa:bb:01"}
    )
    assert other.status_code == 201, other.text
    definition = etree.fromstring(virsh("dumpxml", "--inactive", str(own.pk)).encode())
    ref = definition.find("./devices/interface/filterref")
    assert ref is not None and ref.get("filter") == "clean-traffic"
