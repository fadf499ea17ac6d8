"""The network rows kept in line with their hosts: sync from what a host reports, and
calls about a network whose host may no longer have it."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from networking.models import Network
from panel import hypervisor
from panel.hostcalls import on_host
from panel.models import Host


def _row_fields(info: hypervisor.NetworkInfo) -> dict[str, object]:
    return {
        "uuid": info.uuid or None,
        "mode": info.mode,
        "forward_mode": info.forward_mode,
        "bridge": info.bridge,
        "dev": info.dev,
        "active": info.active,
        "autostart": info.autostart,
        "persistent": info.persistent,
        "ipv4": info.ipv4,
        "ipv6": info.ipv6,
        "mtu": info.mtu,
        "domain_name": info.domain,
        "dhcp_hosts": [dataclasses.asdict(h) for h in info.dhcp_hosts],
        "dns_hosts": [{"ip": h.ip, "hostnames": list(h.hostnames)} for h in info.dns_hosts],
        "xml": info.xml,
    }


def sync_network(host: Host, info: hypervisor.NetworkInfo) -> Network:
    """Create or update one network row from what the host reports."""
    network, _ = Network.objects.update_or_create(
        host=host, name=info.name, defaults={**_row_fields(info), "synced": timezone.now()}
    )
    return network


def sync_networks(host: Host, networks: Iterable[hypervisor.NetworkInfo]) -> dict[str, int]:
    """Make the host's network rows match what it reports."""
    networks = list(networks)
    with transaction.atomic():
        for info in networks:
            sync_network(host, info)
        Network.objects.filter(host=host).exclude(name__in=[n.name for n in networks]).delete()
    return {"networks": len(networks)}


def refresh_networks(host: Host) -> None:
    """Read the host's networks now (before checks that must see every one of them)."""
    with on_host(host, f"Could not read the networks of {host.name}"):
        sync_networks(host, hypervisor.list_networks(host.uri))


def on_network(network: Network, failed: str) -> contextlib.AbstractContextManager[None]:
    """Calls about network: one its host no longer has leaves the list (409)."""
    return on_host(
        network.host,
        failed,
        gone=f"Network '{network.name}' is no longer on {network.host.name}; it was removed "
        "from the list.",
        forget=network.delete,
    )
