"""Restarting the HA VMs of a lost host on other hosts (see vms.services.ha).

A host is lost when its agent has fenced it (the HA monitor declares it) or when an
administrator confirmed it is off (manual fencing). Each HA VM that ran there becomes a
job: the target is the host placement picks among those that see all its disks
(affinity groups and maintenance kept), the VM is defined there from the definition the
panel kept and booted; the lock manager refuses the boot if another host still runs
its disk. Audited, with a notification to those who may see the VM.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from panel import audit, hypervisor, jobs
from panel.actors import Actor
from panel.choices import HostFencing, JobKind, NotificationKind
from panel.exceptions import ConflictError, ServiceError
from panel.models import Host, Job
from panel.notifications.core import Event, emit
from panel.permissions import require_admin
from vms.choices import VMState
from vms.models import VirtualMachine
from vms.services import ha, placement
from vms.services.sync import sync_domain

log = logging.getLogger(__name__)

RESTARTED = (VMState.RUNNING, VMState.PAUSED, VMState.CRASHED)


def target_for(vm: VirtualMachine) -> Host:
    """The host vm restarts on: placement among the other hosts that see its disks."""
    others = Host.objects.exclude(pk=vm.host_id).annotate(
        vm_count=Count("vms", filter=~Q(vms__state=VMState.MISSING))
    )
    seeing = ha.hosts_seeing_disks(vm, others)
    need = placement.Need(
        memory_mib=vm.memory_mib,
        vcpus=vm.vcpus,
        groups=tuple(vm.affinity_groups.all()),
        vm=str(vm.pk),
        exclude=frozenset({vm.host_id}),
    )
    chosen = placement.place(None, need, hosts=seeing).host
    if chosen is None:
        why = placement.place(None, need, hosts=list(others)).refusal()
        raise ConflictError(f"{vm.name} cannot restart anywhere: {why}")
    return chosen


def restart_job(job: Job) -> None:
    """The job's VM defined and booted on the host placement picks."""
    vm = VirtualMachine.objects.select_related("host", "project").get(pk=job.result["vm"])
    lost = vm.host
    jobs.report(job.pk, progress=10, log_line=f"{lost.name} is lost: {job.result['why']}")
    target = target_for(vm)
    jobs.report(job.pk, progress=30, log_line=f"restarting {vm.name} on {target.name}")
    try:
        info = hypervisor.start_from_definition(target.uri, vm.ha_definition)
    except hypervisor.HypervisorError as exc:
        raise ServiceError(f"{target.name} could not start {vm.name}: {exc}") from exc
    with transaction.atomic():
        vm = sync_domain(target, info)
        audit.record(
            Actor.of_job(job),
            "vm.ha_restart",
            vm,
            detail=f"from {lost.name} to {target.name}; job #{job.pk}",
        )
    jobs.report(job.pk, progress=100, log_line=f"{vm.name} runs on {target.name}")
    emit(
        Event(
            NotificationKind.HA_RESTART,
            title=f"HA restarted {vm.name} on {target.name}",
            body=f"Its host {lost.name} was lost ({job.result['why']}).",
            target=f"vm:{vm.pk}",
            about=vm,
            project=vm.project,
            link=reverse("vm_detail", args=[vm.pk]),
        )
    )


def fail_over(host: Host, *, actor: Actor, why: str, inline: bool = False) -> list[int]:
    """A restart job for each HA VM that ran on the lost host; run here with inline
    (the HA monitor, which must not wait on the job queue), else queued to a worker."""
    from vms.tasks import ha_restart_task  # vms.tasks imports the services

    made: list[Job] = []
    with transaction.atomic():
        host.fenced_at = timezone.now()
        host.save(update_fields=["fenced_at"])
        vms = VirtualMachine.objects.filter(host=host, ha=True, state__in=RESTARTED).exclude(
            ha_definition=""
        )
        for vm in vms.select_related("project"):
            job = jobs.create_job(
                JobKind.VM_HA_RESTART,
                target=f"vm:{vm.pk}",
                actor=actor,
                host=host,
                project=vm.project,
                label=vm.name,
            )
            job.result = {"vm": str(vm.pk), "vm_name": vm.name, "why": why}
            job.save(update_fields=["result"])
            audit.record(actor, "vm.ha_restart", vm, detail=f"job #{job.pk}; {why}")
            if not inline:
                jobs.enqueue_on_commit(ha_restart_task, job.pk)
            made.append(job)
    if inline:
        for job in made:
            jobs.run(job.pk, restart_job)
    return [job.pk for job in made]


def confirm_host_off(host: Host, *, actor: Actor) -> list[int]:
    """An administrator's word that host is off (manual fencing): its HA VMs are restarted
    on other hosts, each as a job. Refused while the panel still reaches the host."""
    require_admin(actor.user, "confirm that a host is off")
    with audit.refusals_recorded(actor, "host.confirm_off", host):
        if host.fencing != HostFencing.MANUAL:
            raise ConflictError(
                f"{host.name} is not fenced manually: choose manual fencing on its page first."
            )
        if host.ha_reached_at is not None:
            ago = int((timezone.now() - host.ha_reached_at).total_seconds())
            if ago < ha.lost_seconds():
                raise ConflictError(
                    f"The panel reached {host.name} {ago} s ago: it is not off. Power it "
                    f"off, wait until it has been unreachable for {ha.lost_seconds()} s, "
                    "then confirm."
                )
        audit.record(actor, "host.confirm_off", host)
    return fail_over(host, actor=actor, why=f"{actor.username} confirmed it is off")
