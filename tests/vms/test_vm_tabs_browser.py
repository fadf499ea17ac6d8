"""The VM page in tabs, in headless Chromium against the running stack with a real VM:
Summary first; another tab opens from a click or from the address, survives a reload and
a return to the VM's page (a form sent from a tab comes back to it); History lists the
VM's jobs, linked."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from panel.models import Job

from .test_vm_browser import elsewhere, open_as

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(180)]

TABS = ["Summary", "Console", "Hardware", "Snapshots", "Backups", "Tuning", "Options", "History"]


def test_the_vm_page_opens_on_summary_and_keeps_the_tab_the_user_chose(
    stack, transactional_db, make_vm, people, browser_page
):
    page = browser_page
    vm = elsewhere(make_vm)
    job = Job.objects.create(
        kind="vm.snapshot",
        target=f"vm:{vm.pk}",
        project=vm.project,
        user=people["member"],
        state="succeeded",
        progress=100,
    )
    open_as(page, stack, people["member"], f"/vms/{vm.pk}/")
    url = f"{stack.url}/vms/{vm.pk}/"

    expect(page.get_by_role("tab")).to_have_text(TABS)
    expect(page.get_by_role("tab", name="Summary")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_role("heading", name="Domain XML")).to_be_hidden()

    page.get_by_role("tab", name="Hardware").click()
    expect(page).to_have_url(url + "#hardware")
    expect(page.locator("#hardware")).to_be_visible()
    expect(page.get_by_role("heading", name="Overview")).to_be_hidden()
    page.reload()
    expect(page.get_by_role("tab", name="Hardware")).to_have_attribute("aria-selected", "true")
    # Back on the VM's page without the address naming a tab (as after a form's redirect).
    page.goto(url)
    expect(page.get_by_role("tab", name="Hardware")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#hardware")).to_be_visible()

    # Console: both consoles at hand; Tuning: read from the host when first shown.
    page.get_by_role("tab", name="Console").click()
    expect(
        page.locator("#console").get_by_role("link", name="Open the serial console")
    ).to_have_attribute("href", f"/vms/{vm.pk}/console/serial/")
    page.get_by_role("tab", name="Tuning").click()
    tuning = page.locator("#tuning")
    expect(tuning.get_by_role("heading", name="vCPUs")).to_be_visible(timeout=15_000)
    expect(tuning.get_by_role("button", name="Set vCPUs")).to_be_visible()

    page.goto(url + "#history")
    history = page.locator("#history")
    expect(history).to_be_visible()
    link = history.get_by_role("link", name=str(job.pk), exact=True)
    expect(link).to_have_attribute("href", f"/jobs/{job.pk}/")
    expect(history).to_contain_text("succeeded")


def test_the_hardware_tabs_add_menu_opens_the_form_for_what_is_added(
    stack, transactional_db, make_vm, people, browser_page
):
    page = browser_page
    vm = elsewhere(make_vm)
    open_as(page, stack, people["member"], f"/vms/{vm.pk}/#hardware")
    add = page.locator("#hardware").get_by_role("button", name="Add", exact=True)
    device = page.get_by_label("Device", exact=True)
    expect(device).to_be_hidden()  # the attach form starts folded

    add.click()
    page.get_by_role("button", name="CD-ROM drive").click()
    expect(device).to_be_visible()
    expect(device).to_have_value("cdrom")
    expect(page.locator("#d-volume")).to_be_focused()

    add.click()
    page.get_by_role("button", name="Disk", exact=True).click()
    expect(device).to_have_value("disk")

    add.click()
    page.get_by_role("button", name="Network interface").click()
    expect(
        page.locator("#nic-attach select, #nic-attach input:not([type=hidden])").first
    ).to_be_focused()
