"""Virtual networks as the panel last saw them on their host."""

from __future__ import annotations

from django.db import models

from panel.models import Host


class Network(models.Model):
    """A libvirt virtual network on one host."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="networks")
    name = models.CharField(max_length=200)
    uuid = models.UUIDField(null=True, blank=True)
    mode = models.CharField(max_length=20, default="isolated")
    bridge = models.CharField(max_length=20, blank=True, default="")
    active = models.BooleanField(default=False)
    autostart = models.BooleanField(default=False)
    persistent = models.BooleanField(default=True)
    ipv4 = models.JSONField(default=dict, blank=True)
    synced = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["host__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["host", "name"], name="network_unique_name_per_host"),
        ]

    def __str__(self) -> str:
        return f"{self.name} on {self.host}"
