"""Network modes, each with the one-line explanation the create form shows."""

from __future__ import annotations

from django.db import models


class NetworkMode(models.TextChoices):
    NAT = "nat", "NAT"
    ROUTED = "routed", "Routed"
    ISOLATED = "isolated", "Isolated"
    OPEN = "open", "Open"
    BRIDGE = "bridge", "Bridged (host bridge)"
    MACVTAP = "macvtap", "Direct (macvtap)"
    HOSTDEV = "hostdev", "SR-IOV pool (PCI passthrough of VFs)"


MODE_HELP: dict[str, str] = {
    NetworkMode.NAT: (
        "Guests sit behind a virtual switch (a Linux bridge such as virbr0) and reach the "
        "outside through the host's IP masquerading (iptables NAT); dnsmasq gives them "
        "DHCP and DNS. The outside cannot reach them. This is libvirt's 'default' network."
    ),
    NetworkMode.ROUTED: (
        "Like NAT, but the host routes the guests' subnet without masquerading: the rest of "
        "the LAN reaches the guests if its routers know a route to that subnet via this host."
    ),
    NetworkMode.ISOLATED: (
        "A virtual switch with no way out: guests talk to each other and to the host only."
    ),
    NetworkMode.OPEN: (
        "Like routed, but libvirt adds no firewall rules at all: the host's own firewall "
        "decides what passes."
    ),
    NetworkMode.BRIDGE: (
        "Guests join an existing host bridge (e.g. br0 enslaving the physical NIC) and appear "
        "on the physical LAN as machines of their own, with addresses from the LAN's DHCP."
    ),
    NetworkMode.MACVTAP: (
        "Direct attachment: each guest gets a macvtap device on a physical NIC (no bridge). "
        "Fast and simple, but the host and its guests cannot talk to each other through it."
    ),
    NetworkMode.HOSTDEV: (
        "PCI passthrough of SR-IOV virtual functions: each guest NIC takes one VF of the "
        "physical function, so the guest drives the hardware itself (fastest; no live migration)."
    ),
}

MACVTAP_HELP = {
    "bridge": "Guests on the same device talk to each other directly.",
    "vepa": "All traffic goes out to the external switch, which must reflect it back (802.1Qbg).",
    "private": "Like VEPA, but guests on the same device never see each other.",
    "passthrough": "One guest takes the whole physical device (its MAC and all).",
}
