"""Through the running stack (web server + the real Celery worker): a migration slowed by a
bandwidth limit reports its progress over the job's websocket, and Cancel aborts it; the
VM keeps running on the source and the target keeps nothing."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client

from panel import hypervisor
from panel.models import Job
from tests.conftest import LOCAL_URI
from tests.migration.conftest import console_says, where
from tests.stack import open_ws
from vms.models import VirtualMachine

pytestmark = [pytest.mark.libvirt, pytest.mark.stack, pytest.mark.timeout(240)]


def test_cancel_aborts_a_slow_migration_and_the_vm_stays_on_the_source(
    stack, transactional_db, guest, api_for, member, second_host, second_host_uri
):
    vm = guest()
    console_says(LOCAL_URI, str(vm.pk), b"echo up-$((6*7))", b"up-42", boot=True)
    api = api_for("member")
    response = api.post(
        f"/api/v1/vms/{vm.pk}/migrate/",
        {"target_host": second_host.pk, "live": True, "bandwidth_mib": 1},
        format="json",
    )
    assert response.status_code == 202, response.content
    job_id = response.json()["job"]
    browser = Client()
    browser.force_login(member)

    seen: list[dict] = []
    with open_ws(stack, f"/ws/jobs/{job_id}/", browser.cookies["sessionid"].value) as ws:
        deadline = time.monotonic() + 120
        cancelled_at = None
        while time.monotonic() < deadline:
            job = json.loads(ws.recv(timeout=60))["job"]
            seen.append(job)
            if cancelled_at is None and "MiB sent" in job["message"] and job["progress"] > 3:
                # Data is flowing at 1 MiB/s: about 100 s to go. Cancel now.
                cancel = api.post(f"/api/v1/jobs/{job_id}/cancel/")
                assert cancel.status_code == 200, cancel.content
                cancelled_at = len(seen)
            if job["state"] in ("succeeded", "failed", "cancelled"):
                break
    assert cancelled_at is not None, seen
    # The job ended cancelled, after the cancel and with the copy far from done (at 1 MiB/s
    # the migration had about 100 s to go): the cancel stopped it, not its own end.
    assert seen[-1]["state"] == "cancelled", seen[-1]
    # (The first message is the job as the socket found it: still queued if no worker
    # had taken it yet.)
    assert all(j["state"] in ("queued", "running") for j in seen[:cancelled_at]), seen
    progress = [j["progress"] for j in seen if j["state"] == "running"]
    assert progress == sorted(progress) and 3 < progress[-1] < 50

    job = Job.objects.get(pk=job_id)
    assert job.state == "cancelled"
    assert f"cancelled: {vm.name} is running on local, absent on second" in job.log
    assert where(vm, second_host_uri) == ("running", "absent")
    row = VirtualMachine.objects.get(pk=vm.pk)
    assert (row.host_id, row.state) == (vm.host_id, "running")
    assert b"still-7" in console_says(LOCAL_URI, str(vm.pk), b"echo still-$((3+4))", b"still-7")
    # Nothing of it on the target, not even a shut-off definition.
    assert str(vm.pk) not in {d.uuid for d in hypervisor.list_domains(second_host_uri)}
