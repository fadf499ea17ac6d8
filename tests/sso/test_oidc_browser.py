"""Signing in with OpenID Connect in headless Chromium: a panel web server configured
with the test provider (tests/sso/provider) as its issuer, the provider's own login and
consent pages, and back to the panel signed in with the memberships the groups claim
maps to; a second sign-in after a group went removes its membership; a user the
provider refuses, or who cancels there, gets no session."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from panel.models import AuditEvent, DirectoryMapping, Membership, Project
from tests.sso.oidc_provider import NAME, Provider, oidc_provider, sso_panel  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.stack,
    pytest.mark.sqlite,
    pytest.mark.timeout(180),
]


def sign_in(page, panel: str, username: str, password: str, *, consent: str = "Authorize"):
    """From the panel's login page through the provider's pages, as a user clicks."""
    page.goto(panel + "/projects/")
    expect(page).to_have_url(re.compile(r"/login/\?next="))
    page.get_by_role("link", name=f"Sign in with {NAME}").click()
    if page.get_by_label("Username").count():  # the provider has no session of ours yet
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()


def roles(username: str) -> dict[str, str]:
    return dict(
        Membership.objects.filter(user__username=username).values_list("project__name", "role")
    )


def test_a_user_signs_in_at_the_provider_and_their_groups_follow(
    sso_panel,  # noqa: F811
    oidc_provider: Provider,  # noqa: F811
    transactional_db,
    page,
):
    alpha = Project.objects.create(name="alpha")
    DirectoryMapping.objects.create(source="oidc", group="ops", project=alpha, role="operator")
    oidc_provider.admin("user", "quinn", "quinn-pass-5", "ops")

    sign_in(page, sso_panel.url, "quinn", "quinn-pass-5")
    expect(page.get_by_text("Authorize")).to_have_count(2)  # the consent page
    page.get_by_role("button", name="Authorize").click()

    expect(page).to_have_url(sso_panel.url + "/projects/")
    expect(page.get_by_role("table").get_by_role("link", name="alpha")).to_be_visible()
    assert roles("quinn") == {"alpha": "operator"}
    assert AuditEvent.objects.filter(action="login", username="quinn", detail="OIDC").exists()

    oidc_provider.admin("groups", "quinn")  # quinn left ops at the provider
    page.context.clear_cookies()
    sign_in(page, sso_panel.url, "quinn", "quinn-pass-5")
    page.get_by_role("button", name="Authorize").click()

    expect(page).to_have_url(sso_panel.url + "/projects/")
    expect(page.get_by_role("table").get_by_role("link", name="alpha")).to_have_count(0)
    assert roles("quinn") == {}
    assert AuditEvent.objects.filter(action="sso.membership_removed", username="quinn").exists()
    assert get_user_model().objects.filter(username="quinn").count() == 1
    # The server logs (at DEBUG) neither the client's secret nor a PKCE verifier.
    log = sso_panel.log.read_text()
    assert "/login/oidc/callback/" in log
    assert oidc_provider.client_secret not in log and "code_verifier" not in log


def test_a_user_the_provider_refuses_gets_no_session(
    sso_panel,  # noqa: F811
    oidc_provider: Provider,  # noqa: F811
    transactional_db,
    page,
):
    oidc_provider.admin("user", "rita", "rita-pass-5")
    oidc_provider.admin("disable", "rita")

    sign_in(page, sso_panel.url, "rita", "rita-pass-5")

    expect(page.get_by_role("alert")).to_contain_text("the account is disabled")
    page.goto(sso_panel.url + "/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    assert not get_user_model().objects.filter(username="rita").exists()


def test_a_user_who_cancels_at_the_provider_is_told_and_gets_no_session(
    sso_panel,  # noqa: F811
    oidc_provider: Provider,  # noqa: F811
    transactional_db,
    page,
):
    oidc_provider.admin("user", "sam", "sam-pass-5")

    sign_in(page, sso_panel.url, "sam", "sam-pass-5")
    page.get_by_role("button", name="Cancel").click()

    expect(page).to_have_url(sso_panel.url + "/login/")
    expect(page.get_by_role("alert")).to_contain_text(f"{NAME} did not sign you in")
    page.goto(sso_panel.url + "/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    assert AuditEvent.objects.filter(action="login.failed", target="OIDC").exists()
