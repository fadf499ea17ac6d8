# ruff: noqa: F811  (the local_host fixture imported from the VM tests)
"""A queued job whose task message the job queue lost (Redis restarted without its data,
or was flushed) does not stay queued forever: the periodic pass sends its task again and
the job runs. It tells from the job's own state (queued, no worker took it), not from the
queue's insides, so a job whose message merely waits is sent again too, and still runs
once; each resend doubles the wait before the next.

On the real stack: its worker (held while the queue is tampered with) and Redis, a host
refresh of the real local libvirtd as the job.
"""

from __future__ import annotations

import time

import pytest
from django.conf import settings as django_settings

from panel import jobs, services
from panel.actors import Actor
from panel.celery import app
from panel.choices import JobKind, JobState
from panel.models import Job
from panel.tasks import refresh_host_task, resend_lost_jobs
from tests.stack import worker_holding_jobs
from tests.vms.conftest import local_host  # noqa: F401  (fixture)

pytestmark = [pytest.mark.libvirt, pytest.mark.stack, pytest.mark.timeout(180)]


def queued_messages() -> list[bytes]:
    """The raw messages waiting in the stack's queue."""
    with app.connection_for_read() as connection:
        return connection.default_channel.client.lrange(
            django_settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1
        )


def lose(job: Job) -> None:
    """Drop the job's message from the queue, as a Redis that restarted empty would."""
    with app.connection_for_read() as connection:
        client = connection.default_channel.client
        for raw in client.lrange(django_settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1):
            if job.task_id.encode() in raw:
                assert client.lrem(django_settings.CELERY_TASK_DEFAULT_QUEUE, 0, raw) == 1
                return
    raise AssertionError(f"job #{job.pk}'s message is not in the queue")


def ended(job_id: int, timeout: float = 60) -> Job:
    deadline = time.monotonic() + timeout
    while (job := Job.objects.get(pk=job_id)).state in (JobState.QUEUED, JobState.RUNNING):
        assert time.monotonic() < deadline, (job.state, job.log)
        time.sleep(0.2)
    return job


def test_a_job_whose_task_was_lost_is_sent_again_and_runs(
    stack, transactional_db, local_host, admin_user, settings
):
    with worker_holding_jobs():
        lost = services.refresh_host(local_host, actor=Actor(admin_user))
        # A second job whose message stays (queued the way every job is).
        waiting = jobs.create_job(
            JobKind.HOST_REFRESH,
            target="host:second-look",
            actor=Actor(admin_user),
            host=local_host,
        )
        jobs.enqueue_on_commit(refresh_host_task, waiting.pk)
        lost.refresh_from_db()
        waiting.refresh_from_db()
        assert lost.task == "panel.refresh_host" and lost.task_id
        lose(lost)
        assert not any(lost.task_id.encode() in raw for raw in queued_messages())

        # Too young to call lost: a task may be on its way.
        assert jobs.resend_lost(older_than=3600) == []
        time.sleep(1.1)
        settings.PANEL_LOST_TASK_SECONDS = 1
        assert sorted(resend_lost_jobs()) == [lost.pk, waiting.pk]
        # Sent once: the next resend waits twice as long.
        assert jobs.resend_lost(older_than=1) == []
        assert Job.objects.get(pk=lost.pk).state == JobState.QUEUED
        assert any(Job.objects.get(pk=lost.pk).task_id.encode() in raw for raw in queued_messages())

    for job_id in (lost.pk, waiting.pk):
        job = ended(job_id)
        assert job.state == JobState.SUCCEEDED, job.log
        assert job.log.count("its task was sent again") == 1, job.log
    assert Job.objects.get(pk=lost.pk).message == "Refresh complete."
    # The waiting job's first message was delivered too: it found the job taken and did
    # nothing, so the queue ends empty and the job ran once.
    deadline = time.monotonic() + 30
    while queued_messages():
        assert time.monotonic() < deadline, "messages left in the queue"
        time.sleep(0.2)
    assert Job.objects.get(pk=waiting.pk).state == JobState.SUCCEEDED
