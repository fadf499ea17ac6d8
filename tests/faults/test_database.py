# ruff: noqa: F811  (fixtures imported from the VM tests)
"""The database locked by another writer (an sqlite3 ``BEGIN EXCLUSIVE`` held past the
busy timeout) while users post changes: each gets a 503 saying the database is busy and
to try again, and nothing is half-done, neither in the database nor on the host. The
same request succeeds once the lock is gone; a lock shorter than the timeout only slows
the request down."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator

import pytest
from django.db import connection

from panel import hypervisor
from panel.models import ActionLock, AuditEvent, Job, Project
from storage.models import StoragePool, Volume
from storage.services import refresh_pool_row
from tests.conftest import LOCAL_URI
from tests.vms.conftest import (  # noqa: F401  (fixtures)
    admin,
    alpha,
    api_for,
    client_for,
    define_guest,
    fast_password_hashing,
    local_host,
    make_vm,
    member,
    people,
    scratch_pool,
)
from vms.models import VirtualMachine

# SQLite's write lock, held by another connection: on PostgreSQL these are deselected.
pytestmark = [
    pytest.mark.libvirt,
    pytest.mark.sqlite,
    pytest.mark.sqlite_only,
    pytest.mark.timeout(120),
]

BUSY = "The database is busy"


@pytest.fixture
def short_busy_timeout(transactional_db, monkeypatch) -> Iterator[None]:
    """This process waits 1 s (not 30) for the database's write lock."""
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "timeout", 1)
    connection.close()
    yield
    connection.close()


@contextlib.contextmanager
def database_locked(release_after: float | None = None) -> Iterator[threading.Event]:
    """Another connection holds the database's write lock for the block (or, with
    release_after, for that many seconds only); the event is set as the lock is let go."""
    locker = sqlite3.connect(
        connection.settings_dict["NAME"], isolation_level=None, timeout=10, check_same_thread=False
    )
    locker.execute("BEGIN EXCLUSIVE")
    releasing = threading.Event()

    def release() -> None:
        releasing.set()  # before the ROLLBACK: no writer can get in earlier than this
        locker.execute("ROLLBACK")

    timer = None
    if release_after is not None:
        timer = threading.Timer(release_after, release)
        timer.start()
    try:
        yield releasing
    finally:
        if timer is not None:
            timer.join()
        else:
            locker.execute("ROLLBACK")
        locker.close()


def test_it_answers_503_to_a_vm_action_and_leaves_the_vm_as_it_was(
    short_busy_timeout, make_vm, api_for
):
    vm = make_vm(running=False)
    api = api_for("member")
    audits = AuditEvent.objects.count()

    with database_locked():
        response = api.post(f"/api/v1/vms/{vm.pk}/start/")
        deleting = api.delete(f"/api/v1/vms/{vm.pk}/")

    for answer in (response, deleting):
        assert answer.status_code == 503, answer.content
        assert answer.json()["detail"].startswith(BUSY)
        assert "Try again" in answer.json()["detail"]
        assert answer["Retry-After"] == "5"
    # The host was never asked, and no claim, job or audit row is left.
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state == "shutoff"
    assert VirtualMachine.objects.get(pk=vm.pk).state == "shutoff"
    assert not ActionLock.objects.exists()
    assert not Job.objects.exists()
    assert AuditEvent.objects.count() == audits

    # Unlocked, the same request works.
    assert api.post(f"/api/v1/vms/{vm.pk}/start/").status_code == 200
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state == "running"


def test_it_answers_503_to_a_page_post_and_a_project_edit(
    short_busy_timeout, make_vm, client_for, api_for, alpha, caplog
):
    vm = make_vm(running=False)
    page = client_for("operator")
    admin_api = api_for("admin")

    with database_locked(), caplog.at_level(logging.INFO, logger="django.request"):
        response = page.post(f"/vms/{vm.pk}/start/")
        edit = admin_api.patch(f"/api/v1/projects/{alpha.pk}/", {"name": "renamed"}, format="json")

    assert response.status_code == 503
    assert BUSY in response.content.decode()
    assert edit.status_code == 503, edit.content
    assert edit.json()["detail"].startswith(BUSY)
    assert Project.objects.get(pk=alpha.pk).name == "alpha"
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state == "shutoff"
    # Turning requests away is logged as a warning, not as a server error with a traceback.
    logged = [(r.levelname, r.exc_info) for r in caplog.records if r.name == "django.request"]
    assert logged == [("WARNING", None), ("WARNING", None)], logged


def test_it_answers_503_to_volume_changes_and_makes_or_removes_nothing(
    short_busy_timeout, local_host, scratch_pool, api_for, monkeypatch
):
    pool = StoragePool.objects.create(host=local_host, name=scratch_pool.name, type="dir")
    refresh_pool_row(pool)
    api = api_for("admin")
    scratch_pool.add_volume("kept.qcow2")
    refresh_pool_row(pool)
    volume = Volume.objects.get(pool=pool, name="kept.qcow2")
    body = {"pool": pool.pk, "name": "new.qcow2", "format": "qcow2", "capacity_gib": 0.01}

    with database_locked():
        created = api.post("/api/v1/volumes/", body, format="json")
        deleted = api.delete(f"/api/v1/volumes/{volume.pk}/")

    for answer in (created, deleted):
        assert answer.status_code == 503, answer.content
        assert answer.json()["detail"].startswith(BUSY)
    assert scratch_pool.volume_names() == {"kept.qcow2"}
    assert list(Volume.objects.filter(pool=pool).values_list("name", flat=True)) == ["kept.qcow2"]

    # A lock shorter than the wait only delays the request: it is then done in full. The
    # wait is generous here (30 s) so that a slow machine cannot turn the delay into a 503.
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "timeout", 30)
    connection.close()
    with database_locked(release_after=0.5) as releasing:
        created = api.post("/api/v1/volumes/", body, format="json")
        # It waited for the lock: it could not finish before the lock was let go.
        assert releasing.is_set()
    assert created.status_code == 201, created.content
    assert scratch_pool.volume_names() == {"kept.qcow2", "new.qcow2"}
    assert Volume.objects.filter(pool=pool, name="new.qcow2").exists()
    assert AuditEvent.objects.filter(action="volume.create", result="success").count() == 1
