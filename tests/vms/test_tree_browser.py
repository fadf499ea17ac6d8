"""The sidebar's resource tree in headless Chromium against the running stack with a real
VM: a host opened in the tree lists its VMs, whose state follows live, and stays open on
the next page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .test_vm_browser import act, elsewhere, open_as

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(180)]


def test_a_host_opened_in_the_tree_lists_its_vms_live_and_stays_open(
    stack, transactional_db, make_vm, people, browser_page
):
    page = browser_page
    vm = elsewhere(make_vm)
    member = people["member"]
    sockets = open_as(page, stack, member, "/")
    sidebar = page.get_by_role("navigation", name="Resources")
    host = sidebar.locator("[data-tree-host]", has=page.get_by_role("link", name="local"))
    toggle = host.get_by_role("button", name="local: VMs, pools and networks")
    expect(toggle).to_have_attribute("aria-expanded", "false")

    toggle.click()
    row = host.locator(f"[data-vm='{vm.pk}']")
    expect(row.get_by_role("link", name=vm.name)).to_have_attribute("href", f"/vms/{vm.pk}/")
    expect(row.locator("[data-vm-state]")).to_have_text("shutoff")
    sockets.wait_for_snapshot(page, f"/ws/hosts/{vm.host_id}/")  # the branch follows the host

    elsewhere(act, vm, "start", member)
    expect(row.locator("[data-vm-state]")).to_have_text("running", timeout=10_000)

    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page).to_have_url(f"{stack.url}/jobs/")
    host = page.get_by_role("navigation", name="Resources").locator("[data-tree-host]").first
    expect(host.get_by_role("button")).to_have_attribute("aria-expanded", "true")
    expect(host.get_by_role("link", name=vm.name)).to_be_visible()
