"""The Network interfaces card of a VM's page."""

from __future__ import annotations

from typing import Any

from django import template

from vms.services import nics

register = template.Library()


@register.inclusion_tag("vms/_nics.html", takes_context=True)
def vm_nics(context: dict[str, Any], vm: Any) -> dict[str, Any]:
    user = context["request"].user
    can_change = nics.can_change_nics(vm, user)
    return {
        "vm": vm,
        "nics": nics.vm_nics(vm),
        "can_change": can_change and vm.state != "missing",
        "networks": nics.usable_networks(vm, user) if can_change else [],
        "models": nics.NIC_MODELS,
        "is_admin": context.get("is_admin", False),
        "running": vm.state in ("running", "paused"),
        "csrf_token": context.get("csrf_token"),
    }
