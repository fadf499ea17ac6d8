"""Which VMs a user sees; the rules live in panel.permissions."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from panel.permissions import VIEW, restrict

from .models import VirtualMachine


def visible_vms(user: Any, action: str = VIEW) -> QuerySet[VirtualMachine]:
    return restrict(VirtualMachine.objects.select_related("host", "project"), user, action)
