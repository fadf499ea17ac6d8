"""In headless Chromium against the running panel: an authenticator app set up and used
to log in, and a passkey registered and used through Chromium's virtual authenticator.

The panel is reached as http://localhost:<port>: browsers refuse an IP address as the
WebAuthn relying party, and treat localhost as a secure context."""

from __future__ import annotations

import pyotp
import pytest
from playwright.sync_api import expect

from panel.models import AuditEvent, WebAuthnCredential

from .conftest import PASSWORD, next_code

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.timeout(180)]


def base(stack) -> str:
    return stack.url.replace("127.0.0.1", "localhost")


def password_step(page, url: str) -> None:
    page.goto(url + "/login/")
    page.get_by_label("Username").fill("tessa")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def csp_watched(page) -> list[str]:
    """What the page reports against the Content-Security-Policy, as it happens."""
    refused: list[str] = []
    page.on(
        "console",
        lambda msg: refused.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return refused


def log_out(page) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()


def test_it_logs_in_with_the_authenticator_apps_code(stack, transactional_db, tessa, page):
    refused = csp_watched(page)
    url = base(stack)
    password_step(page, url)
    expect(page).to_have_url(url + "/")
    page.goto(url + "/account/two-factor/")
    page.get_by_role("button", name="Set up an authenticator app").click()
    expect(page.locator(".totp-qr svg")).to_be_visible()
    secret = page.locator("[data-totp-secret]").inner_text()
    page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on").click()
    expect(page.locator("[data-recovery-codes] li")).to_have_count(10)
    log_out(page)

    password_step(page, url)
    expect(page).to_have_url(url + "/login/second/")
    page.get_by_label("Code").fill("123456")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("alert").first).to_contain_text("That code is not right")
    page.get_by_label("Code").fill(next_code(secret))
    page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url(url + "/")
    expect(page.locator("nav.navbar")).to_contain_text("tessa")
    assert refused == []


def test_it_registers_a_passkey_and_logs_in_with_it(stack, transactional_db, tessa, page):
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
            }
        },
    )
    refused = csp_watched(page)
    url = base(stack)
    password_step(page, url)
    expect(page).to_have_url(url + "/")
    page.goto(url + "/account/two-factor/")
    page.get_by_label("Name of the new key").fill("laptop passkey")
    page.get_by_role("button", name="Add a key").click()
    expect(page.locator("[data-webauthn-keys]")).to_contain_text("laptop passkey")
    expect(page.locator("[data-recovery-codes] li")).to_have_count(10)
    log_out(page)

    password_step(page, url)
    expect(page).to_have_url(url + "/login/second/")
    page.get_by_role("button", name="Use security key").click()
    expect(page).to_have_url(url + "/")
    expect(page.locator("nav.navbar")).to_contain_text("tessa")
    key = WebAuthnCredential.objects.get(user=tessa)
    assert key.name == "laptop passkey" and key.last_used is not None
    events = AuditEvent.objects.filter(username="tessa")
    assert events.filter(action="mfa.webauthn_added").exists()
    assert events.filter(action="login.second_factor", detail="security key").exists()
    assert refused == []
