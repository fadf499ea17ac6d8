"""Celery tasks of the VM app: thin wrappers that take ids and call services."""

from __future__ import annotations

from celery import shared_task

from panel import jobs

from . import services
from .models import VirtualMachine


@shared_task(name="vms.action", soft_time_limit=900, time_limit=960)
def vm_action_task(job_id: int) -> None:
    """A shutdown, save or restore, reported through its job."""
    with jobs.running(job_id) as job:
        if job is not None:
            services.run_action_job(job)


@shared_task(name="vms.delete", soft_time_limit=900, time_limit=960)
def vm_delete_task(job_id: int) -> None:
    """Undefine a VM and delete the disks chosen for removal."""
    with jobs.running(job_id) as job:
        if job is not None:
            services.run_delete_job(job)


@shared_task(name="vms.refresh_details", soft_time_limit=60, time_limit=90)
def vm_details_task(vm_id: str) -> None:
    """Read a VM's addresses, agent info and block sizes from its host."""
    from panel import hypervisor

    vm = VirtualMachine.objects.select_related("host").filter(pk=vm_id).first()
    if vm is None:
        return
    try:
        services.refresh_details(vm)
    except hypervisor.HypervisorError:
        return  # the page keeps what it had; the host state says why


@shared_task(name="vms.clone", soft_time_limit=3600, time_limit=3660)
def vm_clone_task(job_id: int) -> None:
    """Clone a VM (full copy or linked overlay of its disks)."""
    with jobs.running(job_id) as job:
        if job is not None:
            services.run_clone_job(job)
