"""A host's migration address: where other hosts' QEMU reach it when a VM migrates
there, and the only address its QEMU listens on for that."""

from __future__ import annotations

import ipaddress
import re

from django.core.exceptions import PermissionDenied
from django.db import transaction

from panel import audit
from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.models import Host
from panel.permissions import can_manage_hosts

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_FIELD = "migration_address"


def _refuse(text: str, why: str) -> ServiceError:
    return ServiceError(
        f"Migration address '{text[:80]}' {why}. Give the IP address or host name other "
        "hosts reach this one at for migrations (e.g. 10.0.0.5 or kvm01.example.net, "
        "without a scheme or port), or leave it empty to use the host part of its URI.",
        field=_FIELD,
    )


def clean_migration_address(value: object) -> str:
    """The address normalised ("" for none); ServiceError naming what is wrong with it."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _refuse(str(value), "is not text")
    text = value.strip()
    if not text:
        return ""
    try:
        ip = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        ip = None
    if ip is not None:
        if ip.is_unspecified or ip.is_multicast:
            raise _refuse(text, "is not the address of one host (it would listen everywhere)")
        return str(ip)
    name = text.lower().rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise _refuse(text, "is neither an IP address nor a host name")
    if labels[-1].isdigit():
        raise _refuse(text, "is not a valid IP address")
    return name


def set_migration_address(host: Host, value: object, *, actor: Actor) -> Host:
    """Set (or clear, with "") where other hosts reach host for migrations; admins only."""
    if not can_manage_hosts(actor.user):
        # The 403 handlers of the pages and the API write the audit row for refusals.
        raise PermissionDenied("Only administrators can manage hosts.")
    address = clean_migration_address(value)
    with transaction.atomic():
        Host.objects.filter(pk=host.pk).update(migration_address=address)
        host.migration_address = address
        audit.record(
            actor,
            "host.migration_address",
            host,
            detail=address or "none: the host part of its URI",
        )
    return host
