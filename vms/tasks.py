"""Celery tasks of the VM app: thin wrappers that take ids and call services."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import DatabaseError

from panel import hypervisor, jobs
from panel.exceptions import ServiceError

from . import services
from .models import VirtualMachine
from .services import (
    backups,
    create,
    drain,
    failover,
    migrate,
    move_storage,
    schedules,
    snapshots,
)

log = logging.getLogger(__name__)


@shared_task(name="vms.action", soft_time_limit=900, time_limit=960)
def vm_action_task(job_id: int) -> None:
    """A shutdown, reported through its job."""
    jobs.run(job_id, services.run_action_job)


@shared_task(name="vms.save_restore", soft_time_limit=900, time_limit=960)
def vm_save_restore_task(job_id: int) -> None:
    """A managed save or a restore from one: the VM's memory written to or read from disk,
    minutes for a large VM (so on the long queue, apart from shutdowns)."""
    jobs.run(job_id, services.run_action_job)


@shared_task(name="vms.delete", soft_time_limit=900, time_limit=960)
def vm_delete_task(job_id: int) -> None:
    """Undefine a VM and delete the disks chosen for removal."""
    jobs.run(job_id, services.run_delete_job)


@shared_task(name="vms.snapshot", soft_time_limit=3600, time_limit=3660)
def vm_snapshot_task(job_id: int) -> None:
    """Take, revert to or delete a snapshot of a VM."""
    jobs.run(job_id, snapshots.run_snapshot_job)


@shared_task(name="vms.backup", soft_time_limit=6 * 3600, time_limit=6 * 3600 + 60)
def vm_backup_task(job_id: int) -> None:
    """Back up a VM, or restore one from a backup."""
    jobs.run(job_id, backups.run_job)


@shared_task(name="vms.run_backup_schedules", soft_time_limit=300, time_limit=360)
def run_backup_schedules() -> list[str]:
    """Fire the due backup and snapshot schedules (beat runs this every minute)."""
    return schedules.run_schedules()


@shared_task(name="vms.refresh_details", soft_time_limit=60, time_limit=90)
def vm_details_task(vm_id: str) -> None:
    """Read a VM's addresses, agent info and block sizes from its host; the next view of
    its page asks again when this could not be done."""
    try:
        vm = VirtualMachine.objects.select_related("host").filter(pk=vm_id).first()
        if vm is None:
            return
        vm = services.refresh_details(vm)
        if vm.state != "missing":
            snapshots.sync_snapshots(vm)
    except (hypervisor.HypervisorError, ServiceError):
        return  # the page keeps what it had; the host state says why
    except DatabaseError as exc:
        # A passing database error (a deadlock, a lock timeout): only a refresh is lost.
        log.warning("the details of VM %s were not refreshed: %s", vm_id, exc)


@shared_task(name="vms.clone", soft_time_limit=3600, time_limit=3660)
def vm_clone_task(job_id: int) -> None:
    """Clone a VM (full copy or linked overlay of its disks)."""
    jobs.run(job_id, services.run_clone_job)


@shared_task(name="vms.create", soft_time_limit=6 * 3600, time_limit=6 * 3600 + 60)
def vm_create_task(job_id: int) -> None:
    """Create a VM: disks, install media, define, start, first boot."""
    jobs.run(job_id, create.run_create_job)


@shared_task(name="vms.migrate", soft_time_limit=6 * 3600, time_limit=6 * 3600 + 60)
def vm_migrate_task(job_id: int) -> None:
    """Migrate a VM to another host, with progress and cancel."""
    jobs.run(job_id, migrate.run_migrate_job)


@shared_task(name="vms.drain", soft_time_limit=24 * 3600, time_limit=24 * 3600 + 60)
def host_drain_task(job_id: int) -> None:
    """Drain a host: its running VMs migrated one after the other, with progress and cancel."""
    jobs.run(job_id, drain.run_drain_job)


@shared_task(name="vms.move_storage", soft_time_limit=6 * 3600, time_limit=6 * 3600 + 60)
def vm_move_storage_task(job_id: int) -> None:
    """Move a VM's disk to another pool of its host."""
    jobs.run(job_id, move_storage.run_move_job)


@shared_task(name="vms.ha_restart", soft_time_limit=600, time_limit=660)
def ha_restart_task(job_id: int) -> None:
    """Restart an HA VM of a lost host on another host."""
    jobs.run(job_id, failover.restart_job)
