"""Shortening a disk's backing chain, as a snapshot job: block commit (the upper layers
written down into a lower one) or block pull (the lower layers copied up into the active
image), in the running guest's QEMU."""

from __future__ import annotations

from typing import Any

from panel import hypervisor, jobs
from panel.actors import Actor
from panel.choices import JobKind
from panel.exceptions import ConflictError, ServiceError
from panel.models import Job
from panel.permissions import SNAPSHOT
from vms.choices import VMState
from vms.models import VirtualMachine
from vms.services.common import on_vm_host, vm_job
from vms.services.snapshots import NO_SNAPSHOTS
from vms.tasks import vm_snapshot_task

MERGE_MODES = ("commit", "pull")


def merge_disk(
    vm: VirtualMachine,
    disk: str,
    *,
    mode: str = "commit",
    base: str = "",
    top: str = "",
    actor: Actor,
) -> Job:
    """Queue a block commit or block pull that shortens the backing chain of vm's disk.

    commit writes the layers from top (default: the active image, pivoting onto base) into
    base (default: the bottom image); pull copies the layers above base (default: all) into
    the active image. Snapshots whose state the merge overwrote lose their metadata."""
    with vm_job(vm, actor, "vm.snapshot.merge", "merge the disks of", right=SNAPSHOT) as request:
        if mode not in MERGE_MODES:
            raise ServiceError("Choose the mode: commit or pull.", field="mode")
        targets = [d.get("target") for d in vm.disks if d.get("device") == "disk"]
        if disk not in targets:
            raise ServiceError(
                f"{vm.name} has no disk '{disk}': choose one of {', '.join(targets) or 'none'}.",
                field="disk",
            )
        request.ready(NO_SNAPSHOTS)
        if vm.state != VMState.RUNNING:
            raise ConflictError(
                f"{vm.name} is {vm.state}: block commit and block pull run in the running "
                "guest's QEMU. Start it first."
            )
        _check_merge(vm, disk, mode, base=base, top=top)
        return request.queue(
            JobKind.VM_SNAPSHOT_MERGE,
            vm_snapshot_task,
            {"op": "merge", "name": disk, "mode": mode, "base": base, "top": top},
            f"block {mode} of {disk}"
            + (f" from {top}" if top else "")
            + (f" into {base}" if base else ""),
        )


def _check_merge(vm: VirtualMachine, disk: str, mode: str, *, base: str, top: str) -> None:
    """The disk's chain, read from the host, has layers to merge, and top and base are in it."""
    with on_vm_host(vm):
        chain = hypervisor.disk_chains(vm.host.uri, str(vm.pk)).get(disk, ())
    if len(chain) < 2:
        raise ConflictError(f"The disk {disk} of {vm.name} has no backing chain to shorten.")
    listed = ", ".join(chain)
    if top and (mode == "pull" and top != chain[0] or top not in chain[:-1]):
        raise ServiceError(
            "Choose top among the images above the bottom of the chain "
            f"({listed}); a pull always copies into the active image {chain[0]}.",
            field="top",
        )
    below = chain[chain.index(top) + 1 :] if top else chain[1:]
    if base and base not in below:
        raise ServiceError(
            f"Choose base among the images below top in the chain of {disk}: {', '.join(below)}.",
            field="base",
        )


def run_merge(job: Job, vm: VirtualMachine, spec: dict[str, Any]) -> str:
    """The merge job's work on vm: the chain shortened; what to tell the user."""
    disk, mode = spec["name"], spec["mode"]
    jobs.report(
        job.pk,
        progress=5,
        message=f"Block {mode} of {disk} of {vm.name}",
        log_line=f"block {mode} of {disk} started",
    )
    last = [-1]

    def progress(cur: int, end: int) -> None:
        percent = 5 + 85 * cur // end if end else 5
        if percent != last[0]:
            last[0] = percent
            jobs.report(job.pk, progress=percent, message=f"Block {mode}: {cur} of {end} bytes")

    with on_vm_host(vm, failed=f"The block {mode} of {disk} of {vm.name} failed"):
        steps = hypervisor.merge_chain(
            vm.host.uri,
            str(vm.pk),
            disk,
            mode,
            base=spec["base"],
            top=spec["top"],
            progress=progress,
        )
    for step in steps:
        jobs.report(job.pk, log_line=step)
    with on_vm_host(vm):
        chain = hypervisor.disk_chains(vm.host.uri, str(vm.pk)).get(disk, ())
    jobs.report(job.pk, log_line=f"{disk} chain now: {' <- '.join(chain)}")
    return f"The chain of {disk} of {vm.name} is {len(chain)} image(s) long."
