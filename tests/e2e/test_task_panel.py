# ruff: noqa: F811  (fixtures imported from the VM and phone tests)
"""In headless Chromium against the running stack: the task panel at the foot of every
page opens from its bar, shows a job started meanwhile (a real refresh of the local
host) without a reload, follows it live until it succeeded, and stays open on the next
page; at a phone's width, in the dark theme, it fits the screen and covers none of the
page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from panel import services
from panel.actors import Actor
from panel.models import Job
from tests.browser import signed_in
from tests.stack import worker_holding_jobs
from tests.vms.conftest import (  # noqa: F401  (fixtures)
    fast_password_hashing,
    local_host,
    people,
)

from .test_accessibility import finish_jobs
from .test_phone import WIDTHS, phone  # noqa: F401  (the phone fixture)

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.timeout(180)]


@pytest.mark.libvirt
def test_a_new_job_appears_in_the_open_panel_and_succeeds_live(
    stack, transactional_db, local_host, people, page
):
    admin = people["admin"]
    signed_in(page, stack, admin)
    page.goto(stack.url + "/")
    panel = page.locator("[data-task-panel]")
    bar = panel.locator("[data-task-toggle]")
    expect(bar).to_have_text("Tasks")
    expect(bar).to_have_attribute("aria-expanded", "false")
    expect(panel.get_by_role("table")).to_be_hidden()
    bar.click()
    expect(bar).to_have_attribute("aria-expanded", "true")
    expect(panel.get_by_role("table")).to_be_visible()
    page.evaluate("window.notReloaded = true")
    try:
        with worker_holding_jobs():
            job = services.refresh_host(local_host, actor=Actor(admin))
            row = panel.locator(f'[data-task-job="{job.pk}"]')
            expect(row.locator("[data-job-state]")).to_have_text("queued", timeout=20_000)
            expect(bar).to_have_text("Tasks: 1 running")
            link = row.get_by_role("link", name=f"Host refresh #{job.pk}")
            expect(link).to_have_attribute("href", f"/jobs/{job.pk}/")
            target = row.get_by_role("link", name="local", exact=True)
            expect(target).to_have_attribute("href", f"/hosts/{local_host.pk}/")
        # The worker takes it now; the row follows it over the job's websocket.
        expect(row.locator("[data-job-state]")).to_have_text("succeeded", timeout=60_000)
        expect(row.locator("[data-job-progress]")).to_have_attribute("aria-valuenow", "100")
        expect(bar).to_have_text("Tasks", timeout=10_000)
    finally:
        finish_jobs()
    assert page.evaluate("window.notReloaded") is True

    page.get_by_role("link", name="VMs", exact=True).click()
    expect(page).to_have_url(f"{stack.url}/vms/")
    expect(bar).to_have_attribute("aria-expanded", "true")
    expect(row.locator("[data-job-state]")).to_have_text("succeeded")
    bar.click()
    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page).to_have_url(f"{stack.url}/jobs/")
    expect(bar).to_have_attribute("aria-expanded", "false")
    expect(panel.get_by_role("table")).to_be_hidden()


def test_at_a_phones_width_in_the_dark_the_open_panel_fits_and_covers_nothing(
    stack, transactional_db, people, phone
):
    admin = people["admin"]
    for n in range(3):
        Job.objects.create(
            kind="host.refresh", target=f"host:a-rather-long-host-name-{n}", state="succeeded"
        )
    phone.emulate_media(color_scheme="dark")
    signed_in(phone, stack, admin)
    phone.goto(stack.url + "/jobs/")
    expect(phone.locator("html")).to_have_attribute("data-bs-theme", "dark")
    bar = phone.locator("[data-task-toggle]")
    bar.click()
    panel = phone.locator("[data-task-panel]")
    expect(panel.get_by_role("table")).to_be_visible()
    width, window = phone.evaluate(WIDTHS)
    assert width <= 390 and window <= 390, (width, window)
    box = panel.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    # The page scrolls far enough for its last line to come out above the panel.
    phone.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    last = phone.locator("main > *").last.bounding_box()
    top = panel.bounding_box()
    assert last is not None and top is not None
    assert last["y"] + last["height"] <= top["y"] + 1, (last, top)
    background = phone.evaluate(
        "getComputedStyle(document.querySelector('[data-task-panel]')).backgroundColor"
    )
    assert background == phone.evaluate("getComputedStyle(document.body).backgroundColor")
