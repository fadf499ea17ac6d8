"""The VM list's bulk actions on the real hosts: the selected VMs migrated to another
host, deleted (their disks kept), or, when gone from their host, forgotten; each VM goes
through its own service, and one VM's refusal is said without stopping the others."""

from __future__ import annotations

import pytest

from panel import hypervisor
from panel.models import Job
from tests.conftest import LOCAL_URI
from tests.migration.conftest import where
from tests.vms.conftest import alerts
from vms.models import VirtualMachine
from vms.services.common import reread
from vms.tasks import vm_delete_task, vm_migrate_task

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(240)]


def bulk(client, action: str, vms: list[VirtualMachine], **extra: object) -> list[str]:
    """The list's form sent for vms; the messages the list then shows."""
    data = {"action": action, "vm": [str(vm.pk) for vm in vms], "next": "/vms/", **extra}
    response = client.post("/vms/bulk/", data, follow=True)
    assert response.redirect_chain == [("/vms/", 302)]
    return alerts(response)


def jobs_of(vms: list[VirtualMachine], kind: str) -> list[Job]:
    return [Job.objects.get(target=f"vm:{vm.pk}", kind=kind) for vm in vms]


def test_it_migrates_the_selected_vms_to_the_chosen_host(
    guest, client_for, second_host, second_host_uri
):
    running, stopped = guest(), guest(running=False)
    member = client_for("member")

    assert bulk(member, "migrate", [running, stopped]) == [
        "target_host: give the id of the host to migrate to (see GET /api/v1/hosts/)."
    ]
    assert not Job.objects.filter(kind="vm.migrate").exists()

    said = bulk(member, "migrate", [running, stopped], target_host=second_host.pk)

    jobs = jobs_of([running, stopped], "vm.migrate")
    (line,) = said
    assert line.startswith("Migrate: ")
    for vm, job in zip([running, stopped], jobs, strict=True):
        assert f"{vm.name} (job #{job.pk})" in line
    for job in jobs:
        vm_migrate_task(job.pk)
        job.refresh_from_db()
        assert job.state == "succeeded", job.log
    assert where(running, second_host_uri) == ("absent", "running")
    assert where(stopped, second_host_uri) == ("absent", "shutoff")
    assert {vm.host for vm in VirtualMachine.objects.filter(pk__in=[running.pk, stopped.pk])} == {
        second_host
    }


def test_it_deletes_the_selected_vms_and_forgets_only_those_gone_from_their_host(guest, client_for):
    kept, gone, deleted = guest(running=False), guest(running=False), guest()
    hypervisor.undefine_domain(LOCAL_URI, str(gone.pk))  # outside the panel
    assert reread(gone).state == "missing"
    member = client_for("member")

    said = bulk(member, "forget", [kept, gone])

    assert said == [
        f"Forget missing: {gone.name}.",
        f"{kept.name}: it is on local (shutoff), not missing: Forget missing only removes "
        "VMs gone from their host; delete it instead.",
    ]
    assert not VirtualMachine.objects.filter(pk=gone.pk).exists()
    assert VirtualMachine.objects.filter(pk=kept.pk).exists()

    said = bulk(member, "delete", [deleted])

    (job,) = jobs_of([deleted], "vm.delete")
    assert said == [f"Delete: {deleted.name} (job #{job.pk})."]
    vm_delete_task(job.pk)
    job.refresh_from_db()
    assert job.state == "succeeded", job.log
    with pytest.raises(hypervisor.NotFound):
        hypervisor.get_domain(LOCAL_URI, str(deleted.pk))
    assert not VirtualMachine.objects.filter(pk=deleted.pk).exists()
    assert hypervisor.get_domain(LOCAL_URI, str(kept.pk)).state == "shutoff"


def test_a_viewer_is_refused_each_vm_by_name_and_nothing_changes(guest, client_for):
    vm = guest(running=False)

    said = bulk(client_for("viewer"), "delete", [vm])

    assert said == [f"{vm.name}: Your role does not allow you to delete {vm.name}."]
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state == "shutoff"
    assert not Job.objects.filter(target=f"vm:{vm.pk}").exists()
