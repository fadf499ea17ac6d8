"""Celery tasks of the storage app: thin wrappers that take ids and call services."""

from __future__ import annotations

from celery import shared_task

from panel import jobs

from . import services


@shared_task(name="storage.volume_job", soft_time_limit=6 * 3600, time_limit=6 * 3600 + 60)
def volume_job_task(job_id: int) -> None:
    """A full-preallocation create, a clone, a conversion or a wipe."""
    jobs.run(job_id, services.run_volume_job)


@shared_task(name="storage.library_fetch", soft_time_limit=6 * 3600, time_limit=6 * 3600 + 60)
def library_fetch_task(job_id: int) -> None:
    """An image fetched into the library from its URL."""
    jobs.run(job_id, services.run_library_fetch)
