"""Snapshots of VMs: take, revert and delete as jobs, and the mirror the pages read.

The snapshot rows mirror what libvirt holds: each snapshot job ends by reading
the domain's snapshots back (`sync_snapshots`), and so does the details refresh
a VM page asks for, so snapshots made outside the panel show up too. Pages and
the API read the rows, never libvirt, so a list costs no host call.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from panel import hypervisor, jobs, quotas
from panel.actors import Actor
from panel.choices import JobKind
from panel.exceptions import ServiceError
from panel.models import Job
from panel.permissions import SNAPSHOT
from vms.choices import VMState
from vms.models import BackupSchedule, Snapshot, VirtualMachine
from vms.services.backups import disk_bytes
from vms.services.common import VMJob, apply_info, on_vm_host, vm_job

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
KINDS = ("internal", "external")
# Why a request on a VM missing from its host is refused.
NO_SNAPSHOTS = "it has no snapshots to act on"


def sync_snapshots(vm: VirtualMachine) -> list[Snapshot]:
    """Make the VM's snapshot rows match the snapshots its host has; return them in tree order."""
    with on_vm_host(vm):
        found = hypervisor.list_snapshots(vm.host.uri, str(vm.pk))
    depth: dict[str, int] = {}
    with transaction.atomic():
        Snapshot.objects.filter(vm=vm).exclude(name__in=[s.name for s in found]).delete()
        for position, snap in enumerate(found):
            depth[snap.name] = depth[snap.parent] + 1 if snap.parent in depth else 0
            Snapshot.objects.update_or_create(
                vm=vm,
                name=snap.name,
                defaults={
                    "description": snap.description,
                    "parent": snap.parent,
                    "state": snap.state,
                    "kind": snap.kind,
                    "memory": snap.memory,
                    "current": snap.current,
                    "created": datetime.fromtimestamp(snap.created, tz=UTC)
                    if snap.created
                    else None,
                    "size": snap.size,
                    "disks": [dataclasses.asdict(d) for d in snap.disks],
                    "depth": depth[snap.name],
                    "position": position,
                },
            )
    return list(Snapshot.objects.filter(vm=vm))


def serialize_snapshot(snapshot: Snapshot) -> dict[str, Any]:
    """A snapshot as the API shows it."""
    return {
        "name": snapshot.name,
        "description": snapshot.description,
        "parent": snapshot.parent or None,
        "state": snapshot.state,
        "created": snapshot.created.isoformat() if snapshot.created else None,
        "kind": snapshot.kind,
        "memory": snapshot.memory,
        "current": snapshot.current,
        "size": snapshot.size,
        "depth": snapshot.depth,
        "disks": snapshot.disks,
    }


def _snapshot(vm: VirtualMachine, name: str) -> Snapshot:
    snapshot = Snapshot.objects.filter(vm=vm, name=name).first()
    if snapshot is None:
        raise ServiceError(
            f"{vm.name} has no snapshot named '{name}'. Reload the list to see its snapshots.",
            field="name",
        )
    return snapshot


def _default_name() -> str:
    return timezone.now().strftime("snap-%Y%m%d-%H%M%S")


def take_snapshot(
    vm: VirtualMachine,
    *,
    name: str = "",
    description: str = "",
    kind: str = "internal",
    memory: bool | None = None,
    quiesce: bool = False,
    schedule: int | None = None,
    actor: Actor,
) -> Job:
    """Queue a snapshot of vm (for a backup schedule: pruned to its retention afterwards). Internal: with the memory when running (a checkpoint),
    disk-only when shut off; every disk must be qcow2. External: disk-only overlays."""
    name = (name or "").strip() or _default_name()
    with vm_job(vm, actor, "vm.snapshot.create", "take snapshots of", right=SNAPSHOT) as request:
        _check_request(name, kind, description)
        memory = _with_memory(vm, kind, memory)
        if quiesce:
            _check_quiesce(vm, kind)
        if kind == "internal":
            _check_internal(vm)
        if Snapshot.objects.filter(vm=vm, name=name).exists():
            raise ServiceError(
                f"{vm.name} already has a snapshot named '{name}': choose another name.",
                field="name",
            )
        request.ready(NO_SNAPSHOTS)
        spec = {
            "op": "create",
            "name": name,
            "description": description,
            "kind": kind,
            "memory": memory,
            "quiesce": quiesce,
            "schedule": schedule,
        }
        return _queue_take(request, spec)


def _queue_take(request: VMJob, spec: dict[str, Any]) -> Job:
    """The snapshot's job queued, what it may take reserved against the backup quota."""
    from vms.tasks import vm_snapshot_task  # vms.tasks imports this module

    # What the snapshot may take, counted from now against the backup quota: the
    # disks' capacity (later writes go to new space) and the memory it saves; once
    # taken it counts what it holds, as read back from the host.
    vm, memory = request.vm, spec["memory"]
    reserve: quotas.Reservation = {
        "backup_gib": quotas.backup_reserve(
            disk_bytes(vm),
            max(vm.memory_mib, vm.max_memory_mib) if memory else 0,
        )
    }
    with transaction.atomic():
        if vm.project is not None:
            quotas.reserve(vm.project, **reserve)
        return request.queue(
            JobKind.VM_SNAPSHOT_CREATE,
            vm_snapshot_task,
            {**spec, "reserve": reserve},
            f"{spec['kind']} snapshot {spec['name']}" + (" with memory" if memory else ""),
        )


def _check_request(name: str, kind: str, description: str) -> None:
    """The snapshot's name, kind and description as the form may give them."""
    if not NAME_RE.match(name):
        raise ServiceError(
            "Name the snapshot with 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
            field="name",
        )
    if kind not in KINDS:
        raise ServiceError("Choose the kind: internal or external.", field="kind")
    if len(description) > 1000:
        raise ServiceError("Keep the description under 1000 characters.", field="description")


def _with_memory(vm: VirtualMachine, kind: str, memory: bool | None) -> bool:
    """Whether the snapshot keeps vm's memory: by default when an internal one of a running
    VM, which must; never for an external one or a shut-off VM."""
    running = vm.state in (VMState.RUNNING, VMState.PAUSED)
    if memory is None:
        memory = running and kind == "internal"
    if memory and kind == "external":
        raise ServiceError(
            "External snapshots are disk-only here: take an internal snapshot to keep the memory.",
            field="memory",
        )
    if memory and not running:
        raise ServiceError(
            f"{vm.name} is not running, so there is no memory to save: leave memory off.",
            field="memory",
        )
    if kind == "internal" and running and not memory:
        raise ServiceError(
            "An internal snapshot of a running VM keeps its memory too: turn memory on, "
            "shut the VM down first, or take an external snapshot.",
            field="memory",
        )
    return memory


def _check_quiesce(vm: VirtualMachine, kind: str) -> None:
    """Quiescing: an external snapshot of a running VM whose guest agent answers."""
    if kind != "external" or vm.state not in (VMState.RUNNING, VMState.PAUSED):
        raise ServiceError(
            "Quiescing applies to external snapshots of a running VM only.", field="quiesce"
        )
    with on_vm_host(vm):
        agent = hypervisor.has_guest_agent(vm.host.uri, str(vm.pk))
    if not agent:
        raise ServiceError(
            f"No guest agent answers in {vm.name}, so its filesystems cannot be "
            "quiesced: install and start qemu-guest-agent in the guest (with its "
            "virtio channel), or take the snapshot without quiesce.",
            field="quiesce",
        )


def _check_internal(vm: VirtualMachine) -> None:
    """An internal snapshot: vm has disks, every one of them qcow2."""
    disks = [d for d in vm.disks if d.get("device") == "disk"]
    if not disks:
        raise ServiceError(
            f"{vm.name} has no disk to hold an internal snapshot: attach a qcow2 disk first.",
            field="kind",
        )
    if not_qcow2 := [d for d in disks if d.get("format") != "qcow2"]:
        listed = ", ".join(f"{d['target']} is {d.get('format') or 'raw'}" for d in not_qcow2)
        raise ServiceError(
            f"Internal snapshots need every disk in qcow2 format ({listed}): "
            "take an external snapshot instead, or convert the disk to qcow2.",
            field="kind",
        )


def revert_snapshot(
    vm: VirtualMachine,
    name: str,
    *,
    start: bool = False,
    discard_later: bool = False,
    actor: Actor,
) -> Job:
    """Queue a revert of vm to the snapshot; with start the guest runs afterwards. For an
    external snapshot, discard_later deletes the overlays (and snapshots) taken after it."""
    from vms.tasks import vm_snapshot_task  # vms.tasks imports this module

    with vm_job(vm, actor, "vm.snapshot.revert", "revert", right=SNAPSHOT) as request:
        snapshot = _snapshot(vm, name)
        request.ready(NO_SNAPSHOTS)
        return request.queue(
            JobKind.VM_SNAPSHOT_REVERT,
            vm_snapshot_task,
            {"op": "revert", "name": snapshot.name, "start": start, "discard_later": discard_later},
            f"to {snapshot.name}"
            + (", then start" if start else "")
            + (", discarding later overlays" if discard_later else ""),
        )


def delete_snapshot(
    vm: VirtualMachine,
    name: str,
    *,
    children: bool = False,
    actor: Actor,
) -> Job:
    """Queue the deletion of a snapshot (its children move up), or of it and its children."""
    from vms.tasks import vm_snapshot_task  # vms.tasks imports this module

    with vm_job(vm, actor, "vm.snapshot.delete", "delete snapshots of", right=SNAPSHOT) as request:
        snapshot = _snapshot(vm, name)
        request.ready(NO_SNAPSHOTS)
        return request.queue(
            JobKind.VM_SNAPSHOT_DELETE,
            vm_snapshot_task,
            {"op": "delete", "name": snapshot.name, "children": children},
            snapshot.name + (" and its children" if children else ""),
        )


def run_snapshot_job(job: Job) -> None:
    """The body of a snapshot create, revert or delete job."""
    spec = job.result
    vm = VirtualMachine.objects.select_related("host").filter(pk=spec["vm"]).first()
    if vm is None:
        raise ServiceError("The VM of this job was removed.")
    op = spec["op"]
    from vms.services.merges import run_merge  # merges imports this module

    run = {"create": _take, "revert": _revert, "merge": run_merge, "delete": _delete}.get(op)
    if run is None:
        raise ServiceError(f"Unknown snapshot operation '{op}'.")
    done = run(job, vm, spec)
    jobs.report(job.pk, progress=80, log_line="reading the snapshots back")
    vm = apply_info(vm, None)
    snapshots = sync_snapshots(vm)
    if op == "create" and spec.get("schedule"):
        snapshots = _prune(job, vm, spec["schedule"], snapshots)
    jobs.report(
        job.pk,
        progress=100,
        message=done,
        log_line=f"{len(snapshots)} snapshot(s); {vm.name} is {vm.state}",
    )


def _take(job: Job, vm: VirtualMachine, spec: dict[str, Any]) -> str:
    name = spec["name"]
    what = f"{spec['kind']} snapshot {name}" + (" with memory" if spec["memory"] else "")
    jobs.report(
        job.pk,
        progress=10,
        message=f"Taking the {what} of {vm.name}",
        log_line=f"taking {what}",
    )
    with on_vm_host(vm, failed=f"The snapshot {name} of {vm.name} failed"):
        hypervisor.create_snapshot(
            vm.host.uri,
            str(vm.pk),
            name,
            description=spec["description"],
            kind=spec["kind"],
            memory=spec["memory"],
            quiesce=spec["quiesce"],
        )
    return f"Snapshot {name} of {vm.name} taken."


def _revert(job: Job, vm: VirtualMachine, spec: dict[str, Any]) -> str:
    name = spec["name"]
    jobs.report(
        job.pk,
        progress=10,
        message=f"Reverting {vm.name} to {name}",
        log_line=f"reverting to {name}" + (" and starting" if spec["start"] else ""),
    )
    with on_vm_host(vm, failed=f"Reverting {vm.name} to {name} failed"):
        steps = hypervisor.revert_snapshot(
            vm.host.uri,
            str(vm.pk),
            name,
            start=spec["start"],
            discard_later=spec.get("discard_later", False),
        )
    for step in steps:
        jobs.report(job.pk, log_line=step)
    return f"{vm.name} reverted to {name}."


def _delete(job: Job, vm: VirtualMachine, spec: dict[str, Any]) -> str:
    name = spec["name"]
    jobs.report(
        job.pk,
        progress=10,
        message=f"Deleting the snapshot {name} of {vm.name}",
        log_line=f"deleting {name}" + (" and its children" if spec["children"] else ""),
    )
    with on_vm_host(vm, failed=f"Deleting the snapshot {name} of {vm.name} failed"):
        hypervisor.delete_snapshot(vm.host.uri, str(vm.pk), name, children=spec["children"])
    return f"Snapshot {name} of {vm.name} deleted."


def _prune(
    job: Job, vm: VirtualMachine, schedule_id: int, snapshots: list[Snapshot]
) -> list[Snapshot]:
    """The snapshots of a schedule pruned to its retention; the VM's snapshots left
    (snapshots as they were when the schedule is gone)."""
    from vms.services.schedules import prune  # schedules imports this module

    schedule = BackupSchedule.objects.filter(pk=schedule_id).first()
    if schedule is None:
        return snapshots
    for line in prune(schedule, vm, job):
        jobs.report(job.pk, log_line=line)
    return list(Snapshot.objects.filter(vm=vm))


def snapshot_tree(vm: VirtualMachine) -> list[Snapshot]:
    """The VM's snapshot rows in tree order (parents first), each with its depth."""
    return list(Snapshot.objects.filter(vm=vm).order_by("position"))
