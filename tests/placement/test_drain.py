"""Maintenance on the two real hosts: the plan names the second host, the drain job
migrates the running tiny guest there for real (its RAM keeps a marker), the drained host
refuses creates until an admin makes it active; a cancelled drain stops after the VM it
was moving."""

from __future__ import annotations

import secrets

import pytest

from panel.models import AuditEvent, Job
from tests.conftest import LOCAL_URI
from tests.migration.conftest import console_says, where
from tests.migration.test_live import in_guest
from tests.placement.conftest import facts, kernel_vm
from vms.models import AffinityGroup, VirtualMachine
from vms.services import migrate
from vms.tasks import host_drain_task

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(300)]


def test_a_drain_moves_the_running_guest_and_the_host_takes_no_new_vms(
    guest, api_for, alpha, local_host, second_host, second_host_uri
):
    facts(local_host, 4)
    facts(second_host, 4)
    vm = guest()
    console_says(LOCAL_URI, str(vm.pk), b"echo up-$((6*7))", b"up-42", boot=True)
    token = secrets.token_hex(8)
    assert in_guest(LOCAL_URI, str(vm.pk), f"echo {token} > /tmp/marker") == []
    admin = api_for("admin")

    plan = admin.get(f"/api/v1/hosts/{local_host.pk}/drain-plan/")
    assert plan.status_code == 200, plan.content
    (step,) = plan.json()
    assert (step["vm_name"], step["target_host"], step["target_name"]) == (
        vm.name,
        second_host.pk,
        "second",
    )
    assert step["how"] == "live, shared storage" and step["reason"] == ""

    response = admin.post(f"/api/v1/hosts/{local_host.pk}/drain/")
    assert response.status_code == 202, response.content
    job_id = response.json()["job"]
    assert admin.get(f"/api/v1/hosts/{local_host.pk}/").json()["maintenance"] is True
    host_drain_task(job_id)

    job = Job.objects.get(pk=job_id)
    assert (job.state, job.kind, job.progress) == ("succeeded", "host.drain", 100), job.log
    assert job.message == "1 of 1 VMs moved; 0 still run on local."
    child = Job.objects.get(kind="vm.migrate")
    assert child.state == "succeeded" and f"migration job #{child.pk} to second" in job.log
    assert where(vm, second_host_uri) == ("absent", "running")
    assert VirtualMachine.objects.get(pk=vm.pk).host == second_host
    # The same running guest: its RAM file system still holds the mark.
    assert in_guest(second_host_uri, str(vm.pk), "cat /tmp/marker") == [token]
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"host.maintenance", "host.drain", "vm.migrate"} <= actions

    # In maintenance: no new VM, named or placed.
    create = kernel_vm(alpha, "ptc-after", host=local_host.pk)
    response = admin.post("/api/v1/vms/", create, format="json")
    assert response.status_code == 409, response.content
    assert response.json()["detail"] == (
        "local is in maintenance and takes no new VMs: choose another host, or ask an admin "
        "to make it active again."
    )
    back = admin.post(f"/api/v1/vms/{vm.pk}/migrate/", {"target_host": local_host.pk})
    assert back.status_code == 409 and "local is in maintenance" in back.json()["detail"]

    response = admin.post(f"/api/v1/hosts/{local_host.pk}/activate/")
    assert response.status_code == 200, response.content
    assert response.json() == {"id": local_host.pk, "maintenance": False}
    response = admin.post("/api/v1/vms/", create, format="json")
    assert response.status_code == 202, response.content
    created = Job.objects.get(pk=response.json()["job"])
    assert created.host == local_host
    admin.post(f"/api/v1/jobs/{created.pk}/cancel/")  # queued: it stops before it starts


def test_a_cancelled_drain_stops_after_the_vm_it_was_moving(
    guest, api_for, local_host, second_host, second_host_uri, monkeypatch
):
    first, second = guest(name="paneltest-drain-a"), guest(name="paneltest-drain-b")
    admin = api_for("admin")
    response = admin.post(f"/api/v1/hosts/{local_host.pk}/drain/")
    assert response.status_code == 202, response.content
    drain_id = response.json()["job"]
    original = migrate.run_migrate_job

    def cancel_while_moving(job):
        # The admin presses Cancel while the first VM is on its way.
        if not Job.objects.filter(pk=drain_id, cancel_requested=True).exists():
            assert admin.post(f"/api/v1/jobs/{drain_id}/cancel/").status_code == 200
        return original(job)

    monkeypatch.setattr(migrate, "run_migrate_job", cancel_while_moving)
    host_drain_task(drain_id)

    drain = Job.objects.get(pk=drain_id)
    assert drain.state == "cancelled", drain.log
    assert where(first, second_host_uri) == ("absent", "running")
    assert where(second, second_host_uri) == ("running", "absent")
    assert Job.objects.filter(kind="vm.migrate").count() == 1
    assert VirtualMachine.objects.get(pk=second.pk).host == local_host


def test_a_drain_plan_keeps_an_apart_group_apart(guest, api_for, alpha, local_host, second_host):
    first, second = guest(name="paneltest-apart-a"), guest(name="paneltest-apart-b")
    group = AffinityGroup.objects.create(project=alpha, name="web", kind="apart")
    group.vms.add(first, second)

    plan = api_for("admin").get(f"/api/v1/hosts/{local_host.pk}/drain-plan/").json()

    assert [(s["vm_name"], s["target_name"]) for s in plan] == [
        (first.name, "second"),
        (second.name, ""),
    ]
    assert plan[1]["reason"] == (
        "No host can take it (host local: the VM's own host; "
        f"host second: runs {first.name} of group 'web' (kept apart))."
    )
