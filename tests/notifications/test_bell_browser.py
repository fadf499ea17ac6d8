"""In headless Chromium against the running stack: a member subscribes from the
Subscriptions page, a job of their project fails in the worker, and the bell of the page
they have open counts it at once; the Notifications page shows it and marks it read."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser import signed_in

from .test_delivery_live import failing_job

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.timeout(180)]


def test_it_counts_a_failed_job_on_the_bell_of_an_open_page(
    stack, transactional_db, people, alpha, page
):
    member = people["member"]
    signed_in(page, stack, member)
    page.goto(stack.url + "/notifications/subscriptions/")
    page.get_by_label("A job failed").check()
    page.get_by_label("In project").select_option(label="alpha")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator(".alert-success")).to_contain_text("Subscribed.")

    page.goto(stack.url + "/vms/")
    bell = page.get_by_role("link", name="Notifications", exact=True)
    count = bell.locator("[data-bell-count]")
    expect(count).to_be_hidden()
    expect(bell).to_have_attribute("data-live", "1")  # its socket is open: what comes is pushed
    job_id = failing_job(member, alpha)

    expect(count).to_have_text("1", timeout=60_000)
    bell.click()
    expect(page.get_by_role("heading", name="Notifications")).to_be_visible()
    expect(page.locator("[data-notification-list]")).to_contain_text(
        f"Host refresh #{job_id} failed on host:gone"
    )
    page.get_by_role("button", name="Mark all read").click()
    expect(page.locator(".alert-success")).to_contain_text("1 notification marked read.")
    expect(count).to_be_hidden()
