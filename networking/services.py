"""Actions on virtual networks; the inventory sync lives here too."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from panel.hypervisor import NetworkInfo
from panel.models import Host

from .models import Network


def sync_networks(host: Host, networks: Iterable[NetworkInfo]) -> dict[str, int]:
    """Make the host's network rows match what it reports."""
    networks = list(networks)
    now = timezone.now()
    with transaction.atomic():
        for info in networks:
            Network.objects.update_or_create(
                host=host,
                name=info.name,
                defaults={
                    "uuid": info.uuid or None,
                    "mode": info.mode,
                    "bridge": info.bridge,
                    "active": info.active,
                    "autostart": info.autostart,
                    "persistent": info.persistent,
                    "ipv4": info.ipv4,
                    "synced": now,
                },
            )
        Network.objects.filter(host=host).exclude(name__in=[n.name for n in networks]).delete()
    return {"networks": len(networks)}
