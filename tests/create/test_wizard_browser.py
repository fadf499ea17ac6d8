"""Headless Chromium: fill the create wizard, watch the job's progress bar reach 100 %, and
land on the new VM's page with it running; search the OS variants and pick one."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from panel.models import Job
from tests.conftest import ADMIN_PASSWORD
from tests.create.conftest import GUEST_DIR
from vms.models import VirtualMachine

pytestmark = [pytest.mark.browser, pytest.mark.libvirt, pytest.mark.stack, pytest.mark.timeout(240)]


def signed_in_as_admin(page, stack, local_host) -> None:
    """The admin logged in through the form, the local host known to have room."""
    local_host.facts = {
        "cpus": 2,
        "memory_total_bytes": 8 * 1024**3,
        "memory_free_bytes": 4 * 1024**3,
    }
    local_host.save()
    page.goto(stack.url + "/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("button[type=submit]")


def fill_in_the_basics(page, name: str) -> None:
    """The wizard's name, project, host and size fields for the tiny guest."""
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Project").select_option(label="alpha")
    page.get_by_label("Host").select_option(label="local (up)")
    page.get_by_label("vCPUs").fill("1")
    page.get_by_label("Memory (MiB)").fill("96")


def test_the_wizard_creates_a_vm_and_lands_on_its_page_running(
    page, stack, transactional_db, admin_user, local_host, dir_pool, project, created
):
    signed_in_as_admin(page, stack, local_host)
    created.append("wiz1")
    page.goto(stack.url + "/vms/")
    page.get_by_role("link", name="New VM").click()

    fill_in_the_basics(page, "wiz1")
    page.get_by_label("New disk in pool").select_option(str(dir_pool.pk))
    page.get_by_label("Size (GiB)").fill("0.05")
    page.get_by_label("kernel", exact=True).check()
    expect(page.get_by_label("Kernel path")).to_be_visible()
    expect(page.get_by_label("ISO volume")).to_be_hidden()
    page.get_by_label("Kernel path").fill(f"{GUEST_DIR}/vmlinuz")
    page.get_by_label("Initrd path").fill(f"{GUEST_DIR}/initrd.img")
    page.get_by_label("Kernel command line").fill("console=ttyS0")
    page.get_by_label("Start when created").check()
    page.get_by_role("button", name="Create").click()

    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    expect(page.locator("[data-job-progress] .progress-bar")).to_have_text("100 %", timeout=120_000)
    vm = VirtualMachine.objects.get(name="wiz1")
    expect(page).to_have_url(re.compile(rf"/vms/{vm.pk}/$"), timeout=15_000)
    expect(page.locator("[data-vm-state]").first).to_have_text("running")
    assert vm.state == "running" and vm.project == project and vm.owner == admin_user


def test_a_search_narrows_the_os_variants_and_the_wizard_creates_the_vm_with_the_one_picked(
    page, stack, transactional_db, admin_user, local_host, dir_pool, project, created
):
    signed_in_as_admin(page, stack, local_host)
    created.append("wiz2")
    page.goto(stack.url + "/vms/new/")
    expect(page.get_by_label("iso", exact=True)).to_be_checked()
    expect(page.get_by_label("ISO volume")).to_be_visible()

    variant = page.get_by_label("OS variant", exact=True)
    expect(variant).to_have_value("generic")
    search = page.get_by_label("Search OS variants")
    search.fill("debian 1")
    # The first match is chosen at once, and Enter keeps it instead of sending the form.
    expect(page.locator("[data-variant-matches]")).to_have_text(re.compile(r"^\d+ match"))
    expect(variant).to_have_value(re.compile(r"^debian1\d$"))
    search.press("Enter")
    expect(page).to_have_url(stack.url + "/vms/new/")
    variant.select_option(label="Debian 11 (debian11)")
    expect(page.get_by_label("Size (GiB)")).to_have_value("20")  # debian11's recommendation
    search.fill("no such system")
    expect(page.locator("[data-variant-matches]")).to_contain_text("No OS variant matches")
    expect(variant).to_have_value("debian11")
    search.fill("")

    fill_in_the_basics(page, "wiz2")
    page.get_by_label("New disk in pool").select_option(str(dir_pool.pk))
    page.get_by_label("Size (GiB)").fill("0.05")
    page.get_by_label("kernel", exact=True).check()
    page.get_by_label("Kernel path").fill(f"{GUEST_DIR}/vmlinuz")
    page.get_by_label("Initrd path").fill(f"{GUEST_DIR}/initrd.img")
    page.get_by_label("Start when created").uncheck()
    page.get_by_role("button", name="Create").click()

    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    expect(page.locator("[data-job-progress] .progress-bar")).to_have_text("100 %", timeout=120_000)
    vm = VirtualMachine.objects.get(name="wiz2")
    job = Job.objects.get(kind="vm.create", target=f"vm:{vm.pk}")
    assert job.result["os_variant"] == "debian11"
    assert vm.project == project
