"""Virtual networks as the panel last saw them on their host."""

from __future__ import annotations

from django.db import models

from panel.models import Host

from .choices import NetworkMode


class Network(models.Model):
    """A libvirt virtual network on one host."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="networks")
    name = models.CharField(max_length=200)
    uuid = models.UUIDField(null=True, blank=True)
    mode = models.CharField(max_length=20, choices=NetworkMode, default=NetworkMode.ISOLATED)
    forward_mode = models.CharField(
        max_length=20, blank=True, default="", help_text="libvirt's <forward mode>."
    )
    bridge = models.CharField(max_length=20, blank=True, default="")
    dev = models.CharField(
        max_length=50,
        blank=True,
        default="",
        help_text="Uplink (nat, routed), source device (macvtap) or physical function (hostdev).",
    )
    active = models.BooleanField(default=False)
    autostart = models.BooleanField(default=False)
    persistent = models.BooleanField(default=True)
    ipv4 = models.JSONField(default=dict, blank=True)
    ipv6 = models.JSONField(default=dict, blank=True)
    mtu = models.PositiveIntegerField(null=True, blank=True)
    domain_name = models.CharField(max_length=253, blank=True, default="")
    dhcp_hosts = models.JSONField(default=list, blank=True)
    dns_hosts = models.JSONField(default=list, blank=True)
    xml = models.TextField(blank=True, default="")
    leases = models.JSONField(default=list, blank=True)
    leases_read = models.DateTimeField(null=True, blank=True)
    synced = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["host__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["host", "name"], name="network_unique_name_per_host"),
        ]

    def __str__(self) -> str:
        return f"{self.name} on {self.host}"

    @property
    def carries_ip(self) -> bool:
        """Whether guests on it get addresses from the host (a bridge libvirt made)."""
        return self.mode in (
            NetworkMode.NAT,
            NetworkMode.ROUTED,
            NetworkMode.ISOLATED,
            NetworkMode.OPEN,
        )
