"""Actions on virtual networks and the checks before them; a VM's NICs are in vms.services.nics.

Networks are infrastructure: admins create, start, stop and delete them. Every input
is checked before anything reaches libvirt, so a refusal leaves the host as it was.

- inventory: network rows synced from what hosts report, calls about one a host lost;
- checks: names, MACs, addresses, DHCP ranges, DNS entries, host bridges and devices;
- networks: create, start, stop, autostart and delete a network (admins);
- leases: a network's DHCP leases and VMs, and a host's interfaces;
- traffic: the anti-spoofing filter a NIC gets on a network.
"""

from .checks import HOSTNAME_RE, IFNAME_RE, MAC_RE, NAME_RE, normalize_mac
from .inventory import sync_networks
from .leases import host_interfaces, leases_for_user, refresh_leases, vms_on_network
from .networks import create_network, delete_network, network_action, set_network_autostart
from .traffic import traffic_filter

__all__ = [
    "HOSTNAME_RE",
    "IFNAME_RE",
    "MAC_RE",
    "NAME_RE",
    "create_network",
    "delete_network",
    "host_interfaces",
    "leases_for_user",
    "network_action",
    "normalize_mac",
    "refresh_leases",
    "set_network_autostart",
    "sync_networks",
    "traffic_filter",
    "vms_on_network",
]
