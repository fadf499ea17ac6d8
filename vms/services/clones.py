"""Cloning a shut-off VM: a full copy or a linked overlay of its disks, defined as a new
VM in the same project; and what is left when a clone's worker dies.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from panel import hypervisor, jobs, quotas
from panel.actors import Actor
from panel.choices import JobKind
from panel.exceptions import ConflictError, ServiceError
from panel.models import Job
from panel.permissions import ALLOCATE
from storage import services as storage_services
from vms.choices import VMState
from vms.models import VirtualMachine
from vms.services.common import on_vm_host, vm_job
from vms.services.sync import sync_domain


def clone_vm(
    vm: VirtualMachine,
    name: str,
    *,
    linked: bool,
    actor: Actor,
) -> Job:
    """Queue a clone of a shut-off VM into the same project, owned by the actor."""
    from vms.tasks import vm_clone_task  # vms.tasks imports this module

    name = (name or "").strip()
    with vm_job(vm, actor, "vm.clone", "clone", right=ALLOCATE) as request:
        if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
            raise ServiceError(
                "Name the clone with 1 to 64 letters, digits, '-', '_' or '.'.", field="name"
            )
        if vm.state != VMState.SHUTOFF:
            raise ConflictError(f"{vm.name} is {vm.state}: shut it down before cloning it.")
        if (
            VirtualMachine.objects.filter(host=vm.host, name=name)
            .exclude(state=VMState.MISSING)
            .exists()
        ):
            raise ServiceError(f"{vm.host.name} already has a VM named '{name}'.", field="name")
        request.ready("there is nothing to clone")
        with transaction.atomic():
            if vm.project is not None:
                disk_gib = -(
                    -sum(b.get("capacity", 0) for b in vm.details.get("blocks", {}).values())
                    // (1024**3)
                )
                quotas.reserve(
                    vm.project,
                    vms=1,
                    vcpus=max(vm.vcpus, vm.max_vcpus),
                    memory_mib=max(vm.memory_mib, vm.max_memory_mib),
                    disk_gib=0 if linked else disk_gib,
                )
            return request.queue(
                JobKind.VM_CLONE,
                vm_clone_task,
                {"name": name, "linked": linked},
                f"{'linked' if linked else 'full'} clone {name}",
            )


def _record_clone_disks(
    vm: VirtualMachine, info: hypervisor.DomainInfo, *, linked: bool, recorded: dict[str, Any]
) -> None:
    """The clone's new disk volumes recorded as made: a full copy standalone, a linked
    overlay on the source disk and its chain."""
    originals = {d.get("target"): d for d in vm.disks if d.get("device", "disk") == "disk"}
    for disk in info.disks:
        original = originals.get(disk.target)
        if disk.device != "disk" or not disk.source or original is None:
            continue
        if disk.source == original.get("source"):
            continue
        chain: list[dict[str, str]] = []
        if linked:
            below = recorded.get(original["source"], ())
            chain = [{"path": original["source"], "format": original.get("format") or "raw"}]
            chain += [{"path": b.path, "format": b.format} for b in below]
        storage_services.record_made(vm.host, disk.source, disk.format or "raw", chain)


def run_clone_job(job: Job) -> None:
    """Copy or overlay the disks and define the clone; the new row joins the source's project."""
    spec = job.result
    vm = VirtualMachine.objects.select_related("host").filter(pk=spec["vm"]).first()
    if vm is None:
        raise ServiceError("The VM to clone was removed.")
    kind = "linked" if spec["linked"] else "full"
    jobs.report(
        job.pk,
        progress=10,
        message=f"Making a {kind} clone of {vm.name}",
        log_line=f"{kind} clone {spec['name']} started",
    )
    sources = [d["source"] for d in vm.disks if d.get("source")]
    recorded = storage_services.recorded_chains(vm.host, sources)
    with on_vm_host(vm, failed=f"Cloning {vm.name} failed and was undone"):
        info = hypervisor.clone_domain(
            vm.host.uri,
            str(vm.pk),
            spec["name"],
            linked=spec["linked"],
            # Written down before each copy starts: if this worker dies, its successor
            # removes them (undo_abandoned_clone).
            on_volume=jobs.recorder(job.pk),
            recorded=recorded,
        )
    _record_clone_disks(vm, info, linked=spec["linked"], recorded=recorded)
    with transaction.atomic():
        clone = sync_domain(vm.host, info)
        clone.project = vm.project
        clone.owner = job.user
        clone.template = vm.template  # its limits follow the copy
        clone.save(update_fields=["project", "owner", "template"])
    for disk in info.disks:
        jobs.report(job.pk, log_line=f"disk {disk.target}: {disk.source}")
    job.refresh_from_db(fields=["result"])
    job.result = {**job.result, "clone": info.uuid}
    job.save(update_fields=["result"])
    jobs.report(job.pk, progress=100, message=f"{info.name} created ({kind} clone of {vm.name}).")


def undo_abandoned_clone(job: Job) -> str:
    """A VM clone whose worker died: kept if the clone was defined, the volumes it was
    copying removed otherwise; what to tell the user."""
    spec = job.result
    vm = VirtualMachine.objects.select_related("host").filter(pk=spec.get("vm")).first()
    if vm is None:
        return "its VM is no longer in the panel"
    try:
        removed, _kept = storage_services.remove_made_volumes(vm.host, spec.get(jobs.MADE) or [])
        named = [d for d in hypervisor.list_domains(vm.host.uri) if d.name == spec["name"]]
    except (ServiceError, hypervisor.HypervisorError):
        return f"check {vm.host.name}: it could not be read"
    if named:
        with transaction.atomic():
            clone = sync_domain(vm.host, named[0])
            clone.project = vm.project
            clone.owner = job.user
            clone.save(update_fields=["project", "owner"])
        return f"the clone had been made: {named[0].name} is on {vm.host.name}"
    if not removed:
        return f"no clone of {vm.name} was made"
    return f"the unfinished clone's disks were removed: {', '.join(removed)}"
