"""Virtual networks, DHCP leases, VM NICs and host interfaces, as plain values.

virtual      virtual networks: their XML, defining, starting, stopping, leases
nics         VM NICs: their XML, plugging, unplugging, link state
interfaces   the host's interfaces, from libvirt and (on this machine) `ip`
"""

from panel.hypervisor.networks.interfaces import InterfacesUnsupported as InterfacesUnsupported
from panel.hypervisor.networks.interfaces import host_interfaces as host_interfaces
from panel.hypervisor.networks.nics import attach_nic as attach_nic
from panel.hypervisor.networks.nics import build_interface as build_interface
from panel.hypervisor.networks.nics import detach_nic as detach_nic
from panel.hypervisor.networks.nics import parse_nics as parse_nics
from panel.hypervisor.networks.nics import random_mac as random_mac
from panel.hypervisor.networks.nics import set_nic_link as set_nic_link
from panel.hypervisor.networks.virtual import MACVTAP_MODES as MACVTAP_MODES
from panel.hypervisor.networks.virtual import build_network as build_network
from panel.hypervisor.networks.virtual import define_network as define_network
from panel.hypervisor.networks.virtual import delete_network as delete_network
from panel.hypervisor.networks.virtual import get_network as get_network
from panel.hypervisor.networks.virtual import list_networks as list_networks
from panel.hypervisor.networks.virtual import network_leases as network_leases
from panel.hypervisor.networks.virtual import network_xml as network_xml
from panel.hypervisor.networks.virtual import parse_leases as parse_leases
from panel.hypervisor.networks.virtual import parse_network as parse_network
from panel.hypervisor.networks.virtual import set_network_autostart as set_network_autostart
from panel.hypervisor.networks.virtual import start_network as start_network
from panel.hypervisor.networks.virtual import stop_network as stop_network
from panel.hypervisor.specs import IPConfig as IPConfig
