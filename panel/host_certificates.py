"""How the panel reaches a qemu+tls host: the certificates it verified. Declared here,
imported by panel.models."""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils import timezone


class HostCertificates(models.Model):
    """How the panel reaches a qemu+tls host: the certificates it verified, and since when.
    The files themselves live outside the database (PANEL_PKI_DIR, panel/tlscerts.py)."""

    host = models.OneToOneField("panel.Host", on_delete=models.CASCADE, related_name="certificates")
    ca_subject = models.CharField(max_length=500)
    client_subject = models.CharField(max_length=500)
    client_not_after = models.DateTimeField()
    server_subject = models.CharField(max_length=500)
    server_not_after = models.DateTimeField()
    server_sha256 = models.CharField(max_length=100)
    since = models.DateTimeField()

    def __str__(self) -> str:
        return f"certificates of {self.host}"

    @property
    def expiring(self) -> list[str]:
        """Which of the certificates expire within 30 days (or have expired)."""
        soon = timezone.now() + timedelta(days=30)
        named = [("client", self.client_not_after), ("server", self.server_not_after)]
        return [name for name, until in named if until <= soon]
