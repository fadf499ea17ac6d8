"""The API tokens page in headless Chromium against the running stack: a token made
there shows its key once with a copy button that puts it on the clipboard, the key
works at the API, and revoking it on the page stops it."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import expect

from panel.models import ApiToken

from .test_vm_browser import open_as

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.timeout(180)]


def status_with(stack, key: str) -> int:
    headers = {"Authorization": f"Token {key}"}
    return requests.get(f"{stack.url}/api/v1/projects/", headers=headers, timeout=30).status_code


def test_a_token_made_on_the_page_is_shown_once_copied_used_and_revoked(
    stack, transactional_db, people, browser_page
):
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.url)
    open_as(page, stack, people["member"], "/account/tokens/")

    page.get_by_label("Name").fill("laptop")
    page.get_by_label("Scope").select_option("viewer")
    page.get_by_role("button", name="Create token").click()

    shown = page.locator("code.api-token")
    expect(shown).to_have_count(1)
    key = shown.inner_text()
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == key
    row = page.locator("#api-tokens tbody tr", has_text="laptop")
    expect(row).to_contain_text("console, view")
    assert status_with(stack, key) == 200

    page.reload()
    expect(page.locator("code.api-token")).to_have_count(0)
    row.get_by_role("button", name="Revoke").click()

    expect(page.get_by_role("alert").filter(has_text="Token laptop was revoked.")).to_be_visible()
    assert status_with(stack, key) == 401
    assert ApiToken.objects.get(name="laptop").revoked_at is not None
    assert errors == []
