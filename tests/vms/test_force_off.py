"""Force off overrules a shutdown that waits for the guest, on the real libvirtd (the tiny
guest ignores ACPI): a shutdown job already waiting ends once it sees the VM off, one not
started yet is cancelled; any other job on the VM still holds force off back."""

from __future__ import annotations

import time

import pytest

from panel import hypervisor
from panel.models import AuditEvent, Job
from tests.conftest import LOCAL_URI

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(120)]


def act(api, vm, verb: str, data: dict | None = None):
    return api.post(f"/api/v1/vms/{vm.pk}/{verb}/", data or {}, format="json")


def job_when(job_id: int, done, timeout: float) -> Job:
    """The job once done(job) holds; the test fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not done(job := Job.objects.get(pk=job_id)):
        if time.monotonic() > deadline:
            pytest.fail(f"job #{job_id} is {job.state} after {timeout:.0f} s: {job.log}")
        time.sleep(0.25)
    return job


@pytest.mark.stack
def test_force_off_ends_a_shutdown_the_guest_ignores(stack, transactional_db, make_vm, api_for):
    vm = make_vm(running=True)
    api = api_for("member")
    job_id = act(api, vm, "shutdown", {"timeout": 90}).data["job"]
    job_when(job_id, lambda job: "shutdown request sent" in job.log, 30)

    forced = act(api, vm, "force-off")

    assert forced.status_code == 200, forced.data
    assert forced.data["state"] == "shutoff"
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state == "shutoff"
    # The shutdown job sees the VM off at its next look (every 5 s), long before its 90 s.
    job = job_when(job_id, lambda job: job.is_finished, 20)
    assert job.state == "succeeded", job.message
    assert "forced off by member" in job.log
    assert AuditEvent.objects.filter(action="vm.force-off", result="success").count() == 1


def test_force_off_cancels_a_shutdown_not_started_and_waits_for_any_other_job(make_vm, api_for):
    vm = make_vm(running=True)
    api = api_for("member")
    saving = act(api, vm, "save").data["job"]

    refused = act(api, vm, "force-off")

    assert refused.status_code == 409
    assert f"busy: job #{saving} (VM save) is in progress" in refused.data["detail"]
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state == "running"

    Job.objects.filter(pk=saving).update(state="cancelled")
    shutdown = act(api, vm, "shutdown").data["job"]
    forced = act(api, vm, "force-off")

    assert forced.status_code == 200, forced.data
    assert hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state == "shutoff"
    assert Job.objects.get(pk=shutdown).state == "cancelled"
