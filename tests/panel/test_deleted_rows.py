"""A row deleted by another process while a service works on it: nothing is written back,
nothing is put back, and the service says the object is gone (404), on both databases.

The inventory comes from the test:/// driver; the race itself is a real second database
connection holding the delete open while the service runs.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from panel import hypervisor
from panel import services as panel_services
from panel.actors import Actor
from panel.exceptions import GoneError
from panel.models import Host, Project
from panel.services.hosts import reconcile_host, set_host_state
from storage import services as storage_services
from storage.models import StoragePool, Volume
from vms import services as vm_services
from vms.models import VirtualMachine

pytestmark = pytest.mark.sqlite

FAKE_URI = "test:///default"


@pytest.fixture
def sim_host(transactional_db) -> Host:
    host = Host.objects.create(name="sim", uri=FAKE_URI, state="up")
    reconcile_host(host, checks=False)
    return host


def _delete_in_another_connection(model, pk, *, hold_seconds: float) -> dict[str, float]:
    """Delete the row in a second connection and keep that transaction open for a while;
    returns (when filled in) the time the delete committed."""
    times: dict[str, float] = {}
    deleted = threading.Event()

    def run() -> None:
        try:
            with transaction.atomic():
                model.objects.filter(pk=pk).delete()
                deleted.set()
                time.sleep(hold_seconds)
                times["committed"] = time.monotonic()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    assert deleted.wait(10), "the second connection could not delete the row"
    times["thread"] = thread  # type: ignore[assignment]
    return times


def test_it_marks_nothing_when_a_delete_commits_while_the_watcher_marks_a_vm_missing(sim_host):
    vm = VirtualMachine.objects.filter(host=sim_host).first()
    race = _delete_in_another_connection(VirtualMachine, vm.pk, hold_seconds=1.0)
    started = time.monotonic()
    # The watcher's path for an "undefined" event, while the delete job's transaction is open.
    vm_services.mark_missing(sim_host, str(vm.pk))
    returned = time.monotonic()
    race["thread"].join(10)
    # The branch under test ran: the call began before the delete committed and waited for it.
    assert started < race["committed"] <= returned
    assert not VirtualMachine.objects.filter(pk=vm.pk).exists()


def test_it_does_not_bring_back_a_vm_deleted_while_the_watcher_syncs_it(sim_host, admin_user):
    vm = VirtualMachine.objects.filter(host=sim_host).first()
    project = panel_services.create_project(name="alpha", actor=Actor(admin_user))
    vm = vm_services.assign_vm(vm, project, actor=Actor(admin_user))
    # The watcher's path for a lifecycle event of a VM that is still being reported.
    info = next(d for d in hypervisor.list_domains(FAKE_URI) if d.uuid == str(vm.pk))
    race = _delete_in_another_connection(VirtualMachine, vm.pk, hold_seconds=1.0)
    started = time.monotonic()
    synced = vm_services.sync_domain(sim_host, info)
    returned = time.monotonic()
    race["thread"].join(10)
    assert started < race["committed"] <= returned
    # The domain is still on the host, so the row is made anew, as for any new domain,
    # in the unassigned project: the deleted row's project and owner are not revived.
    assert synced.project.name == vm_services.unassigned_project().name
    assert VirtualMachine.objects.filter(pk=vm.pk).count() == 1


def test_it_writes_no_state_for_a_host_removed_meanwhile(sim_host):
    stale = Host.objects.get(pk=sim_host.pk)
    Host.objects.filter(pk=sim_host.pk).delete()
    set_host_state(stale, "down", "The connection to libvirtd was lost.")
    assert not Host.objects.filter(pk=sim_host.pk).exists()


def test_it_saves_no_inventory_for_a_host_removed_during_its_refresh(sim_host):
    stale = Host.objects.get(pk=sim_host.pk)
    Host.objects.filter(pk=sim_host.pk).delete()
    with pytest.raises(GoneError, match="was removed from the panel meanwhile"):
        reconcile_host(stale, checks=False)
    assert not VirtualMachine.objects.filter(host_id=sim_host.pk).exists()


def test_it_answers_gone_when_the_vm_is_deleted_before_its_details_are_saved(sim_host):
    stale = VirtualMachine.objects.filter(host=sim_host).first()
    VirtualMachine.objects.filter(pk=stale.pk).delete()
    # The host still has the domain: the row comes back as a new, unassigned VM.
    vm = vm_services.refresh_details(stale)
    assert vm.project.name == vm_services.unassigned_project().name


def test_it_refuses_to_move_a_vm_deleted_meanwhile(sim_host, admin_user):
    project = panel_services.create_project(name="alpha", actor=Actor(admin_user))
    stale = VirtualMachine.objects.filter(host=sim_host).first()
    VirtualMachine.objects.filter(pk=stale.pk).delete()
    with pytest.raises(GoneError, match="was deleted meanwhile; nothing was moved"):
        vm_services.assign_vm(stale, project, actor=Actor(admin_user))
    assert not VirtualMachine.objects.filter(pk=stale.pk).exists()


def test_it_refuses_to_edit_a_project_deleted_meanwhile(transactional_db, admin_user):
    project = panel_services.create_project(name="alpha", actor=Actor(admin_user))
    stale = Project.objects.get(pk=project.pk)
    Project.objects.filter(pk=project.pk).delete()
    with pytest.raises(GoneError, match="was deleted meanwhile"):
        panel_services.update_project(stale, actor=Actor(admin_user), description="changed")
    assert not Project.objects.filter(name="alpha").exists()


def test_it_refuses_to_publish_a_volume_deleted_meanwhile(sim_host, admin_user):
    pool = StoragePool.objects.filter(host=sim_host).first()
    stale = Volume.objects.create(pool=pool, name="disk.qcow2", path="/default-pool/disk.qcow2")
    Volume.objects.filter(pk=stale.pk).delete()
    with pytest.raises(GoneError, match="was deleted meanwhile"):
        storage_services.set_shared(stale, True, actor=Actor(admin_user))
    assert not Volume.objects.filter(pk=stale.pk).exists()


def test_it_refuses_to_disable_a_user_deleted_meanwhile(
    transactional_db, admin_user, django_user_model
):
    user = django_user_model.objects.create_user("bob", password="bob-pass-7Hq2x")
    stale = django_user_model.objects.get(pk=user.pk)
    django_user_model.objects.filter(pk=user.pk).delete()
    with pytest.raises(GoneError, match="was deleted meanwhile"):
        panel_services.set_user_active(stale, active=False, actor=Actor(admin_user))
    assert not django_user_model.objects.filter(username="bob").exists()


def test_it_answers_404_over_the_api_when_the_vm_goes_during_the_request(sim_host, admin_user):
    from rest_framework.test import APIClient

    project = panel_services.create_project(name="alpha", actor=Actor(admin_user))
    vm = VirtualMachine.objects.filter(host=sim_host).first()
    api = APIClient()
    api.force_authenticate(admin_user)
    # A delete job's transaction is open when the request looks the VM up; it commits
    # before the move is written.
    race = _delete_in_another_connection(VirtualMachine, vm.pk, hold_seconds=1.0)
    answer = api.patch(f"/api/v1/vms/{vm.pk}/", {"project": project.pk}, format="json")
    race["thread"].join(10)
    assert answer.status_code == 404, answer.content
    assert "was deleted meanwhile; nothing was moved" in answer.json()["detail"]
    assert not VirtualMachine.objects.filter(pk=vm.pk).exists()
