"""What is on a network and beside it: its DHCP leases, the VMs whose NICs join it, and
the host's interfaces."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from networking.models import Network
from networking.services.inventory import on_network
from panel import hypervisor, rows
from panel.actors import Actor
from panel.exceptions import GoneError
from panel.hostcalls import on_host
from panel.models import Host
from panel.permissions import VIEW, require_admin, restrict
from vms.models import VirtualMachine

if TYPE_CHECKING:
    from panel.permissions import Person


def refresh_leases(network: Network) -> list[dict[str, Any]]:
    """Read the network's DHCP leases from its host into the row; return them."""
    with on_network(network, f"Could not read the leases of '{network.name}'"):
        leases = hypervisor.network_leases(network.host.uri, network.name)
    network.leases = [dataclasses.asdict(lease) for lease in leases]
    network.leases_read = timezone.now()
    if not rows.save_if_present(network, ["leases", "leases_read"]):
        raise GoneError(f"Network {network.name} was deleted meanwhile.")
    return network.leases


def leases_for_user(network: Network, user: Person) -> list[dict[str, Any]]:
    """The network's leases, each with the VM (that user can see) holding the MAC."""
    macs = {nic.get("mac", "").lower(): vm for vm, nic in vms_on_network(network, user)}
    rows = []
    for lease in network.leases:
        vm = macs.get(str(lease.get("mac", "")).lower())
        rows.append({**lease, "vm": str(vm.pk) if vm else None, "vm_name": vm.name if vm else ""})
    return rows


def vms_on_network(network: Network, user: Person = None) -> list[tuple[VirtualMachine, dict]]:
    """(VM, NIC) pairs of the network's host whose NIC joins it; only VMs user sees if given."""
    qs = VirtualMachine.objects.filter(host=network.host).exclude(state="missing")
    if user is not None:
        qs = restrict(qs, user, VIEW)
    found = []
    for vm in qs.only("id", "name", "state", "nics", "project_id", "host_id"):
        for nic in vm.nics:
            if (nic.get("type") == "network" and nic.get("source") == network.name) or (
                network.bridge
                and nic.get("type") == "bridge"
                and nic.get("source") == network.bridge
            ):
                found.append((vm, nic))
    return found


def host_interfaces(host: Host, *, actor: Actor) -> tuple[list[hypervisor.InterfaceInfo], str]:
    """The host's interfaces (admins), read now, and where they came from."""
    require_admin(actor.user, "see host interfaces", "networks are infrastructure")
    with on_host(host, f"Could not list the interfaces of {host.name}"):
        found, source = hypervisor.host_interfaces(host.uri)
    return list(found), source
