# ruff: noqa: F811  (fixtures imported from the VM tests)
"""In headless Chromium against the running stack: a job's page says its name once, loses
its Cancel button live when the job ends and, after a VM's delete, offers the way back to
the VM list; and pages follow the system's light or dark setting until the user picks a
theme with the navbar's button, which the next pages keep."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from panel import hypervisor
from panel.models import Job
from tests.browser import signed_in
from tests.conftest import LOCAL_URI
from tests.stack import worker_holding_jobs
from tests.vms.conftest import (  # noqa: F401  (fixtures)
    define_guest,
    fast_password_hashing,
    local_host,
    make_vm,
    member,
    people,
)
from vms.models import VirtualMachine

from .test_host_page import ADMIN_PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.timeout(180)]


@pytest.mark.libvirt
def test_a_vm_deletes_job_page_drops_cancel_when_done_and_leads_back_to_the_vm_list(
    stack, transactional_db, make_vm, people, page
):
    vm = make_vm(running=False)
    signed_in(page, stack, people["member"])
    page.goto(f"{stack.url}/vms/{vm.pk}/delete/")
    with worker_holding_jobs():
        page.get_by_role("button", name=f"Delete {vm.name}").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(f"VM delete #{job_id(vm)}")
        # The job's name is said once: the progress card does not repeat the heading.
        expect(page.get_by_text(f"VM delete #{job_id(vm)}", exact=True)).to_have_count(1)
        expect(page.get_by_role("button", name="Cancel")).to_be_visible()
        back = page.get_by_role("link", name="Back to virtual machines")
        expect(back).to_be_hidden()
        expect(page.get_by_role("navigation", name="breadcrumb")).to_contain_text("Jobs")
    # The worker takes the job now; the page follows it without reloading.
    expect(page.locator("[data-job-state]")).to_have_text("succeeded", timeout=60_000)
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(back).to_be_visible()
    with pytest.raises(hypervisor.NotFound):
        hypervisor.get_domain(LOCAL_URI, str(vm.pk))
    back.click()
    expect(page).to_have_url(f"{stack.url}/vms/")
    expect(page.get_by_role("link", name=vm.name)).to_have_count(0)
    assert not VirtualMachine.objects.filter(pk=vm.pk).exists()


def job_id(vm: VirtualMachine) -> int:
    return Job.objects.get(target=f"vm:{vm.pk}", kind="vm.delete").pk


def test_pages_follow_the_systems_theme_until_the_user_picks_one(
    stack, transactional_db, django_user_model, page
):
    admin = django_user_model.objects.create_superuser("admin", "", ADMIN_PASSWORD)
    page.emulate_media(color_scheme="dark")
    signed_in(page, stack, admin)
    page.goto(stack.url + "/")
    html = page.locator("html")
    toggle = page.locator("[data-theme-toggle]")
    expect(html).to_have_attribute("data-bs-theme", "dark")
    expect(toggle).to_have_text("Auto (dark)")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.emulate_media(color_scheme="light")
    expect(html).to_have_attribute("data-bs-theme", "light")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != background

    toggle.click()  # auto → light
    expect(toggle).to_have_text("Light")
    toggle.click()  # light → dark, though the system is light
    expect(toggle).to_have_text("Dark")
    expect(html).to_have_attribute("data-bs-theme", "dark")
    page.get_by_role("link", name="VMs", exact=True).click()
    expect(page).to_have_url(f"{stack.url}/vms/")
    expect(html).to_have_attribute("data-bs-theme", "dark")
    toggle.click()  # dark → back to the system's
    expect(toggle).to_have_text("Auto (light)")
    expect(html).to_have_attribute("data-bs-theme", "light")
