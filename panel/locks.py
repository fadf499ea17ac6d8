"""Per-target serialisation: one action or job at a time on a VM (or volume).

Jobs are serialised by the database itself (a unique constraint on the active job of a
target). Quick actions done inside the request (start, force off, ...) hold an
`ActionLock` row while they talk to the host; a job is queued only when no such row
exists, and a quick action starts only when no job is active. Both checks are made
after a write that the other side's write conflicts with, so two requests cannot both
pass, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from .choices import JobState
from .exceptions import ConflictError
from .models import ActionLock, Job

log = logging.getLogger(__name__)

# A claim older than this was left by a web process that died mid-action.
STALE_AFTER = timedelta(minutes=10)
ACTIVE = (JobState.QUEUED, JobState.RUNNING)


def active_job(target: str) -> Job | None:
    """The queued or running job on target, if any."""
    return Job.objects.filter(target=target, state__in=ACTIVE).first()


def _busy_message(label: str, what: str) -> str:
    return f"{label} is busy: {what} is in progress. Wait for it to finish, then try again."


def _job_busy_message(label: str, job: Job) -> str:
    return _busy_message(label, f"job #{job.pk} ({job.get_kind_display()})")


def refuse_if_busy(target: str, label: str) -> None:
    """ConflictError (409) naming target's queued or running job, if it has one: the early
    refusal before any work; create_serialised and hold are what serialise for certain."""
    if (job := active_job(target)) is not None:
        raise ConflictError(_job_busy_message(label, job))


def _drop_stale(target: str) -> None:
    ActionLock.objects.filter(target=target, since__lt=timezone.now() - STALE_AFTER).delete()


@contextlib.contextmanager
def hold(target: str, *, label: str, what: str, jobs_too: bool = True) -> Iterator[None]:
    """Run the block as the only quick action on target; ConflictError (409) if another
    action (or, with jobs_too, an active job) has it. Call outside any transaction: the
    claim must be visible to other requests."""
    _drop_stale(target)
    try:
        with transaction.atomic():
            ActionLock.objects.create(target=target, what=what)
    except IntegrityError:
        holder = ActionLock.objects.filter(target=target).first()
        raise ConflictError(
            _busy_message(label, holder.what if holder else "another action")
        ) from None
    try:
        if jobs_too and (job := active_job(target)) is not None:
            raise ConflictError(_job_busy_message(label, job))
        yield
    finally:
        ActionLock.objects.filter(target=target, what=what).delete()


def create_serialised(target: str, label: str, create: object) -> Job:
    """create() (a Job insert) when target has no quick action running and no active job;
    ConflictError (409) naming what holds it otherwise. Call inside the service's transaction.
    """
    _drop_stale(target)
    try:
        with transaction.atomic():
            # Taking and dropping the claim inside this transaction makes a concurrent
            # quick action wait for (PostgreSQL) or follow (SQLite) our commit, and then
            # see the job; a claim already held makes this insert fail.
            ActionLock.objects.create(target=target, what="queueing a job")
            ActionLock.objects.filter(target=target, what="queueing a job").delete()
            if (job := active_job(target)) is not None:
                raise ConflictError(_job_busy_message(label, job))
            return create()  # type: ignore[operator]
    except IntegrityError:
        if (job := active_job(target)) is not None:
            raise ConflictError(_job_busy_message(label, job)) from None
        holder = ActionLock.objects.filter(target=target).first()
        raise ConflictError(
            _busy_message(label, holder.what if holder else "another action")
        ) from None
