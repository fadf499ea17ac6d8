"""The VM rows kept in step with the hosts: one domain or a host's whole list written
into rows, a vanished domain marked missing, and the messages that tell browsers.

A domain defined outside the panel lands in the 'unassigned' project until an admin
assigns it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from panel import events, hypervisor, rows
from panel.exceptions import GoneError, UnavailableError
from panel.models import Host, Project
from vms.choices import VMState
from vms.models import VirtualMachine

UNASSIGNED = "unassigned"
# Above this many changes in one reconcile, browsers get one host event instead of one per VM.
BULK_EVENT_THRESHOLD = 200


def unassigned_project() -> Project:
    """Where domains defined outside the panel land until an admin assigns them."""
    project, _ = Project.objects.get_or_create(
        name=UNASSIGNED,
        defaults={"description": "VMs found on hosts, not created through the panel."},
    )
    return project


VM_SYNC_FIELDS = (
    "name",
    "state",
    "domain_type",
    "firmware",
    "vcpus",
    "memory_mib",
    "max_vcpus",
    "max_memory_mib",
    "autostart",
    "persistent",
    "disks",
    "nics",
    "graphics",
)


def _fields(info: hypervisor.DomainInfo) -> dict[str, object]:
    return {
        "name": info.name,
        "state": info.state,
        "domain_type": info.domain_type,
        "firmware": info.firmware,
        "vcpus": info.vcpus,
        "memory_mib": info.memory_mib,
        "max_vcpus": info.max_vcpus,
        "max_memory_mib": info.max_memory_mib,
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
        "host_name": vm.host.name,
        "project": vm.project_id,
        "state": vm.state,
        "state_display": vm.get_state_display(),
        "vcpus": vm.vcpus,
        "memory_mib": vm.memory_mib,
        "ips": vm.ips,
        "tags": vm.tags,
        "details_at": vm.details.get("read_at", ""),
        "saved": bool(vm.details.get("has_managed_save")),
    }


def vm_messages(vm: VirtualMachine) -> list[tuple[str, events.VMUpdate]]:
    """The VM's update, addressed to its page, its list rows and its host's page."""
    payload: events.VMUpdate = {"type": "vm.update", "vm": serialize_vm(vm)}
    return [
        (events.vm_group(str(vm.pk)), payload),
        (events.vm_row_group(str(vm.pk)), payload),
        (events.host_group(vm.host_id), payload),
    ]


def publish_vm(vm: VirtualMachine) -> None:
    """Tell the browsers watching vm, its row or its host that it changed."""
    events.publish_many(vm_messages(vm))


def _left_behind(vm: VirtualMachine, host: Host, info: hypervisor.DomainInfo) -> bool:
    """A shut-off definition on host of a VM the row says runs on another host: what a
    migration without undefine-source leaves. The row stays with the running copy."""
    return (
        vm.host_id != host.pk
        and info.state == VMState.SHUTOFF
        and vm.state in (VMState.RUNNING, VMState.PAUSED)
    )


def sync_domain(host: Host, info: hypervisor.DomainInfo) -> VirtualMachine:
    """Create or update one VM row from what the host reports."""
    with transaction.atomic():
        # The host's row first: two processes syncing one new domain (the watcher and a
        # job) take turns, so the second finds the row the first made instead of making
        # it twice; and the host cannot be removed before this commits.
        if rows.lock(host) is None:
            raise GoneError(f"{host.name} was removed from the panel meanwhile.")
        # Locked too: a delete job removing this row meanwhile waits, or has already gone.
        vm = VirtualMachine.objects.select_for_update().filter(pk=info.uuid).first()
        if vm is not None and _left_behind(vm, host, info):
            return vm
        new = vm is None
        if vm is None:
            vm = VirtualMachine(pk=info.uuid, project=unassigned_project())
        fields = _fields(info)
        # Pages hear of the VM when something they show changed, not at every read.
        changed = (
            new or vm.host_id != host.pk or any(getattr(vm, k) != v for k, v in fields.items())
        )
        for key, value in fields.items():
            setattr(vm, key, value)
        vm.host = host
        vm.synced = timezone.now()
        vm.save(force_insert=new)
        if changed:
            publish_vm(vm)
    return vm


def mark_missing(host: Host, uuid: str) -> None:
    """A domain the host no longer has: its row stays, with its history, as missing."""
    with transaction.atomic():
        # Locked: if a delete job removed the row meanwhile there is nothing to mark.
        vm = VirtualMachine.objects.select_for_update().filter(host=host, pk=uuid).first()
        if vm is None or vm.state == VMState.MISSING:
            return
        vm.state = VMState.MISSING
        vm.save(update_fields=["state"])
        publish_vm(vm)


def sync_domains(host: Host, domains: Iterable[hypervisor.DomainInfo]) -> dict[str, int]:
    """Make the host's VM rows match the domains it reports, in bulk; return counts."""
    domains = list(domains)
    with transaction.atomic():
        # The host's row first, as sync_domain takes it: the rows read below stay as
        # they are until this commits (no watcher adds one of these domains meanwhile).
        if rows.lock(host) is None:
            raise GoneError(f"{host.name} was removed from the panel meanwhile.")
        known = set(
            VirtualMachine.objects.filter(host=host)
            .exclude(state=VMState.MISSING)
            .values_list("pk", flat=True)
        )
        created, changed_fields = _compare(host, domains)
        _write(created, changed_fields)
        seen = {d.uuid for d in domains}
        gone = [pk for pk in known if str(pk) not in seen]
        VirtualMachine.objects.filter(pk__in=gone).update(state=VMState.MISSING)
        changed = [vm for vm, _fields_changed in changed_fields]
        _announce(host, created, changed, gone)
    return {
        "domains": len(domains),
        "created": len(created),
        "changed": len(changed),
        "missing": len(gone),
    }


def _compare(
    host: Host, domains: list[hypervisor.DomainInfo]
) -> tuple[list[VirtualMachine], list[tuple[VirtualMachine, tuple[str, ...]]]]:
    """The rows to create for new domains, and the rows changed (updated in memory) with the
    fields that changed in each."""
    now = timezone.now()
    existing = {
        str(vm.pk): vm for vm in VirtualMachine.objects.filter(pk__in=[d.uuid for d in domains])
    }
    project = unassigned_project() if any(d.uuid not in existing for d in domains) else None
    created: list[VirtualMachine] = []
    changed_fields: list[tuple[VirtualMachine, tuple[str, ...]]] = []
    for info in domains:
        fields = _fields(info)
        vm = existing.get(info.uuid)
        if vm is None:
            created.append(
                VirtualMachine(pk=info.uuid, host=host, project=project, synced=now, **fields)
            )
            continue
        if _left_behind(vm, host, info):
            continue
        diff = tuple(k for k, v in fields.items() if getattr(vm, k) != v)
        if vm.host_id != host.pk:
            diff = (*diff, "host")
        if not diff:
            continue
        for key, value in fields.items():
            setattr(vm, key, value)
        vm.host = host
        vm.synced = now
        changed_fields.append((vm, diff))
    return created, changed_fields


def _write(
    created: list[VirtualMachine], changed_fields: list[tuple[VirtualMachine, tuple[str, ...]]]
) -> None:
    """The new rows inserted and the changed ones updated, grouped by which fields changed:
    an UPDATE writes only those."""
    VirtualMachine.objects.bulk_create(created, batch_size=500)
    by_fields: dict[tuple[str, ...], list[VirtualMachine]] = {}
    for vm, fields_changed in changed_fields:
        by_fields.setdefault(fields_changed, []).append(vm)
    for names, batch in by_fields.items():
        VirtualMachine.objects.bulk_update(batch, [*names, "synced"], batch_size=500)


def _announce(
    host: Host, created: list[VirtualMachine], changed: list[VirtualMachine], gone: list[Any]
) -> None:
    """Browsers told of each VM that changed, or, past BULK_EVENT_THRESHOLD, of the host."""
    touched = len(created) + len(changed) + len(gone)
    if touched > BULK_EVENT_THRESHOLD:
        events.publish(
            events.host_group(host.pk),
            {
                "type": "host.update",
                "host": {
                    "id": host.pk,
                    "name": host.name,
                    "state": host.state,
                    "inventory_changed": touched,
                },
            },
        )
        return
    events.publish_many(
        [
            message
            for vm in [
                *created,
                *changed,
                *VirtualMachine.objects.filter(pk__in=gone).select_related("host"),
            ]
            for message in vm_messages(vm)
        ]
    )


def still_there(vm: VirtualMachine) -> VirtualMachine:
    """The VM's row read again; GoneError when it was deleted meanwhile."""
    row = VirtualMachine.objects.select_related("host").filter(pk=vm.pk).first()
    if row is None:
        raise GoneError(f"{vm.name} was deleted meanwhile.")
    return row


def refresh_details(vm: VirtualMachine) -> VirtualMachine:
    """Read the VM's details from its host (addresses, agent, block sizes) into the row."""
    try:
        details = hypervisor.domain_details(vm.host.uri, str(vm.pk))
    except hypervisor.NotFound:
        mark_missing(vm.host, str(vm.pk))
        return still_there(vm)
    except hypervisor.HostUnavailable as exc:
        raise UnavailableError(
            f"{vm.host.name} cannot be reached: {exc}. Try again once the host is back."
        ) from exc
    with transaction.atomic():
        vm = sync_domain(vm.host, details.info)
        ips_before = vm.ips
        vm.ips = [dataclasses.asdict(a) for a in details.addresses]
        vm.details = {
            "id": details.id,
            "os_type": details.os_type,
            "state_reason": details.state_reason,
            "cpu_time_s": round(details.cpu_time_ns / 1e9, 1),
            "max_memory_mib": details.max_memory_mib,
            "has_managed_save": details.has_managed_save,
            "blocks": {b.target: dataclasses.asdict(b) for b in details.blocks},
            "vnet_devices": details.vnet_devices,
            "agent": details.agent,
            "read_at": timezone.now().isoformat(),
        }
        vm.xml = details.xml
        vm.save(update_fields=["ips", "details", "xml"])
        # The VM's page shows the details; host pages and VM lists only its state (told
        # by sync_domain when it changed) and addresses: fresh details alone, read at each
        # page view, are not theirs to hear of.
        if vm.ips != ips_before:
            publish_vm(vm)
        else:
            payload: events.VMUpdate = {"type": "vm.update", "vm": serialize_vm(vm)}
            events.publish(events.vm_group(str(vm.pk)), payload)
    return vm
