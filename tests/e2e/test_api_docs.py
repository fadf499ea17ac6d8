"""The API documentation in headless Chromium against the running stack: reachable from
the navigation bar, rendered by Swagger UI under the site's Content-Security-Policy (no
inline script or style), with the panel's endpoints listed."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .test_host_page import ADMIN_PASSWORD, log_in

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.timeout(120)]


def test_the_api_docs_open_from_the_navbar_and_render_under_the_sites_policy(
    stack, transactional_db, django_user_model, page
):
    django_user_model.objects.create_superuser("admin", "", ADMIN_PASSWORD)
    refused: list[str] = []
    page.on(
        "console",
        lambda msg: refused.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))

    log_in(page, stack)
    page.get_by_role("link", name="API", exact=True).click()

    expect(page).to_have_url(stack.url + "/api/v1/docs/")
    expect(page.locator("#swagger-ui .info .title")).to_contain_text("KVM panel API")
    expect(page.locator("#swagger-ui .opblock").first).to_be_visible()
    # Swagger UI draws a long document's operations as they scroll into view.
    seen = operations_scrolled_through(page)
    assert any(path.startswith("/api/v1/vms/") for _method, path in seen)
    assert len(seen) > 100
    assert refused == [] and page_errors == [], (refused, page_errors)


def operations_scrolled_through(page) -> set[tuple[str, str]]:
    """Every (method, path) the documentation shows, scrolling from top to bottom."""
    seen: set[tuple[str, str]] = set()
    read = """() => [...document.querySelectorAll('#swagger-ui .opblock')].map(op => [
        op.querySelector('.opblock-summary-method')?.textContent || '',
        op.querySelector('.opblock-summary-path')?.textContent || ''])"""
    for _ in range(400):
        seen.update((method, path.replace("\u200b", "")) for method, path in page.evaluate(read))
        at_end = page.evaluate(
            "window.innerHeight + window.scrollY >= document.body.scrollHeight - 2"
        )
        if at_end:
            break
        page.mouse.wheel(0, 800)
        page.wait_for_timeout(50)
    return seen
