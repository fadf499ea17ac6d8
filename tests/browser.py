"""Pytest plugin: headless Chromium for the browser tests, driven by Playwright's sync API.

``browser`` (session) launches Debian's Chromium; ``page`` (function) opens a
fresh context per test (no cookies carried over) and, when the test fails,
saves a screenshot to /tmp/e2e-<test name>.png. ``page_in`` makes such a page with
other context options (a phone's), ``signed_in`` gives it a user's session.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

# Playwright's sync API runs an event loop in the test thread; without this
# Django refuses ORM calls there ("You cannot call this from an async context").
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = os.environ.get("PANEL_E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item so `page` can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/install.sh --test (apt-get install chromium)"
        )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def page_in(browser, request, **context_options) -> Iterator:
    """A page in a fresh browser context (no cookies carried over) with those options,
    closed after the test, a screenshot saved to /tmp/e2e-<test name>.png if it failed."""
    context = browser.new_context(**context_options)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
            path = f"/tmp/e2e-{name}.png"
            try:
                page.screenshot(path=path, full_page=True)
                print(f"\nscreenshot of the failed test: {path}")
            except Exception as exc:  # noqa: BLE001 - a lost screenshot must not hide the failure
                print(f"\ncould not save a screenshot to {path}: {exc}")
        context.close()


@pytest.fixture
def page(browser, request) -> Iterator:
    # Wide enough that the navbar is expanded (it collapses below 768 px).
    yield from page_in(browser, request, viewport={"width": 1366, "height": 900})


def signed_in(page, stack, user) -> None:
    """The page's browser carries a session of user on the stack (no login form)."""
    from django.test import Client  # Django is set up by the time a test runs

    client = Client()
    client.force_login(user)
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": stack.url}]
    )
