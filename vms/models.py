"""Virtual machines as the panel last saw them on their host."""

from __future__ import annotations

from django.db import models

from panel.models import Host

from .choices import VMState


class VirtualMachine(models.Model):
    """A libvirt domain mirrored from its host; the id is the libvirt UUID."""

    id = models.UUIDField(primary_key=True)
    name = models.CharField(max_length=200)
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="vms")
    state = models.CharField(max_length=12, choices=VMState, default=VMState.SHUTOFF)
    domain_type = models.CharField(max_length=10, blank=True, default="")
    vcpus = models.PositiveIntegerField(default=1)
    memory_mib = models.PositiveIntegerField(default=0)
    autostart = models.BooleanField(default=False)
    persistent = models.BooleanField(default=True)
    disks = models.JSONField(default=list, blank=True)
    nics = models.JSONField(default=list, blank=True)
    graphics = models.JSONField(default=list, blank=True)
    synced = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["host", "name"], name="vm_unique_name_per_host"),
        ]

    def __str__(self) -> str:
        return self.name
