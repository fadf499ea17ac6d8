"""Jobs: creating them, and the one helper every task reports progress through.

A task wraps its work in `running(job_id)`; inside, `report()` moves the
progress bar, sets the message and appends log lines. Each change is saved
and pushed to the browsers watching `job-<id>`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import kombu.exceptions
from celery import current_task
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from . import audit, events, locks, registry
from .actors import Actor
from .celery import app
from .choices import JobState
from .exceptions import ServiceError, UnavailableError
from .models import Host, Job, Project
from .notifications import facts

log = logging.getLogger(__name__)

# Targets that take one job at a time (see panel.locks).
SERIALISED_TARGETS = ("vm:", "volume:")


class JobCancelled(Exception):
    """Raised inside a task when its job was asked to stop."""


def serialize(job: Job) -> dict[str, Any]:
    """The job as the API and the websocket show it."""
    return {
        "id": job.pk,
        "kind": job.kind,
        "kind_display": job.get_kind_display(),
        "state": job.state,
        "progress": job.progress,
        "message": job.message,
        "log": job.log,
        "target": job.target,
        "host": job.host_id,
        "created": job.created.isoformat() if job.created else None,
        "started": job.started.isoformat() if job.started else None,
        "finished": job.finished.isoformat() if job.finished else None,
        "user": job.user.username if job.user_id and job.user else None,
        "result": job.result,
    }


def create_job(
    kind: str,
    *,
    target: str,
    actor: Actor,
    host: Host | None = None,
    project: Project | None = None,
    label: str | None = None,
) -> Job:
    """A queued job; call inside the service's transaction, enqueue its task on commit.

    A VM or volume takes one job at a time: ConflictError (409) names the one it has."""
    user = actor.person

    def insert() -> Job:
        return Job.objects.create(kind=kind, target=target, user=user, host=host, project=project)

    if target.startswith(SERIALISED_TARGETS):
        return locks.create_serialised(target, label or target, insert)
    return insert()


def queue(
    kind: str,
    task: Any,
    target_object: Any,
    *,
    target: str,
    spec: dict[str, Any],
    actor: Actor,
    host: Host | None,
    project: Project | None,
    action: str,
    detail: str = "",
    secrets: dict[str, Any] | None = None,
) -> Job:
    """A job carrying spec as its result, audited against target_object, its task sent on
    commit; call inside the service's transaction.

    secrets: what the task needs that no reader of the job may see (user-data,
    kickstarts): kept apart from the result, never serialized, emptied when the job ends;
    the task reads them with secrets_of() and drops them with forget_secrets() once used."""
    job = create_job(
        kind, target=target, actor=actor, host=host, project=project, label=str(target_object)
    )
    job.result = spec
    job.secrets = secrets or {}
    job.save(update_fields=["result", "secrets"])
    audit.record(
        actor,
        action,
        target_object,
        project=project,
        detail=f"job #{job.pk}" + (f"; {detail}" if detail else ""),
    )
    enqueue_on_commit(task, job.pk)
    return job


BROKER_DOWN = (
    "Could not hand the job to a worker: the job queue (Redis) cannot be reached. "
    "Try again once it runs."
)


def secrets_of(job_id: int) -> dict[str, Any]:
    """The secrets a job's task was given (empty once forgotten or the job ended)."""
    return Job.objects.filter(pk=job_id).values_list("secrets", flat=True).first() or {}


def forget_secrets(job_id: int) -> None:
    """Drop a job's secrets once its task has used them."""
    Job.objects.filter(pk=job_id).update(secrets={})


def enqueue_on_commit(task: Any, job_id: int) -> None:
    """Send the job's task once the transaction commits. When the broker cannot be
    reached, the job ends failed and the caller gets a 503 saying why."""
    task_id = str(uuid.uuid4())
    Job.objects.filter(pk=job_id).update(task=task.name, task_id=task_id)
    transaction.on_commit(functools.partial(_Sender(task, task_id).delay, job_id))


class _Sender:
    """Sends one task message under a given id (named like the task, as a delay_on_commit
    callback would be)."""

    def __init__(self, task: Any, task_id: str) -> None:
        self.task = task
        self.name = task.name
        self.task_id = task_id

    def delay(self, job_id: int) -> None:
        try:
            self.task.apply_async(args=[job_id], task_id=self.task_id)
        except kombu.exceptions.OperationalError as exc:
            log.warning("job %s: could not be queued: %s", job_id, exc)
            fail(job_id, BROKER_DOWN)
            raise UnavailableError(BROKER_DOWN) from exc


def resend_lost(older_than: float) -> list[int]:
    """Queued jobs that no worker took within older_than seconds of their task being sent
    get it sent again; their ids.

    The job's own state tells: a task message may have been lost (Redis restarted
    without its data, or was flushed), or may wait behind others. Either way sending it
    again is safe, since running() starts a job once and a second message finds it taken.
    Each resend doubles the wait before the next, so a long queue is not flooded."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=older_than)
    waiting = (
        Job.objects.filter(state=JobState.QUEUED, created__lt=cutoff)
        .exclude(task="")
        .exclude(task_id="")
        .values_list("pk", "task", "task_id", "created", "result")
    )
    sent = []
    for job_id, task, task_id, created, result in waiting:
        result = result if isinstance(result, dict) else {}
        resends = int(result.get("resends", 0))
        last_sent = _parse_time(result.get("resent_at")) or created
        if now - last_sent < timedelta(seconds=older_than * 2**resends):
            continue
        new_id = str(uuid.uuid4())
        marked = {**result, "resends": resends + 1, "resent_at": now.isoformat()}
        # Conditional on the message id read: a worker that took the job meanwhile, or a
        # second pass running at the same time, leaves nothing to do.
        if not Job.objects.filter(pk=job_id, state=JobState.QUEUED, task_id=task_id).update(
            task_id=new_id, result=marked
        ):
            continue
        app.send_task(task, args=[job_id], task_id=new_id)
        append_log(job_id, "no worker had taken this job yet: its task was sent again")
        sent.append(job_id)
    if sent:
        log.warning("sent the tasks of job(s) %s again: no worker had taken them", sent)
    return sent


def _parse_time(value: Any) -> Any:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _publish(job_id: int) -> None:
    job = Job.objects.select_related("user").filter(pk=job_id).first()
    if job is not None:
        events.publish(events.job_group(job_id), {"type": "job.update", "job": serialize(job)})


def report(
    job_id: int,
    *,
    progress: int | None = None,
    message: str | None = None,
    log_line: str | None = None,
) -> None:
    """Record progress (0-100), a status message and/or one log line, and push it."""
    changes: dict[str, Any] = {}
    if progress is not None:
        changes["progress"] = max(0, min(100, int(progress)))
    if message is not None:
        changes["message"] = message[:500]
    if log_line is not None:
        stamp = timezone.now().strftime("%H:%M:%S")
        changes["log"] = Concat(F("log"), Value(f"{stamp} {log_line}\n"))
        log.info("job %s: %s", job_id, log_line)
    if changes:
        Job.objects.filter(pk=job_id).update(**changes)
        _publish(job_id)
    if Job.objects.filter(pk=job_id, cancel_requested=True).exists():
        raise JobCancelled()


def run(job_id: int, body: Callable[[Job], None]) -> None:
    """A job task's whole work: body(job) inside running(job_id), skipped when the job was
    already taken or finished (a task delivered twice)."""
    with running(job_id) as job:
        if job is not None:
            body(job)


MADE = "made_volumes"  # the result key of what a job made, for the undo after a dead worker


def recorder(job_id: int, key: str = MADE) -> Callable[..., None]:
    """A callback that adds what it is told (its arguments, as one list) to the list under
    key in the job's result, written at once: what a job is about to make on a host, known
    to whoever cleans up should its worker die before it finishes."""
    made: list[list[Any]] = []

    def record(*what: Any) -> None:
        made.append(list(what))
        current = Job.objects.get(pk=job_id).result or {}
        Job.objects.filter(pk=job_id).update(result={**current, key: made})

    return record


def append_log(job_id: int, line: str) -> None:
    """One log line, without report()'s cancel check (for work that can no longer be
    undone, and for cleaning up after a job from outside its task)."""
    stamp = timezone.now().strftime("%H:%M:%S")
    Job.objects.filter(pk=job_id).update(log=Concat(F("log"), Value(f"{stamp} {line}\n")))
    log.info("job %s: %s", job_id, line)
    _publish(job_id)


def _finish(job_id: int, state: str, message: str, log_line: str | None = None) -> None:
    # A finished job runs no more: whatever secrets it still held go with it.
    changes: dict[str, Any] = {
        "state": state,
        "finished": timezone.now(),
        "message": message[:500],
        "secrets": {},
    }
    if state == JobState.SUCCEEDED:
        changes["progress"] = 100
    if log_line:
        stamp = timezone.now().strftime("%H:%M:%S")
        changes["log"] = Concat(F("log"), Value(f"{stamp} {log_line}\n"))
    Job.objects.filter(pk=job_id).update(**changes)
    _publish(job_id)
    if state == JobState.FAILED:
        facts.job_failed(job_id)


def current_worker() -> str:
    """The Celery worker's name (``celery@host``) running the current task, or "inline"."""
    request = getattr(current_task, "request", None)
    return getattr(request, "hostname", None) or "inline"


WORKER_STOPPED = "The worker running this job stopped"


def fail_abandoned(worker: str) -> int:
    """Jobs this worker was running when it died: undone and marked failed; their number.

    A worker keeps its name across restarts and no two live workers share one, so when a
    worker starts, every job still running under its name was left by its previous life.
    """
    count = 0
    for job in Job.objects.filter(state=JobState.RUNNING, result__worker=worker):
        undo = registry.undo_abandoned.get(job.kind)
        try:
            done = undo(job) if undo else "check the object it worked on"
        except Exception as exc:
            log.exception("job %s: undo after its worker stopped failed", job.pk)
            done = f"undoing it failed ({exc}): check the object it worked on"
        fail(job.pk, f"{WORKER_STOPPED}; {done}.")
        count += 1
    return count


def running_workers() -> set[str]:
    """Names of the workers that jobs still running say they run on."""
    names = Job.objects.filter(state=JobState.RUNNING).values_list("result__worker", flat=True)
    return {n for n in names if isinstance(n, str) and n and n != "inline"}


def fail(job_id: int, message: str) -> None:
    """End a job as failed from outside its task (its worker is gone)."""
    _finish(job_id, JobState.FAILED, message, f"failed: {message}")


@contextlib.contextmanager
def running(job_id: int) -> Iterator[Job | None]:
    """Mark the job running for the block; succeeded, failed or cancelled after it.

    Yields None (and does nothing) when the job is gone or already finished,
    so a task delivered twice does the work once.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.state != JobState.QUEUED:
            job = None
        else:
            job.state = JobState.RUNNING
            job.started = timezone.now()
            # Which worker runs it: if that worker dies, its next start cleans up.
            job.result = {**(job.result or {}), "worker": current_worker()}
            job.save(update_fields=["state", "started", "result"])
    if job is None:
        yield None
        return
    _publish(job_id)
    try:
        yield job
    except JobCancelled:
        _finish(job_id, JobState.CANCELLED, "Cancelled.", "cancelled on request")
    except ServiceError as exc:
        # An expected failure: the message tells the user what went wrong.
        log.warning("job %s failed: %s", job_id, exc.message)
        _finish(job_id, JobState.FAILED, exc.message, f"failed: {exc.message}")
    except Exception as exc:
        log.exception("job %s failed", job_id)
        _finish(job_id, JobState.FAILED, str(exc) or exc.__class__.__name__, f"failed: {exc}")
        raise
    else:
        job.refresh_from_db(fields=["message"])
        _finish(job_id, JobState.SUCCEEDED, job.message or "Done.")
