"""Through the running stack (web server + the real Celery workers): a drain started from
the host's page runs on a worker, its progress shows on the host's page, and the guest
ends up running on the second host."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from panel.models import Job
from tests.conftest import LOCAL_URI
from tests.migration.conftest import console_says, where
from vms.models import VirtualMachine

pytestmark = [pytest.mark.libvirt, pytest.mark.stack, pytest.mark.timeout(240)]


def test_a_drain_started_on_the_page_runs_on_a_worker(
    stack, transactional_db, guest, admin, local_host, second_host, second_host_uri
):
    vm = guest()
    console_says(LOCAL_URI, str(vm.pk), b"echo up-$((6*7))", b"up-42", boot=True)
    browser = Client()
    browser.force_login(admin)

    plan = browser.get(f"/vms/hosts/{local_host.pk}/drain/")
    assert plan.status_code == 200
    assert f'data-plan-vm="{vm.name}"' in plan.content.decode()
    response = browser.post(f"/vms/hosts/{local_host.pk}/drain/")
    assert response.status_code == 302
    job = Job.objects.get(kind="host.drain")
    assert response["Location"] == f"/jobs/{job.pk}/"

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and job.state in ("queued", "running"):
        time.sleep(0.5)
        job.refresh_from_db()
    assert job.state == "succeeded", job.log
    assert where(vm, second_host_uri) == ("absent", "running")
    assert VirtualMachine.objects.get(pk=vm.pk).host == second_host
    page = browser.get(f"/hosts/{local_host.pk}/").content.decode()
    assert "data-host-maintenance" in page and "Make active" in page
    assert "1 of 1 VMs moved" in page
