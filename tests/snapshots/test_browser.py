"""Headless Chromium on the running stack: take a snapshot from the VM page's Snapshots card,
watch its job's progress bar, and see it in the tree; and the same job's progress pushed over
the websocket to an API client."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from panel.models import Job
from tests.conftest import ADMIN_PASSWORD
from tests.snapshots.conftest import post, virsh
from tests.stack import open_ws
from vms.models import VirtualMachine

pytestmark = [pytest.mark.libvirt, pytest.mark.stack, pytest.mark.timeout(240)]


@pytest.mark.browser
def test_it_takes_a_snapshot_from_the_vm_page_and_shows_it_in_the_tree(
    page, stack, transactional_db, admin_user, make_vm
):
    vm = make_vm(start=True)
    # Details read "just now" for the whole test: the page then never re-reads them, so
    # it does not reload itself between the test's typing and clicking.
    fresh_until = (timezone.now() + timedelta(minutes=10)).isoformat()
    VirtualMachine.objects.filter(pk=vm.pk).update(details={"read_at": fresh_until})
    page.goto(stack.url + "/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{stack.url}/vms/{vm.pk}/")
    page.get_by_role("tab", name="Snapshots").click()
    expect(page).to_have_url(f"{stack.url}/vms/{vm.pk}/#snapshots")
    card = page.locator("[data-vm-snapshots]")
    expect(card.locator("[data-snapshot-tree]")).to_contain_text("No snapshots.")

    card.get_by_label("Name").fill("from-the-page")
    card.get_by_label("Description").fill("taken in Chromium")
    card.get_by_role("button", name="Take snapshot").click()

    expect(card.locator("[data-job-progress] .progress-bar")).to_have_text("100 %", timeout=60_000)
    expect(card.locator("[data-job-state]")).to_have_text("succeeded")
    row = card.locator('[data-snapshot="from-the-page"]')
    expect(row).to_be_visible(timeout=15_000)
    expect(row).to_contain_text("running")
    expect(row).to_contain_text("internal + memory")
    expect(row.locator("[data-current]")).to_have_text("current")
    assert virsh("snapshot-list", str(vm.pk), "--name").split() == ["from-the-page"]

    # A second one from the page sits under the first in the tree.
    card.get_by_label("Name").fill("second")
    card.get_by_role("button", name="Take snapshot").click()
    second = page.locator('[data-vm-snapshots] [data-snapshot="second"]')
    expect(second).to_be_visible(timeout=60_000)
    expect(second).to_have_attribute("data-parent", "from-the-page")
    expect(second).to_have_attribute("data-depth", "1")


def test_the_worker_reports_a_memory_snapshot_over_the_websocket(
    stack, transactional_db, client, admin_user, make_vm
):
    vm = make_vm(start=True)
    client.force_login(admin_user)
    response = post(client, f"/api/v1/vms/{vm.pk}/snapshots/", {"name": "live"})
    assert response.status_code == 202, response.content
    job_id = response.json()["job"]

    progress, states = [], []
    with open_ws(stack, f"/ws/jobs/{job_id}/", client.cookies["sessionid"].value) as ws:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = json.loads(ws.recv(timeout=60))["job"]
            progress.append(job["progress"])
            states.append(job["state"])
            if job["state"] in ("succeeded", "failed"):
                break
    job = Job.objects.get(pk=job_id)
    assert job.state == "succeeded", job.log
    assert states[-1] == "succeeded" and progress[-1] == 100
    assert progress == sorted(progress) and len(set(progress)) >= 2
    assert "with memory" in job.log
    [snap] = client.get(f"/api/v1/vms/{vm.pk}/snapshots/").json()["results"]
    assert (snap["name"], snap["state"], snap["memory"]) == ("live", "running", True)


@pytest.mark.browser
def test_it_backs_up_from_the_backups_card_and_lists_the_backup(
    page, stack, transactional_db, admin_user, make_vm, backup_pool
):
    vm = make_vm(start=True)
    # Details read "just now" for the whole test: the page then never re-reads them, so
    # it does not reload itself between the test's typing and clicking.
    fresh_until = (timezone.now() + timedelta(minutes=10)).isoformat()
    VirtualMachine.objects.filter(pk=vm.pk).update(details={"read_at": fresh_until})
    page.goto(stack.url + "/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{stack.url}/vms/{vm.pk}/#backups")  # the address opens the Backups tab
    card = page.locator("[data-vm-backups]")
    expect(card.locator("[data-backup-list]")).to_contain_text("No backups.")

    card.get_by_label("Backup pool").select_option(label=backup_pool.name)
    card.get_by_role("button", name="Back up now").click()

    expect(card.locator("[data-job-progress] .progress-bar")).to_have_text("100 %", timeout=90_000)
    expect(card.locator("[data-job-state]")).to_have_text("succeeded")
    row = card.locator('[data-backup][data-state="good"]')
    expect(row).to_be_visible(timeout=15_000)
    expect(row).to_contain_text("push")  # the VM runs: libvirt's backup job
    expect(row).to_contain_text("vda:")
    job = Job.objects.filter(kind="vm.backup").get()
    assert job.state == "succeeded" and job.message.endswith("is good.")
    assert "No errors were found" in job.log
