"""What a project's volumes count against its quota (panel.quotas)."""

from __future__ import annotations

from django.db.models import Sum
from django.db.models.functions import Coalesce

from panel.models import Project
from panel.quotas import GIB

from .models import Volume


def project_usage(project: Project) -> dict[str, int]:
    """The capacity of the project's volumes, rounded up to whole GiB."""
    disk = Volume.objects.filter(project=project).aggregate(b=Coalesce(Sum("capacity"), 0))["b"]
    return {"disk_gib": -(-int(disk) // GIB)}
