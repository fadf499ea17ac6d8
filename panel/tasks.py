"""Celery tasks of the panel: thin wrappers that take ids and call services."""

from __future__ import annotations

import logging
import threading
import time

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import close_old_connections

from . import hypervisor, jobs, services
from .celery import app
from .exceptions import GoneError
from .identity import ldap as directory_ldap
from .identity import sessions
from .models import Host, Job
from .notifications import core as notify_core
from .notifications import delivery, throttle

log = logging.getLogger(__name__)

PING_SECONDS = 3.0


@shared_task(name="panel.refresh_host", soft_time_limit=300, time_limit=360)
def refresh_host_task(job_id: int) -> None:
    """Full reconcile of one host, reported through its job."""
    job = Job.objects.select_related("host").filter(pk=job_id).first()
    if job is None:
        return
    with jobs.running(job_id) as running:
        if running is None:
            return
        if job.host is None:
            raise services.ServiceError("The host of this job was removed.")
        try:
            counts = services.reconcile_host(job.host, job_id=job_id)
        except hypervisor.HostUnavailable as exc:
            raise services.ServiceError(f"{job.host.name} is down: {exc}") from exc
        Job.objects.filter(pk=job_id).update(result=counts, message="Refresh complete.")


@shared_task(name="panel.reconcile_host", soft_time_limit=300, time_limit=360)
def reconcile_host_task(host_id: int) -> None:
    """Catch one host's inventory up (no host check), e.g. when it comes back."""
    host = Host.objects.filter(pk=host_id).first()
    if host is None:
        return
    try:
        services.reconcile_host(host, checks=False)
    except hypervisor.HypervisorError as exc:
        log.warning("reconcile of %s failed: %s", host.name, exc)
    except GoneError:
        pass  # removed meanwhile: nothing to catch up


@shared_task(name="panel.reconcile_all_hosts", soft_time_limit=600, time_limit=660)
def reconcile_all_hosts() -> None:
    """The periodic pass that catches anything the event watcher missed."""
    for host in Host.objects.all():
        try:
            services.reconcile_host(host, checks=False)
        except hypervisor.HypervisorError as exc:
            log.warning("reconcile of %s failed: %s", host.name, exc)
        except GoneError:
            pass  # removed meanwhile: nothing to catch up


@shared_task(name="panel.sync_ldap_directory", soft_time_limit=600, time_limit=660)
def sync_ldap_directory() -> dict[str, int]:
    """The periodic pass over the directory's users (PANEL_LDAP_SYNC_SECONDS)."""
    return directory_ldap.sync_directory()


@shared_task(name="panel.resend_lost_jobs", soft_time_limit=60, time_limit=90)
def resend_lost_jobs() -> list[int]:
    """The periodic pass that sends again the tasks of queued jobs no worker took, and
    of email and webhook deliveries."""
    delivery.resend_lost(settings.PANEL_LOST_TASK_SECONDS)
    return jobs.resend_lost(settings.PANEL_LOST_TASK_SECONDS)


@shared_task(name="panel.end_expired_sessions", soft_time_limit=60, time_limit=90)
def end_expired_sessions() -> int:
    """The periodic pass that ends the login sessions past their idle or absolute limit."""
    return sessions.purge_expired()


@shared_task(name="panel.deliver_notification", soft_time_limit=60, time_limit=90)
def deliver_notification_task(delivery_id: int) -> None:
    """One attempt at an email or webhook delivery; a failure is sent again later."""
    wait = delivery.attempt(delivery_id)
    if wait is not None:
        notify_core.queue_delivery(delivery_id, countdown=wait)


@shared_task(name="panel.summarize_notifications", soft_time_limit=60, time_limit=90)
def summarize_notifications_task(kind: str, target: str) -> int:
    """The summary of the repeats held back in a throttle window that ended."""
    return len(throttle.summarize(kind, target))


def _silent(names: set[str]) -> set[str]:
    """Which of these workers do not answer a ping (prefork workers answer while busy)."""
    replies = app.control.ping(destination=sorted(names), timeout=PING_SECONDS) or []
    alive = {name for reply in replies for name in reply}
    return names - alive


def fail_jobs_of_dead_workers(me: str) -> int:
    """When worker `me` starts: fail and undo the jobs its previous run left running, then
    those of any other worker that misses two pings in a row (gone for good: scaled down,
    or its container recreated under a new name)."""
    count = jobs.fail_abandoned(me)
    others = jobs.running_workers() - {me}
    if others and (missing := _silent(others)):
        time.sleep(settings.PANEL_WORKER_RECHECK_SECONDS)
        for name in _silent(missing):
            count += jobs.fail_abandoned(name)
    return count


@worker_ready.connect
def _fail_abandoned_jobs(sender, **_kwargs) -> None:
    """A starting worker cleans up after dead ones (see fail_jobs_of_dead_workers).

    In a thread: the undo may wait for libvirt to finish writing a volume, and the worker
    takes new tasks meanwhile."""
    hostname = getattr(sender, "hostname", None)
    if not hostname:
        return

    def run() -> None:
        try:
            count = fail_jobs_of_dead_workers(hostname)
            if count:
                log.warning("%s: failed %d job(s) left running by dead workers", hostname, count)
        except Exception:
            log.exception("%s: cleaning up jobs left running failed", hostname)
        finally:
            close_old_connections()

    threading.Thread(target=run, name="abandoned-jobs", daemon=True).start()
