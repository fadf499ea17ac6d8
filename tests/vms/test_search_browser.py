"""Finding things from the keyboard, in headless Chromium against the running stack with
real VMs: the VM list filters as one types (no reload, the address follows, and the rows
shown keep following their VMs' state), "/" puts the cursor in the search box, and the
command palette (Ctrl+K, or "/" on a page without a search box) goes to a page or to a VM
found by name."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from .test_vm_browser import act, elsewhere, open_as

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(180)]


def test_the_vm_list_filters_as_one_types_and_its_rows_stay_live(
    stack, transactional_db, make_vm, people, browser_page
):
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    wanted, other = elsewhere(make_vm), elsewhere(make_vm)
    member = people["member"]
    open_as(page, stack, member, "/vms/")
    rows = page.locator("table.vm-table tbody tr[data-vm]")
    expect(rows).to_have_count(2)
    page.evaluate("window.__marker = 1")

    page.keyboard.press("/")
    search = page.get_by_label("Search")
    expect(search).to_be_focused()
    page.keyboard.type(str(wanted.name)[-6:])

    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-vm", str(wanted.pk))
    assert parse_qs(urlparse(page.url).query)["q"] == [str(wanted.name)[-6:]]
    assert page.evaluate("window.__marker") == 1, "the page reloaded"
    # The row shown follows its VM: the list's socket now watches these rows.
    elsewhere(act, wanted, "start", member)
    expect(rows.first.locator("[data-vm-state]")).to_have_text("running", timeout=10_000)

    search.fill("")
    expect(rows).to_have_count(2)
    page.get_by_label("State").select_option("running")
    expect(rows).to_have_count(1)
    assert other.pk != wanted.pk and page.evaluate("window.__marker") == 1
    assert errors == []


def test_the_command_palette_goes_to_a_page_or_a_vm_found_by_name(
    stack, transactional_db, make_vm, people, browser_page
):
    page = browser_page
    vm = elsewhere(make_vm)
    open_as(page, stack, people["member"], "/")
    palette = page.get_by_role("dialog", name="Go to")

    page.keyboard.press("/")  # the dashboard has no search box: the palette opens
    expect(palette).to_be_visible()
    box = palette.get_by_role("combobox")
    expect(box).to_be_focused()
    box.type("stor")
    expect(palette.get_by_role("option")).to_have_text(["Storagepage"])
    box.press("Enter")
    expect(page).to_have_url(f"{stack.url}/storage/")

    page.keyboard.press("Control+k")
    expect(palette).to_be_visible()
    palette.get_by_role("combobox").type(vm.name)
    option = palette.get_by_role("option").filter(has_text=vm.name)
    expect(option).to_have_count(1)
    expect(option).to_contain_text("VM")
    # Down to the VM's line (pages come first, none matches here) and Enter.
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowUp")
    expect(option).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{stack.url}/vms/{vm.pk}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text(vm.name)


def test_a_filter_saved_under_a_name_brings_the_list_back_to_it(
    stack, transactional_db, make_vm, people, browser_page
):
    page = browser_page
    running, stopped = elsewhere(make_vm, running=True), elsewhere(make_vm)
    open_as(page, stack, people["member"], "/vms/")
    rows = page.locator("table.vm-table tbody tr[data-vm]")
    saving = page.get_by_role("button", name="Save this filter…")
    expect(saving).to_be_disabled()  # nothing filtered yet

    page.get_by_label("State").select_option("running")
    expect(rows).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept("up now"))
    saving.click()
    saved = page.get_by_role("link", name="up now")
    expect(saved).to_have_attribute("href", "?state=running")

    page.goto(f"{stack.url}/vms/")  # another visit: the saved filter is still offered
    expect(rows).to_have_count(2)
    page.get_by_role("link", name="up now").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-vm", str(running.pk))
    assert stopped.pk != running.pk

    page.get_by_role("button", name="Forget the saved filter up now").click()
    expect(page.get_by_role("link", name="up now")).to_have_count(0)
