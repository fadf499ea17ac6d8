"""The audit log in headless Chromium against the running stack: its filters apply as one
types (no reload, the address follows) and the export link follows them."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from panel import audit
from panel.actors import Actor
from tests.browser import signed_in

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.timeout(120)]


def test_the_audit_log_narrows_as_one_types(stack, transactional_db, admin_user, page):
    for action in ("vm.start", "vm.stop", "vm.start", "pool.create"):
        audit.record(Actor(admin_user), action, "target-x")
    signed_in(page, stack, admin_user)
    page.goto(stack.url + "/audit/")
    rows = page.locator("table.audit tbody tr")
    expect(rows).to_have_count(5)  # and the sign-in's own "login" row
    page.evaluate("window.__marker = 1")

    page.get_by_label("Action").type("vm.st")
    expect(rows).to_have_count(3)
    page.get_by_label("Action").type("a")
    expect(rows).to_have_count(2)

    assert parse_qs(urlparse(page.url).query)["action"] == ["vm.sta"]
    export = page.get_by_role("link", name="Export these as CSV")
    assert "action=vm.sta" in (export.get_attribute("href") or "")
    assert page.evaluate("window.__marker") == 1, "the page reloaded"
