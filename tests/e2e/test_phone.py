# ruff: noqa: F811  (fixtures imported from the VM tests)
"""In headless Chromium at a phone's size (390×844) against the running stack: the VM list,
the dashboard and the other lists fit the screen's width, their rows shown as cards whose
lines are labelled with the column's name; on the VM list each VM's name, state and
selection box are on screen, and a VM picked there starts from the bulk bar's Start. At a
desktop's width the lists are the usual tables."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from networking.models import Network
from panel.choices import AuditResult, JobState
from panel.models import AuditEvent, Job
from storage.models import StoragePool
from tests.browser import page_in, signed_in
from tests.vms.conftest import (  # noqa: F401  (fixtures)
    define_guest,
    fast_password_hashing,
    local_host,
    make_vm,
    people,
)
from vms.models import VirtualMachine

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.timeout(240)]

PHONE = {"width": 390, "height": 844}

# The page's width and the window's, in CSS pixels. A phone's browser zooms a page wider
# than its screen out until the page fits (the window grows past the screen's 390 px, and
# the text shrinks): such a page does not fit either.
WIDTHS = "[document.documentElement.scrollWidth, window.innerWidth]"

# How a table cell is laid out and labelled: its display and its ::before text.
CELL = """(td) => ({
  display: getComputedStyle(td).display,
  label: getComputedStyle(td, '::before').content,
})"""


@pytest.fixture
def phone(browser, request) -> Iterator:
    """A page in a phone's browser: 390×844, touch, mobile viewport."""
    yield from page_in(browser, request, viewport=PHONE, is_mobile=True, has_touch=True)


def on_screen(page, locator) -> None:
    """The element is shown and lies within the screen's width: no sideways scrolling."""
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    assert box is not None
    width = PHONE["width"]
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, (
        f"{locator} spans {box['x']:.0f}–{box['x'] + box['width']:.0f} px of a {width} px screen"
    )


def fits(page) -> None:
    """No sideways scrolling: the page is no wider than the window, the window no wider
    than the phone's screen."""
    page_width, window_width = page.evaluate(WIDTHS)
    assert page_width <= window_width == PHONE["width"], (
        f"{page.url} is {page_width} px wide in a {window_width} px window on a "
        f"{PHONE['width']} px screen"
    )


def cards(page, table: str) -> None:
    """The table's rows are cards: its cells are lines labelled with their column's name."""
    cell = page.locator(f"{table} > tbody > tr > td[data-label]").first
    expect(cell).to_be_visible()
    shown = cell.evaluate(CELL)
    assert shown["display"] != "table-cell"
    assert shown["label"] == '"{}"'.format(cell.get_attribute("data-label"))


@pytest.mark.libvirt
def test_the_vm_list_on_a_phone_shows_each_vm_as_a_card_and_starts_a_picked_one(
    stack, transactional_db, make_vm, people, phone
):
    vms = [make_vm(running=False) for _ in range(3)]
    signed_in(phone, stack, people["member"])
    phone.goto(f"{stack.url}/vms/")
    fits(phone)
    cards(phone, "table.vm-table")
    for vm in vms:
        row = phone.locator(f'tr[data-vm="{vm.pk}"]')
        on_screen(phone, row.get_by_role("link", name=vm.name))
        on_screen(phone, row.locator("[data-vm-state]"))
        expect(row.locator("[data-vm-state]")).to_have_text("shutoff")
        on_screen(phone, row.get_by_label(f"Select {vm.name}"))
        # Each line says which column it is.
        expect(row.locator("td[data-label='State']")).to_be_visible()
    # The bulk bar wraps: every one of its buttons is on screen.
    bar = phone.locator("#bulk")
    for name in ("Start", "Shut down", "Force off", "Migrate", "Delete", "Forget missing"):
        on_screen(phone, bar.get_by_role("button", name=name, exact=True))
    # The filters, one above the other.
    on_screen(phone, phone.get_by_label("Search"))
    on_screen(phone, phone.get_by_role("button", name="Filter", exact=True))
    on_screen(phone, phone.get_by_role("button", name="Save this filter…"))

    picked = vms[1]
    phone.get_by_label(f"Select {picked.name}").tap()
    bar.get_by_role("button", name="Start", exact=True).tap()
    expect(phone.get_by_role("alert")).to_contain_text(f"Start: {picked.name}.")
    fits(phone)
    for vm in vms:
        state = phone.locator(f'tr[data-vm="{vm.pk}"] [data-vm-state]')
        expect(state).to_have_text("running" if vm == picked else "shutoff")
        on_screen(phone, state)
    assert VirtualMachine.objects.get(pk=picked.pk).state == "running"


@pytest.fixture
def listed(transactional_db, people, local_host) -> None:
    """One of everything the lists show, with long values where a list has them."""
    admin = people["admin"]
    for n, state in enumerate((JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED)):
        Job.objects.create(
            kind="host.refresh",
            state=state,
            progress=40 * n,
            target=f"host:{local_host.pk}",
            host=local_host,
            user=admin,
        )
    StoragePool.objects.create(
        host=local_host,
        name="images-on-the-long-named-array",
        type="dir",
        state="active",
        target_path="/var/lib/libvirt/images/a/rather/deep/directory/for/the/pool",
        capacity=100 << 30,
        allocation=40 << 30,
        available=60 << 30,
    )
    Network.objects.create(
        host=local_host,
        name="tenant-network",
        bridge="virbr-tenant",
        active=True,
        ipv4={
            "address": "192.168.150.1",
            "prefix": 24,
            "dhcp_start": "192.168.150.100",
            "dhcp_end": "192.168.150.254",
        },
        ipv6={
            "address": "fd00:dead:beef:150::1",
            "prefix": 64,
            "dhcp_start": "fd00:dead:beef:150::100",
            "dhcp_end": "fd00:dead:beef:150::1ff",
        },
    )
    AuditEvent.objects.create(
        username="admin",
        action="vm.start",
        target="vm:0d7c5a4e-3f61-4b7a-9a3e-2a0f6c1d9e88",
        result=AuditResult.FAILURE,
        detail="The host refused: Requested operation is not valid: domain is already running",
        source_ip="2001:db8:1234:5678:9abc:def0:1234:5678",
    )


@pytest.mark.parametrize(
    "path, table",
    [
        ("/", "table.table-cards"),
        ("/jobs/", "table.table-cards"),
        ("/hosts/", "table.table-cards"),
        ("/storage/", "table.table-cards"),
        ("/networks/", "#network-table"),
        ("/audit/", "table.audit"),
        ("/projects/", "table.table-cards"),
        ("/users/", "table.users"),
    ],
)
def test_the_dashboard_and_the_lists_fit_a_phone_as_cards(
    stack, listed, people, phone, path, table
):
    signed_in(phone, stack, people["admin"])
    phone.goto(stack.url + path)
    fits(phone)
    cards(phone, table)
    rows = phone.locator(f"{table} > tbody > tr")
    for i in range(rows.count()):
        on_screen(phone, rows.nth(i))


def test_the_job_table_on_a_phone_names_each_jobs_state(stack, listed, people, phone):
    signed_in(phone, stack, people["admin"])
    phone.goto(stack.url + "/jobs/")
    fits(phone)
    for state in ("running", "succeeded", "failed"):
        badge = phone.locator(".job-state", has_text=state)
        on_screen(phone, badge)
        expect(badge.locator("xpath=ancestor::td[1]")).to_have_attribute("data-label", "State")


@pytest.mark.libvirt
def test_a_desktop_still_shows_the_vm_list_and_the_jobs_as_tables(
    stack, transactional_db, make_vm, people, page
):
    vm = make_vm(running=False)
    Job.objects.create(kind="host.refresh", state=JobState.SUCCEEDED, user=people["member"])
    signed_in(page, stack, people["member"])
    page.goto(f"{stack.url}/vms/")
    table = page.locator("table.vm-table")
    assert table.evaluate("t => getComputedStyle(t).display") == "table"
    expect(table.locator("thead th")).to_have_count(9)
    for th in table.locator("thead th").all():
        expect(th).to_be_visible()
    cells = table.locator(f'tr[data-vm="{vm.pk}"] > td')
    expect(cells).to_have_count(9)
    tops = {round(c.bounding_box()["y"]) for c in cells.all()}
    assert len(tops) == 1, "a VM's cells are side by side, in one row"
    assert cells.nth(1).evaluate(CELL) == {"display": "table-cell", "label": "none"}
    page.goto(f"{stack.url}/jobs/")
    job_cells = page.locator("main table > tbody > tr").first.locator("td")
    expect(job_cells).to_have_count(7)
    assert len({round(c.bounding_box()["y"]) for c in job_cells.all()}) == 1


@pytest.mark.libvirt
def test_the_vm_page_on_a_phone_fits_and_its_actions_and_tabs_are_at_hand(
    stack, transactional_db, make_vm, people, phone
):
    vm = make_vm(running=False)
    # Details read "just now": the page does not reload itself to show fresh ones mid-test.
    fresh_until = (timezone.now() + timedelta(minutes=10)).isoformat()
    VirtualMachine.objects.filter(pk=vm.pk).update(details={"read_at": fresh_until})
    signed_in(phone, stack, people["member"])
    phone.goto(f"{stack.url}/vms/{vm.pk}/")
    fits(phone)
    buttons = phone.locator(f"[data-vm-buttons='{vm.pk}']")
    for name in ("Start", "Shut down", "Force off", "Reboot"):
        on_screen(phone, buttons.get_by_role("button", name=name, exact=True))
    on_screen(phone, phone.get_by_role("link", name="Serial console"))
    for name in (
        "Summary",
        "Console",
        "Hardware",
        "Snapshots",
        "Backups",
        "Tuning",
        "Options",
        "History",
    ):
        tab = phone.get_by_role("tab", name=name)
        tab.tap()
        expect(tab).to_have_attribute("aria-selected", "true")
        on_screen(phone, tab)
        fits(phone)

    buttons.get_by_role("button", name="Start", exact=True).tap()
    expect(phone.locator("h1 [data-vm-state]")).to_have_text("running", timeout=30_000)
    assert VirtualMachine.objects.get(pk=vm.pk).state == "running"


@pytest.mark.libvirt
def test_the_serial_console_fits_a_phone_and_connects(
    stack, transactional_db, make_vm, people, phone
):
    vm = make_vm(running=True)
    signed_in(phone, stack, people["member"])
    phone.goto(f"{stack.url}/vms/{vm.pk}/console/serial/")
    expect(phone.locator("#console-status")).to_have_text("connected", timeout=20_000)
    fits(phone)
    on_screen(phone, phone.locator("#terminal"))
