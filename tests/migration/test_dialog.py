"""The Migrate dialog: in headless Chromium against the running stack, pick the target
from the pre-checked hosts, submit, watch the job's progress bar fill, and see the VM's
page, open in another tab, show the new host without a reload. And the dialog's pages."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from playwright.sync_api import expect

from panel import hypervisor
from panel.models import Job
from tests.conftest import LOCAL_URI
from tests.migration.conftest import console_says, where
from tests.vms.conftest import alerts, texts
from vms.models import VirtualMachine

# Every value the job's progress bar shows, recorded in the page as it changes.
RECORD_PROGRESS = """
window.__progress = [];
new MutationObserver(function () {
  var bar = document.querySelector("[data-job-progress]");
  if (bar) window.__progress.push(Number(bar.getAttribute("aria-valuenow")));
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["aria-valuenow"]});
"""


def login(page, stack, user):
    client = Client()
    client.force_login(user)
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": stack.url}]
    )


@pytest.mark.browser
@pytest.mark.stack
@pytest.mark.libvirt
@pytest.mark.timeout(240)
def test_it_migrates_from_the_dialog_and_the_progress_bar_follows(
    stack, transactional_db, page, guest, member, local_host, second_host, second_host_uri
):
    vm = guest()
    console_says(LOCAL_URI, str(vm.pk), b"echo up-$((6*7))", b"up-42", boot=True)
    login(page, stack, member)
    watcher = page.context.new_page()
    watcher.goto(f"{stack.url}/vms/{vm.pk}/")
    expect(watcher.locator("[data-vm-host]")).to_have_text("local")

    page.goto(f"{stack.url}/vms/{vm.pk}/")
    page.get_by_role("button", name="Migrate…").click()
    dialog = page.locator("#migrate-dialog")
    target = dialog.locator("[data-migrate-target='second']")
    expect(target.locator("[data-migrate-verdict]")).to_have_text("ready", timeout=30_000)
    expect(target.locator("[data-check='memory']")).to_contain_text("MiB free on the target")
    expect(target.locator("[data-check='CPU']")).to_have_attribute("data-status", "pass")
    target.get_by_label("second").check()
    # Slow enough (about 100 MB at 20 MiB/s) for the bar to show steps on its way.
    dialog.get_by_label("Bandwidth limit (MiB/s, 0: none)").fill("20")
    page.add_init_script(RECORD_PROGRESS)
    dialog.get_by_role("button", name="Migrate", exact=True).click()

    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    expect(page.locator("[data-job-state]")).to_have_text("succeeded", timeout=120_000)
    bar = page.locator("[data-job-progress]")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    seen = page.evaluate("window.__progress")
    assert any(0 < p < 100 for p in seen), seen
    assert seen == sorted(seen), seen
    expect(page.locator("[data-job-message]")).to_have_text(f"{vm.name} now runs on second.")

    # The other tab, never reloaded by the test, shows the VM on its new host.
    expect(watcher.locator("[data-vm-host]")).to_have_text("second", timeout=15_000)
    assert where(vm, second_host_uri) == ("absent", "running")
    assert VirtualMachine.objects.get(pk=vm.pk).host == second_host
    job = Job.objects.get(kind="vm.migrate")
    assert (job.user, job.state) == (member, "succeeded")


@pytest.mark.libvirt
def test_the_dialog_lists_each_host_with_its_pre_check(
    guest, client_for, local_host, second_host, second_host_uri
):
    vm = guest(running=False)
    response = client_for("member").get(f"/vms/{vm.pk}/migrate/")
    assert response.status_code == 200
    assert texts(
        response, "//*[@data-migrate-target]//label[@class='form-check-label fw-semibold']"
    ) == ["second"]
    checks = texts(response, "//*[@data-migrate-target='second']//li")
    # A shut-off VM is checked for an offline migration.
    assert f"pass state: {vm.name} is shut off." in checks
    assert "pass memory: An offline migration needs no memory on the target." in checks
    assert any(c.startswith("pass devices:") for c in checks), checks
    assert texts(response, "//*[@data-migrate-verdict]") == ["ready"]


@pytest.mark.libvirt
def test_the_dialog_is_for_those_who_may_migrate(guest, client_for, second_host):
    vm = guest(running=False)
    assert client_for("viewer").get(f"/vms/{vm.pk}/migrate/").status_code == 403
    assert client_for("outsider").get(f"/vms/{vm.pk}/migrate/").status_code == 404
    assert client_for("anonymous").get(f"/vms/{vm.pk}/migrate/").status_code == 302


@pytest.mark.libvirt
def test_a_refusal_from_the_dialog_comes_back_as_a_message(
    guest, client_for, second_host, second_host_uri
):
    vm = guest()
    second_host.facts = {"reserved_memory_bytes": 1 << 50}
    second_host.save()
    response = client_for("member").post(
        f"/vms/{vm.pk}/migrate/", {"target_host": second_host.pk, "live": "on"}, follow=True
    )
    assert response.redirect_chain[-1][0] == f"/vms/{vm.pk}/"
    [alert] = [a for a in alerts(response) if "cannot migrate" in a]
    assert "memory: Not enough memory for guests on the target" in alert
    assert not Job.objects.filter(kind="vm.migrate").exists()
    assert where(vm, second_host_uri) == ("running", "absent")


@pytest.mark.libvirt
def test_move_storage_from_the_dialog(guest, client_for, local_host, pools, tmp_path):
    from tests.migration.test_move_storage import two_pools
    from vms.tasks import vm_move_storage_task

    a, a_dir, b, b_dir = two_pools(pools, local_host, tmp_path, b"x")
    vm = guest(
        running=False,
        disks=(hypervisor.DiskSpec(path=str(a_dir / "data.qcow2"), target="vda"),),
    )
    client = client_for("member")
    dialog = client.get(f"/vms/{vm.pk}/migrate/")
    assert texts(dialog, "//select[@id='move-disk']/option") == [f"vda ({a_dir}/data.qcow2)"]
    assert any(o.startswith(b.name) for o in texts(dialog, "//select[@id='move-pool']/option"))
    response = client.post(f"/vms/{vm.pk}/move-storage/", {"disk": "vda", "pool": b.pk})
    job = Job.objects.get(kind="vm.move_storage")
    assert response["Location"] == f"/jobs/{job.pk}/"
    vm_move_storage_task(job.pk)
    job.refresh_from_db()
    assert job.state == "succeeded", job.log
    assert (b_dir / "data.qcow2").exists() and not (a_dir / "data.qcow2").exists()


@pytest.mark.browser
@pytest.mark.stack
@pytest.mark.libvirt
@pytest.mark.timeout(240)
def test_cancel_on_the_job_page_keeps_the_vm_on_its_host(
    stack, transactional_db, page, guest, member, local_host, second_host, second_host_uri
):
    vm = guest()
    console_says(LOCAL_URI, str(vm.pk), b"echo up-$((6*7))", b"up-42", boot=True)
    login(page, stack, member)
    page.goto(f"{stack.url}/vms/{vm.pk}/")
    page.get_by_role("button", name="Migrate…").click()
    dialog = page.locator("#migrate-dialog")
    expect(dialog.locator("[data-migrate-target='second'] [data-migrate-verdict]")).to_have_text(
        "ready", timeout=30_000
    )
    dialog.get_by_label("second").check()
    dialog.get_by_label("Bandwidth limit (MiB/s, 0: none)").fill("1")
    dialog.get_by_role("button", name="Migrate", exact=True).click()

    expect(page.locator("[data-job-message]")).to_contain_text("MiB sent", timeout=60_000)
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("[data-job-state]")).to_have_text("cancelled", timeout=60_000)
    expect(page.locator("[data-job-log]")).to_contain_text(
        f"cancelled: {vm.name} is running on local, absent on second"
    )
    assert where(vm, second_host_uri) == ("running", "absent")
    page.goto(f"{stack.url}/vms/{vm.pk}/")
    expect(page.locator("[data-vm-host]")).to_have_text("local")
    expect(page.locator("[data-vm-state]")).to_have_text("running")
