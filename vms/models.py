"""Virtual machines as the panel last saw them on their host."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from panel.models import Host, Project

from .choices import VMState


class VirtualMachine(models.Model):
    """A libvirt domain mirrored from its host; the id is the libvirt UUID."""

    id = models.UUIDField(primary_key=True)
    name = models.CharField(max_length=200)
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="vms")
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="vms"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_vms",
        help_text="Who created it: a member may act on the VMs they own.",
    )
    granted_users = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="granted_vms",
        help_text="Members an operator allowed to act on this VM too.",
    )
    state = models.CharField(max_length=12, choices=VMState, default=VMState.SHUTOFF)
    domain_type = models.CharField(max_length=10, blank=True, default="")
    firmware = models.CharField(max_length=10, blank=True, default="bios")
    vcpus = models.PositiveIntegerField(default=1)
    memory_mib = models.PositiveIntegerField(default=0)
    autostart = models.BooleanField(default=False)
    persistent = models.BooleanField(default=True)
    disks = models.JSONField(default=list, blank=True)
    nics = models.JSONField(default=list, blank=True)
    graphics = models.JSONField(default=list, blank=True)
    ips = models.JSONField(default=list, blank=True)
    details = models.JSONField(default=dict, blank=True)
    xml = models.TextField(blank=True, default="")
    synced = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["host", "name"]),
            models.Index(fields=["state"]),
            # The list's default order, for everyone and per project.
            models.Index(fields=["name", "id"]),
            models.Index(fields=["project", "name", "id"]),
        ]

    def __str__(self) -> str:
        return self.name
