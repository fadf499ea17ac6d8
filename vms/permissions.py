"""Which VMs a user sees."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from panel.permissions import is_admin

from .models import VirtualMachine


def visible_vms(user: Any) -> QuerySet[VirtualMachine]:
    """Admins see every VM; project scoping extends this for everyone else."""
    if is_admin(user):
        return VirtualMachine.objects.all()
    return VirtualMachine.objects.none()
