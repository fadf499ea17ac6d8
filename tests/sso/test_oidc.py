"""Signing in with OpenID Connect against the test provider (tests/sso/provider), the
panel driven by Django's test client, the provider's pages by requests: the account
appears at the first sign-in with the memberships its groups map to, keeps its identity
when the name changes at the provider, and follows the groups at each sign-in."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from panel.models import AuditEvent, DirectoryMapping, Membership, OidcIdentity, Project
from tests.identity.conftest import next_code, set_up_totp
from tests.sso.oidc_provider import (
    NAME,
    Provider,
    sign_in_at_provider,
)

pytestmark = pytest.mark.django_db


def sign_in(client, provider: Provider, username: str, password: str, next_url: str = ""):
    """The whole sign-in: the panel's redirect, the provider's pages, the callback."""
    start = client.get("/login/oidc/" + (f"?next={next_url}" if next_url else ""))
    assert start.status_code == 302 and start["Location"].startswith(provider.issuer)
    callback = sign_in_at_provider(start["Location"], username, password)
    return client.get(callback.removeprefix("http://testserver"))


def roles(username: str) -> dict[str, str]:
    return dict(
        Membership.objects.filter(user__username=username).values_list("project__name", "role")
    )


def test_it_creates_the_account_at_the_first_sign_in_with_its_mapped_roles(client, sso):
    alpha = Project.objects.create(name="alpha")
    DirectoryMapping.objects.create(source="oidc", group="ops", project=alpha, role="operator")
    sso.admin("user", "erin", "erin-pass-5", "ops", "unmapped")

    answer = sign_in(client, sso, "erin", "erin-pass-5", next_url="/projects/")

    assert answer.status_code == 302 and answer["Location"] == "/projects/"
    assert client.get("/").context["user"].username == "erin"
    assert roles("erin") == {"alpha": "operator"}
    erin = get_user_model().objects.get(username="erin")
    assert not erin.has_usable_password()
    assert erin.email == "erin@example.org"
    login = AuditEvent.objects.get(action="login", username="erin")
    assert login.detail == "OIDC"
    assert AuditEvent.objects.filter(action="sso.membership_added", username="erin").exists()


def test_it_keeps_one_account_when_the_name_changes_at_the_provider(client, sso):
    sso.admin("user", "frank", "frank-pass-5")
    sign_in(client, sso, "frank", "frank-pass-5")
    client.logout()
    sso.admin("rename", "frank", "francis")

    answer = sign_in(client, sso, "francis", "frank-pass-5")

    assert answer.status_code == 302
    assert client.get("/").context["user"].username == "frank"
    assert not get_user_model().objects.filter(username="francis").exists()
    assert OidcIdentity.objects.filter(user__username="frank").count() == 1


def test_it_asks_for_the_panels_second_factor_after_the_provider(client, sso):
    sso.admin("user", "hilda", "hilda-pass-5")
    sign_in(client, sso, "hilda", "hilda-pass-5")
    secret = set_up_totp(client)
    client.logout()

    answer = sign_in(client, sso, "hilda", "hilda-pass-5", next_url="/projects/")

    assert answer.status_code == 302 and answer["Location"] == "/login/second/"
    assert client.get("/projects/")["Location"].startswith("/login/")
    done = client.post("/login/second/", {"code": next_code(secret)})
    assert done.status_code == 302 and done["Location"] == "/projects/"
    assert client.get("/").context["user"].username == "hilda"


def test_it_follows_the_groups_at_each_sign_in(client, sso):
    alpha = Project.objects.create(name="alpha")
    beta = Project.objects.create(name="beta")
    DirectoryMapping.objects.create(source="oidc", group="ops", project=alpha, role="operator")
    DirectoryMapping.objects.create(source="oidc", group="qa", project=beta, role="viewer")
    sso.admin("user", "gina", "gina-pass-5", "ops")
    sign_in(client, sso, "gina", "gina-pass-5")
    gina = get_user_model().objects.get(username="gina")
    Membership.objects.create(user=gina, project=beta, role="member")  # given by hand
    client.logout()
    sso.admin("groups", "gina", "qa")

    sign_in(client, sso, "gina", "gina-pass-5")

    assert roles("gina") == {"beta": "member"}
    assert AuditEvent.objects.filter(action="sso.membership_removed", username="gina").exists()


def test_it_refuses_an_account_disabled_here(client, sso):
    sso.admin("user", "hugo", "hugo-pass-5")
    sign_in(client, sso, "hugo", "hugo-pass-5")
    client.logout()
    get_user_model().objects.filter(username="hugo").update(is_active=False)

    answer = sign_in(client, sso, "hugo", "hugo-pass-5")

    assert answer.status_code == 302 and answer["Location"] == "/login/"
    page = client.get("/login/").content.decode()
    assert "Your account here is disabled" in page
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action="login.failed", target="OIDC").exists()


def test_it_offers_the_provider_on_the_login_page_only_when_set_up(client, settings, sso):
    assert f"Sign in with {NAME}" in client.get("/login/?next=/vms/").content.decode()
    assert 'href="/login/oidc/?next=/vms/"' in client.get("/login/?next=/vms/").content.decode()

    settings.PANEL_OIDC_ISSUER = ""

    assert "Sign in with" not in client.get("/login/").content.decode()
    assert client.get("/login/oidc/").status_code == 404
    assert client.get("/login/oidc/callback/?code=x&state=y").status_code == 404


def test_it_says_so_when_the_provider_cannot_be_reached(client, settings, sso):
    settings.PANEL_OIDC_ISSUER = "http://127.0.0.1:9/o"  # nothing listens on port 9

    answer = client.get("/login/oidc/", follow=True)

    assert answer.redirect_chain[-1][0] == "/login/"
    assert f"{NAME} cannot be reached now" in answer.content.decode()
