"""The anti-spoofing filter a NIC gets on a network: libvirt's clean-traffic and the one
address it may send from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from networking.choices import NetworkMode
from networking.models import Network
from networking.services.checks import IP_MODES
from panel.actors import Actor
from panel.permissions import is_admin

if TYPE_CHECKING:
    from panel.permissions import Person

# Networks whose guests meet on a bridge of the host, where libvirt's nwfilter driver
# can police each NIC's tap device (macvtap and SR-IOV NICs have none).
FILTERED_MODES = {*IP_MODES, NetworkMode.BRIDGE}


def traffic_filter(
    network: Network, actor: Actor, owner: Person = None, mac: str = ""
) -> dict[str, Any]:
    """How a NIC that actor plugs into network, on a VM of owner, is kept from spoofing: the
    hypervisor.NicSpec fields. Unless both are admins (an admin may run a router that
    must send for other addresses), libvirt's clean-traffic: the NIC sends only from its
    own MAC and its one IP (a static DHCP host of the network when the MAC has one, else
    the address its DHCP lease gives, or its first packet's where the network has no DHCP)."""
    owner = actor.user if owner is None else owner
    if (is_admin(actor.user) and is_admin(owner)) or network.mode not in FILTERED_MODES:
        return {}
    mac = (mac or "").lower()
    static = next(
        (
            str(h.get("ip"))
            for h in network.dhcp_hosts
            if mac and str(h.get("mac", "")).lower() == mac
        ),
        "",
    )
    if static:
        return {"clean_traffic": True, "filter_ip": static}
    dhcp = bool((network.ipv4 or {}).get("dhcp_start"))
    return {"clean_traffic": True, "ip_learning": "dhcp" if dhcp else "any"}
