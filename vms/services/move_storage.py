"""Move storage: one of a VM's disks to another pool of the same host, as a job.

The handbook's intra-host move (copy the disk, point the VM at it, remove the old
file), done through libvirt: a shut-off VM's volume is copied, a running VM's disk
is mirrored and switched over while it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from panel import audit, hypervisor, jobs
from panel.actors import Actor
from panel.choices import JobKind
from panel.exceptions import ServiceError
from panel.models import Job
from panel.permissions import MIGRATE, restrict
from storage.models import StoragePool, Volume
from storage.services import recorded_chains, refresh_pool_row
from vms.choices import VMState
from vms.models import VirtualMachine
from vms.services.common import apply_info, on_vm_host, vm_job
from vms.services.migrate import carry_volume_owners
from vms.services.sync import sync_domain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MoveAsk:
    """A disk move as asked: the disk (vda, ...) and the pool (an id) it goes to."""

    disk: str
    pool: int | None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> MoveAsk:
        try:
            pool: int | None = int(str(data.get("pool", "")).strip())
        except ValueError:
            pool = None
        return cls(disk=str(data.get("disk") or "").strip(), pool=pool)


def move_storage(vm: VirtualMachine, ask: MoveAsk, *, actor: Actor) -> Job:
    """Queue moving the VM's disk ask.disk into the pool ask.pool of its host."""
    from vms.tasks import vm_move_storage_task  # vms.tasks imports this module

    with vm_job(vm, actor, "vm.move_storage", "move the storage of", right=MIGRATE) as request:
        disks = {d["target"]: d for d in vm.disks if d.get("device") == "disk" and d.get("source")}
        target = ask.disk
        if target not in disks:
            raise ServiceError(
                f"disk: name one of {vm.name}'s disks ({', '.join(sorted(disks)) or 'it has none'}).",
                field="disk",
            )
        pool = (
            restrict(StoragePool.objects.all(), actor.user)
            .filter(pk=ask.pool, host=vm.host)
            .first()
            if ask.pool is not None
            else None
        )
        if pool is None:
            raise ServiceError(
                f"pool: choose a pool of {vm.host.name} (see GET /api/v1/pools/?host={vm.host_id}).",
                field="pool",
            )
        if disks[target]["source"].startswith(pool.target_path.rstrip("/") + "/"):
            raise ServiceError(f"{target} is already in pool {pool.name}.", field="pool")
        request.ready("there is nothing to move")
        return request.queue(
            JobKind.VM_MOVE_STORAGE,
            vm_move_storage_task,
            {
                "disk": target,
                "pool": pool.pk,
                "pool_name": pool.name,
                "source": disks[target]["source"],
            },
            f"{target} to pool {pool.name}",
        )


def _recorded_chain(vm: VirtualMachine, target: str) -> tuple[Any, ...]:
    """The chain the panel recorded for the VM's disk target (for a definition giving none)."""
    paths = [d["source"] for d in vm.disks if d.get("target") == target and d.get("source")]
    return recorded_chains(vm.host, paths).get(paths[0], ()) if paths else ()


def run_move_job(job: Job) -> None:
    """Copy or mirror the disk into the pool, point the VM at it, delete the old volume."""
    spec = job.result
    vm = VirtualMachine.objects.select_related("host", "project").filter(pk=spec["vm"]).first()
    if vm is None:
        raise ServiceError("The VM of this job was removed.")
    how = "mirroring it while it runs" if vm.state == VMState.RUNNING else "copying it"
    jobs.report(
        job.pk,
        progress=2,
        message=f"Moving {spec['disk']} of {vm.name} to pool {spec['pool_name']}",
        log_line=f"moving {spec['disk']} to pool {spec['pool_name']}, {how}",
    )

    def progress(done: int, total: int) -> None:
        if total:
            jobs.report(
                job.pk,
                progress=2 + 95 * done // total,
                message=f"{done / 2**20:.1f} of {total / 2**20:.1f} MiB copied",
            )

    with on_vm_host(vm, failed=f"Moving {spec['disk']} of {vm.name} failed and was undone"):
        result = hypervisor.move_disk(
            vm.host.uri,
            str(vm.pk),
            spec["disk"],
            spec["pool_name"],
            progress,
            recorded=_recorded_chain(vm, spec["disk"]),
        )
    pool = StoragePool.objects.filter(pk=spec["pool"]).first()
    if pool is not None:
        try:
            refresh_pool_row(pool)
        except ServiceError as exc:
            log.warning("job %s: could not refresh pool %s: %s", job.pk, pool.name, exc.message)
    with transaction.atomic():
        vm = sync_domain(vm.host, result.info)
        carry_volume_owners(vm.host, vm.host, [(result.old_path, result.new_path)], flattened=True)
        Volume.objects.filter(pool__host=vm.host, path=result.old_path).delete()
        audit.record(
            Actor.of_job(job),
            "vm.move_storage",
            vm,
            project=vm.project,
            detail=f"job #{job.pk}; {spec['disk']}: {result.old_path} -> {result.new_path}",
        )
    jobs.report(
        job.pk,
        progress=100,
        message=f"{spec['disk']} of {vm.name} is now {result.new_path}.",
        log_line=f"{result.old_path} -> {result.new_path}; old volume deleted",
    )


def undo_abandoned(job: Job) -> str:
    """A disk move whose worker died: finished or undone on the host, whichever the disk
    shows, and the rows re-read; what to tell the user."""
    spec = job.result
    vm = VirtualMachine.objects.select_related("host").filter(pk=spec.get("vm")).first()
    if vm is None or not spec.get("source"):
        return "check the VM's disks"
    done = hypervisor.settle_move(
        vm.host.uri, str(vm.pk), spec["disk"], spec["source"], spec["pool_name"]
    )
    apply_info(vm, None)
    for pool in StoragePool.objects.filter(host=vm.host):
        if pool.pk == spec["pool"] or spec["source"].startswith(pool.target_path.rstrip("/") + "/"):
            try:
                refresh_pool_row(pool)
            except ServiceError as exc:
                log.warning("job %s: could not refresh pool %s: %s", job.pk, pool.name, exc.message)
    return done
