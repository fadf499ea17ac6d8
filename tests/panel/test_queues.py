# ruff: noqa: F811  (fixtures imported from the create tests)
"""Quick work never waits behind long work: every task goes to the quick queue or the
long one (each with its own workers), and on the running stack a host refresh queued
while long jobs hold every slot of the long worker finishes within seconds."""

from __future__ import annotations

import json
import time

import pytest
from django.conf import settings

from panel import queues
from panel.celery import app
from panel.choices import JobKind
from panel.models import Host, Job
from tests.create.conftest import (  # noqa: F401  (fixtures)
    GUEST_DIR,
    created,
    dir_pool,
    local_host,
    pool_dir,
    project,
)

# What runs each kind of job, as the services queue them (None: not a Celery task).
JOB_TASKS = {
    JobKind.HOST_REFRESH: "panel.refresh_host",
    JobKind.VM_SHUTDOWN: "vms.action",
    JobKind.VM_SAVE: "vms.save_restore",
    JobKind.VM_RESTORE: "vms.save_restore",
    JobKind.VM_DELETE: "vms.delete",
    JobKind.VM_CLONE: "vms.clone",
    JobKind.VM_CREATE: "vms.create",
    JobKind.VM_SNAPSHOT_CREATE: "vms.snapshot",
    JobKind.VM_SNAPSHOT_REVERT: "vms.snapshot",
    JobKind.VM_SNAPSHOT_DELETE: "vms.snapshot",
    JobKind.VM_SNAPSHOT_MERGE: "vms.snapshot",
    JobKind.VM_BACKUP: "vms.backup",
    JobKind.VM_BACKUP_RESTORE: "vms.backup",
    JobKind.VOLUME_CREATE: "storage.volume_job",
    JobKind.VOLUME_CLONE: "storage.volume_job",
    JobKind.VOLUME_CONVERT: "storage.volume_job",
    JobKind.VOLUME_WIPE: "storage.volume_job",
    JobKind.VOLUME_UPLOAD: None,  # streamed by the web server's websocket, not a worker
    JobKind.LIBRARY_FETCH: "storage.library_fetch",
    JobKind.VM_MIGRATE: "vms.migrate",
    JobKind.VM_MOVE_STORAGE: "vms.move_storage",
    JobKind.HOST_DRAIN: "vms.drain",
    # After an admin confirmed a host off; the HA monitor runs its own inline.
    JobKind.VM_HA_RESTART: "vms.ha_restart",
}
# The kinds that can run for minutes: they copy disks or memory, or wait on a guest's
# install.
LONG_KINDS = {
    JobKind.HOST_DRAIN,
    JobKind.LIBRARY_FETCH,
    JobKind.VM_SAVE,
    JobKind.VM_RESTORE,
    JobKind.VM_CLONE,
    JobKind.VM_CREATE,
    JobKind.VM_SNAPSHOT_CREATE,
    JobKind.VM_SNAPSHOT_REVERT,
    JobKind.VM_SNAPSHOT_DELETE,
    JobKind.VM_SNAPSHOT_MERGE,
    JobKind.VM_BACKUP,
    JobKind.VM_BACKUP_RESTORE,
    JobKind.VOLUME_CREATE,
    JobKind.VOLUME_CLONE,
    JobKind.VOLUME_CONVERT,
    JobKind.VOLUME_WIPE,
    JobKind.VM_MIGRATE,
    JobKind.VM_MOVE_STORAGE,
}


def project_tasks() -> set[str]:
    """The names of every Celery task the project registers (Celery's own left out)."""
    app.loader.import_default_modules()
    return {name for name in app.tasks if not name.startswith("celery.")}


def routed_queue(name: str) -> str:
    """The queue Celery puts a message of this task in, by the configured routes."""
    return app.amqp.router.route({}, name)["queue"].name


def test_every_task_of_the_project_is_routed_to_one_queue():
    tasks = project_tasks()

    assert queues.QUICK_TASKS.isdisjoint(queues.LONG_TASKS)
    assert tasks - queues.QUICK_TASKS - queues.LONG_TASKS == set(), "tasks without a queue"
    assert (queues.QUICK_TASKS | queues.LONG_TASKS) - tasks == set(), "queues name no task"
    for name in tasks:
        assert routed_queue(name) == queues.queue_for(name), name
    assert {routed_queue(name) for name in tasks} == {
        settings.CELERY_TASK_DEFAULT_QUEUE,
        f"{settings.CELERY_TASK_DEFAULT_QUEUE}.long",
    }


def test_the_long_queue_takes_the_tasks_that_can_run_for_minutes():
    assert queues.LONG_TASKS == {
        "vms.create",
        "vms.clone",
        "vms.migrate",
        "vms.drain",
        "vms.move_storage",
        "vms.backup",
        "vms.snapshot",
        "vms.save_restore",
        "storage.volume_job",
        "storage.library_fetch",
    }
    # Beat's periodic passes are quick.
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert routed_queue(entry["task"]) == settings.CELERY_TASK_DEFAULT_QUEUE, entry


def test_every_kind_of_job_lands_in_exactly_one_queue():
    assert set(JOB_TASKS) == set(JobKind)
    tasks = project_tasks()
    for kind, task in JOB_TASKS.items():
        if task is None:
            continue
        assert task in tasks, (kind, task)
        expected = settings.PANEL_LONG_QUEUE if kind in LONG_KINDS else queues.quick_queue()
        assert routed_queue(task) == expected, kind


# --- on the running stack ----------------------------------------------------------------

QUICK_SECONDS = 10


def create_body(project, pool, name: str) -> dict:
    """The tiny guest, created and started, with its kernel writing to the graphical
    console only: the create waits its full minute for output on the serial console,
    as it does for an OS that does not use it."""
    return {
        "name": name,
        "project": project.pk,
        "vcpus": 1,
        "memory_mib": 96,
        "os_variant": "generic",
        "disks": [{"pool": pool.pk, "size_gib": 0.05, "format": "qcow2"}],
        "networks": [],
        "install": {
            "method": "kernel",
            "kernel": f"{GUEST_DIR}/vmlinuz",
            "initrd": f"{GUEST_DIR}/initrd.img",
            "cmdline": "console=tty0",
        },
        "start": True,
    }


def wait_until(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return result


@pytest.mark.libvirt
@pytest.mark.stack
@pytest.mark.timeout(240)
def test_a_host_refresh_finishes_in_seconds_while_long_jobs_fill_the_long_worker(
    stack, transactional_db, admin_client, local_host, dir_pool, project, created
):
    local_host.facts = {"cpus": 2, "memory_total_bytes": 8 * 1024**3}
    local_host.save()
    creates = []
    for n in range(2):  # as many as the stack's long worker has slots
        name = f"ptq-long-{n}"
        created.append(name)
        response = admin_client.post(
            "/api/v1/vms/",
            json.dumps(create_body(project, dir_pool, name)),
            content_type="application/json",
        )
        assert response.status_code == 202, response.content
        creates.append(response.json()["job"])

    def waiting_for_consoles() -> bool:
        return all("waiting for" in Job.objects.get(pk=pk).log for pk in creates)

    wait_until(waiting_for_consoles, 60, "the creates never reached their console wait")
    simulated = Host.objects.create(name="sim", uri="test:///default", state="up")

    queued_at = time.monotonic()
    response = admin_client.post(f"/api/v1/hosts/{simulated.pk}/refresh/")
    assert response.status_code == 202, response.content
    refresh = wait_until(
        lambda: (
            Job.objects.filter(pk=response.json()["job"])
            .exclude(state__in=("queued", "running"))
            .first()
        ),
        90,
        "the refresh never finished",
    )
    took = time.monotonic() - queued_at
    still_running = Job.objects.filter(pk__in=creates, state="running").count()

    print(f"host refresh done {took:.1f} s after it was queued; creates running: {still_running}")
    assert refresh.state == "succeeded", refresh.log
    assert took < QUICK_SECONDS, f"the refresh waited {took:.1f} s behind the creates"
    assert still_running == 2, "the long jobs ended before the refresh: nothing was shown"

    # The creates went on meanwhile, on the long worker, and finish as usual.
    for pk in creates:
        job = wait_until(
            lambda pk=pk: Job.objects.filter(pk=pk, state__in=("succeeded", "failed")).first(),
            120,
            "a create never finished",
        )
        assert job.state == "succeeded", job.log
        assert "no console output in 60 s" in job.log, job.log
        assert job.result["worker"].startswith("test-long-"), job.result
