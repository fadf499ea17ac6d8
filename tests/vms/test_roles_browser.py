"""Roles and grants in headless Chromium against the running stack: an admin defines a
role on the Roles page, grants it on a project's page to someone outside the project, who
then sees the project; the role cannot be deleted while the grant uses it, and removing
the grant takes the project away again."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from panel.models import Grant, Role

from .test_vm_browser import open_as

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.timeout(180)]


def test_a_role_defined_and_granted_on_the_pages_reaches_its_holder(
    stack, transactional_db, people, browser_page, browser
):
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    alpha = people.alpha
    open_as(page, stack, people["admin"], "/roles/")

    page.get_by_label("Name").fill("watcher")
    page.get_by_label("console: Watch a VM's serial and graphical consoles").check()
    page.get_by_role("button", name="Define role").click()
    expect(page.get_by_role("alert").filter(has_text="Role watcher defined.")).to_be_visible()
    expect(page.locator("table.roles tbody tr", has_text="watcher")).to_contain_text(
        "console, view"
    )

    page.goto(f"{stack.url}/projects/{alpha.pk}/")
    page.locator("#grant-username").fill("outsider")
    page.locator("#grant-role").select_option("watcher")
    page.get_by_role("button", name="Add grant").click()
    row = page.locator("table.grants tbody tr", has_text="outsider")
    expect(row).to_contain_text("watcher")
    expect(row).to_contain_text("the whole project")

    outsiders = browser.new_context(viewport={"width": 1366, "height": 900})
    outsider = outsiders.new_page()
    open_as(outsider, stack, people["outsider"], "/projects/")
    expect(
        outsider.get_by_role("table").get_by_role("link", name="alpha", exact=True)
    ).to_be_visible()

    page.goto(f"{stack.url}/roles/")
    page.locator("table.roles tbody tr", has_text="watcher").get_by_role(
        "button", name="Delete"
    ).click()
    expect(page.get_by_role("alert").filter(has_text="used by 1 grant")).to_be_visible()
    assert Role.objects.filter(name="watcher").exists()

    page.goto(f"{stack.url}/projects/{alpha.pk}/")
    row.get_by_role("button", name="Remove").click()
    expect(page.locator("table.grants tbody tr", has_text="outsider")).to_have_count(0)
    assert not Grant.objects.filter(user=people["outsider"]).exists()
    outsider.reload()
    expect(
        outsider.get_by_role("table").get_by_role("link", name="alpha", exact=True)
    ).to_have_count(0)
    outsiders.close()
    assert errors == []
