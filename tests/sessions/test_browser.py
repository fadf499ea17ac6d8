"""In headless Chromium against the running stack: a user signed in on two browsers
ends the other one from "Your sessions"; the other's open page loses its live bell at
once and its next page is the login. The sessions pages pass axe."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.browser import page_in
from tests.e2e.test_accessibility import Page, check_pages

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.timeout(180)]
PASSWORD = "Brass-lantern-93k"


@pytest.fixture
def fast_password_hashing():
    """Real hashes here: the stack's web server checks the password typed in the form."""


@pytest.fixture
def phone(browser, request) -> Iterator:
    yield from page_in(browser, request, viewport={"width": 1366, "height": 900})


def log_in(page, stack, username: str = "dora") -> None:
    page.goto(stack.url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(stack.url + "/")


def test_it_ends_the_other_browsers_session_from_the_sessions_page(
    stack, transactional_db, django_user_model, page, phone
):
    django_user_model.objects.create_user("dora", "dora@example.test", PASSWORD)
    log_in(phone, stack)
    log_in(page, stack)
    phone.goto(stack.url + "/vms/")
    bell = phone.get_by_role("link", name="Notifications", exact=True)
    expect(bell).to_have_attribute("data-live", "1")

    page.goto(stack.url + "/account/")
    page.get_by_role("link", name="Your sessions").click()
    rows = page.locator("[data-session]")
    expect(rows).to_have_count(2)
    expect(page.locator("[data-this-session]")).to_contain_text("this session")
    expect(rows.first).to_contain_text("Chrome")
    page.locator("[data-session]:not([data-this-session])").get_by_role(
        "button", name="Revoke"
    ).click()

    expect(page.locator(".alert-success")).to_contain_text("That session was ended")
    expect(rows).to_have_count(1)
    expect(bell).not_to_have_attribute("data-live", "1")
    phone.reload()
    expect(phone).to_have_url(re.compile(r"/login/\?next=/vms/$"))
    page.goto(stack.url + "/vms/")
    expect(page).to_have_url(stack.url + "/vms/")


def test_the_sessions_pages_pass_axe_in_both_themes(
    stack, transactional_db, django_user_model, page
):
    ada = django_user_model.objects.create_superuser("ada", "ada@example.test", PASSWORD)
    log_in(page, stack, "ada")
    check_pages(
        page,
        stack,
        [
            Page("your sessions", "/account/sessions/"),
            Page("confirm your password", "/account/reauth/?next=/users/"),
            Page("a user's sessions", f"/users/{ada.pk}/sessions/"),
        ],
    )
