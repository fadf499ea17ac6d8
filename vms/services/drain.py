"""Maintenance mode: draining a host of its running VMs, and making it active again.

The plan comes first: for each VM on the host, the host placement picks for it (keeping
its affinity groups) and how it moves (live, with its disks copied when the target
does not see them), or why it cannot move. Shut-off VMs stay defined where they are:
moving them would only copy their disks, and they start on this host again once it is
active. Starting a drain puts the host in maintenance (it takes no new VMs) and queues
one job that migrates the running VMs one after the other, each as a migration job of
its own; cancelling the drain stops it before the next VM (the one migrating finishes,
or is rolled back by cancelling its own job).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from panel import audit, hypervisor, jobs
from panel.actors import Actor
from panel.choices import HostState, JobKind, JobState
from panel.exceptions import ConflictError, ServiceError
from panel.models import Host, Job
from panel.permissions import require_admin
from storage.models import StoragePool
from vms.choices import VMState
from vms.models import VirtualMachine
from vms.services import migrate, placement

log = logging.getLogger(__name__)

MOVING = (VMState.RUNNING, VMState.PAUSED)
ACTIVE_JOB = (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class PlanStep:
    """One VM of a drained host: where it goes and how, or why it stays."""

    vm: str
    vm_name: str
    state: str
    target_host: int | None = None
    target_name: str = ""
    target_pool: int | None = None
    copy_storage: str = ""
    how: str = ""
    reason: str = ""


def _copy_pool(target: Host) -> StoragePool | None:
    """The running pool of target with the most room: where disks the target does not
    see are copied to."""
    return StoragePool.objects.filter(host=target, state="active").order_by("-available").first()


def _how(vm: VirtualMachine, target: Host) -> tuple[str, StoragePool | None, str]:
    """How vm moves to target: (copy_storage, pool, "") or the pre-check's refusal."""
    live = hypervisor.MigrationOptions(live=True)
    try:
        reasons = migrate.refusal(migrate.precheck(vm, target, live))
    except ServiceError as exc:
        return "", None, exc.message
    if not reasons:
        return "", None, ""
    if hypervisor.NEEDS_COPY not in reasons:
        return "", None, reasons
    pool = _copy_pool(target)
    if pool is None:
        return (
            "",
            None,
            f"its disks are not on shared storage and {target.name} has no running pool",
        )
    copy = hypervisor.MigrationOptions(live=True, copy_storage="all", target_pool=pool.name)
    try:
        reasons = migrate.refusal(migrate.precheck(vm, target, copy))
    except ServiceError as exc:
        reasons = exc.message
    return ("all", pool, "") if not reasons else ("", None, reasons)


def _step(vm: VirtualMachine, host: Host, planned: dict[str, int]) -> PlanStep:
    """Where vm goes from host (placement, then the migration's pre-check there)."""
    base = PlanStep(vm=str(vm.pk), vm_name=vm.name, state=vm.state)
    if vm.state not in MOVING:
        return replace(base, reason=f"{vm.state}: stays defined on {host.name}, not moved")
    need = placement.Need(
        memory_mib=vm.memory_mib,
        vcpus=vm.vcpus,
        groups=tuple(vm.affinity_groups.all()),
        vm=str(vm.pk),
        exclude=frozenset({host.pk}),
        planned=planned,
    )
    placed = placement.place(None, need, _hosts())
    if placed.host is None:
        return replace(base, reason=placed.refusal())
    target = placed.host
    copy, pool, refused = _how(vm, target)
    if refused:
        return replace(base, reason=f"cannot move to {target.name}: {refused}")
    planned[str(vm.pk)] = target.pk
    how = "live" + (f", disks copied to pool {pool.name}" if pool else ", shared storage")
    return replace(
        base,
        target_host=target.pk,
        target_name=target.name,
        target_pool=pool.pk if pool else None,
        copy_storage=copy,
        how=how,
    )


def _hosts() -> list[Host]:
    """Every host (the drain is an admin's), with its VM count for spread's tie-break."""
    return list(Host.objects.annotate(vm_count=Count("vms", filter=~Q(vms__state=VMState.MISSING))))


def plan(host: Host, *, actor: Actor) -> list[PlanStep]:
    """The drain plan of host: a step per VM on it, by name."""
    require_admin(actor.user, "drain hosts")
    planned: dict[str, int] = {}
    vms = VirtualMachine.objects.filter(host=host).exclude(state=VMState.MISSING)
    return [_step(vm, host, planned) for vm in vms.order_by("name")]


def running_drain(host: Host) -> Job | None:
    """The drain of host under way, if any."""
    return Job.objects.filter(kind=JobKind.HOST_DRAIN, host=host, state__in=ACTIVE_JOB).first()


def drain_host(host: Host, *, actor: Actor) -> Job:
    """Put host in maintenance and queue the job that migrates its running VMs away."""
    from vms.tasks import host_drain_task  # vms.tasks imports this module

    require_admin(actor.user, "drain hosts")
    with audit.refusals_recorded(actor, "host.drain", host):
        if running_drain(host) is not None:
            raise ConflictError(f"{host.name} is already being drained: see its job.")
        steps = plan(host, actor=actor)
        with transaction.atomic():
            _set_maintenance(host, True, actor)
            moving = sum(1 for s in steps if s.target_host)
            return jobs.queue(
                JobKind.HOST_DRAIN,
                host_drain_task,
                host,
                target=f"host:{host.pk}",
                spec={"host": host.pk, "plan": [asdict(s) for s in steps]},
                actor=actor,
                host=host,
                project=None,
                action="host.drain",
                detail=f"{moving} of {len(steps)} VMs to move",
            )


def _set_maintenance(host: Host, on: bool, actor: Actor) -> None:
    host.maintenance = on
    host.maintenance_since = timezone.now() if on else None
    host.save(update_fields=["maintenance", "maintenance_since"])
    audit.record(actor, "host.maintenance" if on else "host.activate", host)


def activate_host(host: Host, *, actor: Actor) -> Host:
    """End host's maintenance: it takes new VMs again (refused while a drain runs)."""
    require_admin(actor.user, "make hosts active")
    with audit.refusals_recorded(actor, "host.activate", host):
        if not host.maintenance:
            raise ConflictError(f"{host.name} is not in maintenance.")
        if (job := running_drain(host)) is not None:
            raise ConflictError(
                f"{host.name} is being drained (job #{job.pk}): cancel the drain first."
            )
        with transaction.atomic():
            _set_maintenance(host, False, actor)
    return host


def _wait(child: Job) -> Job:
    """child once finished (run here, or by a worker that took it first)."""
    while True:
        child.refresh_from_db()
        if child.state not in ACTIVE_JOB:
            return child
        time.sleep(0.5)


def _migrate_one(job: Job, step: dict[str, Any], actor: Actor) -> tuple[bool, str]:
    """Migrate one VM of the plan as its own migration job: whether it moved, and a log
    line of the outcome."""
    vm = VirtualMachine.objects.select_related("host", "project").filter(pk=step["vm"]).first()
    if vm is None or vm.host_id != job.host_id:
        return True, f"{step['vm_name']}: no longer on this host, skipped"
    ask = migrate.MigrationAsk(
        target_host=step["target_host"],
        target_pool=step["target_pool"],
        copy_storage=step["copy_storage"],
        live=vm.state in MOVING,
    )
    try:
        child = migrate.migrate_vm(vm, ask, actor=actor)
    except ServiceError as exc:
        return False, f"{vm.name}: not moved: {exc.message}"
    jobs.append_log(job.pk, f"{vm.name}: migration job #{child.pk} to {step['target_name']}")
    # Run here unless a worker took it first; either way, wait for its end.
    jobs.run(child.pk, migrate.run_migrate_job)
    child = _wait(child)
    ok = child.state == JobState.SUCCEEDED
    return ok, f"{vm.name}: job #{child.pk} {child.state}: {child.message}"


def run_drain_job(job: Job) -> None:
    """The body of a drain: each running VM of the plan migrated in turn, with progress."""
    host = Host.objects.filter(pk=job.result["host"]).first()
    if host is None:
        raise ServiceError("The host of this drain was removed from the panel.")
    if host.state != HostState.UP:
        raise ServiceError(f"{host.name} is {host.state}: its VMs cannot be migrated now.")
    steps = [s for s in job.result["plan"] if s.get("target_host")]
    stays = [s for s in job.result["plan"] if not s.get("target_host")]
    actor = Actor.of_job(job)
    for s in stays:
        jobs.report(job.pk, log_line=f"{s['vm_name']}: stays ({s['reason']})")
    failed = 0
    for i, step in enumerate(steps):
        jobs.report(
            job.pk,
            progress=1 + 98 * i // len(steps),
            message=f"Migrating {step['vm_name']} ({i + 1} of {len(steps)})",
        )
        moved, line = _migrate_one(job, step, actor)
        failed += 0 if moved else 1
        # Reported after the VM's move: a cancel stops the drain here, before the next.
        jobs.report(job.pk, log_line=line)
    with transaction.atomic():
        audit.record(
            actor, "host.drain", host, detail=f"job #{job.pk}; {len(steps) - failed} moved"
        )
    left = VirtualMachine.objects.filter(host=host, state__in=MOVING).count()
    message = f"{len(steps) - failed} of {len(steps)} VMs moved; {left} still run on {host.name}."
    if failed:
        raise ServiceError(message)
    jobs.report(job.pk, progress=100, message=message)
