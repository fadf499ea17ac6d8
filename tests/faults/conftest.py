"""Fixtures of the fault tests: the private Celery worker the test_worker_killed_*
modules kill (one per module, on its own queue and under its own name, so a test can kill
it without touching the stack's worker, and restart it under the same name).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery.contrib.django.task import DjangoTask

from tests.faults.killed_worker import Worker


@pytest.fixture(scope="module")
def worker_process(django_db_setup, tmp_path_factory) -> Iterator[Worker]:
    w = Worker(tmp_path_factory.mktemp("faults-worker"))
    w.start()
    yield w
    w.stop()


@pytest.fixture
def worker(worker_process, transactional_db, monkeypatch) -> Worker:
    """The private worker, running; every task this test queues goes to it."""

    send = DjangoTask.apply_async

    def to_private_queue(task, args=None, kwargs=None, **options):  # type: ignore[no-untyped-def]
        return send(task, args, kwargs, **{**options, "queue": worker_process.queue})

    monkeypatch.setattr(DjangoTask, "apply_async", to_private_queue)
    if worker_process.proc is None or worker_process.proc.poll() is not None:
        worker_process.start()
    return worker_process
