"""Actions on virtual machines. Reads come from the database; this keeps it in step."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from panel import events
from panel.hypervisor import DomainInfo
from panel.models import Host

from .choices import VMState
from .models import VirtualMachine


def _fields(info: DomainInfo) -> dict[str, object]:
    return {
        "name": info.name,
        "state": info.state,
        "domain_type": info.domain_type,
        "vcpus": info.vcpus,
        "memory_mib": info.memory_mib,
        "autostart": info.autostart,
        "persistent": info.persistent,
        "disks": [dataclasses.asdict(d) for d in info.disks],
        "nics": [dataclasses.asdict(n) for n in info.nics],
        "graphics": [dataclasses.asdict(g) for g in info.graphics],
    }


def serialize_vm(vm: VirtualMachine) -> dict[str, object]:
    """The VM as pushed to browsers watching it."""
    return {
        "id": str(vm.pk),
        "name": vm.name,
        "host": vm.host_id,
        "state": vm.state,
        "vcpus": vm.vcpus,
        "memory_mib": vm.memory_mib,
    }


def _publish(vm: VirtualMachine) -> None:
    payload = serialize_vm(vm)
    events.publish(events.vm_group(str(vm.pk)), {"type": "vm.update", "vm": payload})
    events.publish(events.host_group(vm.host_id), {"type": "vm.update", "vm": payload})


def sync_domain(host: Host, info: DomainInfo) -> VirtualMachine:
    """Create or update one VM row from what the host reports."""
    now = timezone.now()
    with transaction.atomic():
        # A domain recreated under the same name with a new UUID replaces the old row.
        VirtualMachine.objects.filter(host=host, name=info.name).exclude(pk=info.uuid).delete()
        vm, created = VirtualMachine.objects.update_or_create(
            pk=info.uuid, defaults={"host": host, "synced": now, **_fields(info)}
        )
        _publish(vm)
    return vm


def mark_missing(host: Host, uuid: str) -> None:
    """A domain the host no longer has: transient ones vanish, defined ones show as missing."""
    with transaction.atomic():
        vm = VirtualMachine.objects.filter(host=host, pk=uuid).first()
        if vm is None:
            return
        if not vm.persistent:
            vm.delete()
            return
        vm.state = VMState.MISSING
        vm.save(update_fields=["state"])
        _publish(vm)


def sync_domains(host: Host, domains: Iterable[DomainInfo]) -> dict[str, int]:
    """Make the host's VM rows match the domains it reports; return counts."""
    domains = list(domains)
    seen = {d.uuid for d in domains}
    changed = 0
    existing = {str(vm.pk): vm for vm in VirtualMachine.objects.filter(host=host)}
    now = timezone.now()
    with transaction.atomic():
        for info in domains:
            fields = _fields(info)
            vm = existing.get(info.uuid)
            if vm is not None and all(getattr(vm, k) == v for k, v in fields.items()):
                continue
            sync_domain(host, info)
            changed += 1
        VirtualMachine.objects.filter(host=host, pk__in=seen).update(synced=now)
        gone = [uuid for uuid in existing if uuid not in seen]
        for uuid in gone:
            mark_missing(host, uuid)
    return {"domains": len(domains), "changed": changed, "missing": len(gone)}
