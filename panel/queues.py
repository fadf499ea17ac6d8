"""The two job queues, and which task goes to which.

Quick work (a host refresh, a VM shutdown or delete, the beat's periodic passes) goes to
the configured queue (`PANEL_CELERY_QUEUE`); work that can run for minutes (installs,
clones, migrations, disk moves, backups and restores, snapshots, memory saves, volume
copies and wipes) goes to `<queue>.long`. Each queue has its own workers, so long jobs
filling every slot of theirs never delay quick ones.

Celery sends every task through `route` (`CELERY_TASK_ROUTES`), including the beat's and a
task sent again by name. Every task of the project is named below; a test checks it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

QUICK_TASKS = frozenset(
    {
        "panel.refresh_host",
        "panel.reconcile_host",
        "panel.reconcile_all_hosts",
        "panel.resend_lost_jobs",
        "panel.deliver_notification",  # an email or a webhook call, 10 s at most
        "panel.summarize_notifications",
        "panel.sync_ldap_directory",  # one search per directory user
        "panel.end_expired_sessions",
        "vms.action",  # a shutdown: waits at most its timeout for the guest
        "vms.delete",
        "vms.ha_restart",  # define and boot one VM from its kept definition
        "vms.refresh_details",
        "vms.run_backup_schedules",  # only queues the backups, which are long
    }
)
LONG_TASKS = frozenset(
    {
        "vms.create",
        "vms.clone",
        "vms.migrate",
        "vms.drain",  # one migration after the other
        "vms.move_storage",
        "vms.backup",  # and restore
        "vms.snapshot",  # with memory, revert, delete, chain merge
        "vms.save_restore",  # the VM's memory written to or read from disk
        "storage.volume_job",  # full preallocation, clone, conversion, wipe
        "storage.library_fetch",  # an image downloaded into the library
    }
)


def quick_queue() -> str:
    """The queue of quick work: the configured one."""
    return settings.CELERY_TASK_DEFAULT_QUEUE


def long_queue() -> str:
    """The queue of work that can run for minutes."""
    return settings.PANEL_LONG_QUEUE


def queue_for(task_name: str) -> str:
    """The queue a task is sent to (Celery's own tasks: the quick one)."""
    return long_queue() if task_name in LONG_TASKS else quick_queue()


def route(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> dict:
    """Celery's router: every task to its queue."""
    return {"queue": queue_for(name)}
