"""Re-authentication for user administration: pages send a session whose last proof is
older than PANEL_REAUTH_SECONDS to confirm the password (and back), the API refuses
without X-Panel-Password; a fresh login counts as recent."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from panel.identity.reauth import API_REFUSAL
from panel.models import AuditEvent

from .conftest import ADMIN_PASSWORD, stale

pytestmark = pytest.mark.sqlite
User = get_user_model()
NEW = {"username": "bob", "password": "Silver-meadow-62r"}


@pytest.fixture
def admin_browser(admin_user, browser_of):
    return browser_of("admin")


def test_a_fresh_login_may_create_a_user_at_once(admin_browser):
    response = admin_browser.post("/users/", NEW)

    assert response.status_code == 302
    assert User.objects.filter(username="bob").exists()


def test_it_asks_for_the_password_again_then_creates_the_user(admin_browser):
    stale(admin_browser)

    response = admin_browser.post("/users/", NEW)

    assert response.status_code == 302
    assert response.url == "/account/reauth/?next=%2Fusers%2F"
    assert not User.objects.filter(username="bob").exists()
    page = admin_browser.get(response.url)
    assert "Confirm who you are to go on" in page.content.decode()

    wrong = admin_browser.post("/account/reauth/", {"password": "guess", "next": "/users/"})
    assert wrong.status_code == 400
    assert "That password is not right: try again." in wrong.content.decode()

    right = admin_browser.post("/account/reauth/", {"password": ADMIN_PASSWORD, "next": "/users/"})
    assert (right.status_code, right.url) == (302, "/users/")
    assert admin_browser.post("/users/", NEW).status_code == 302
    assert User.objects.filter(username="bob").exists()
    assert [
        (e.action, e.result, e.detail)
        for e in AuditEvent.objects.filter(action__startswith="reauth").order_by("id")
    ] == [("reauth.failed", "denied", "password"), ("reauth", "success", "password")]


def test_it_asks_again_before_disabling_a_user_or_setting_a_password(admin_browser, plain_user):
    stale(admin_browser)

    disable = admin_browser.post(f"/users/{plain_user.pk}/active/", {"active": "0"})
    password = admin_browser.get(f"/users/{plain_user.pk}/password/")

    assert disable.url == "/account/reauth/?next=%2Fusers%2F"
    assert password.url == f"/account/reauth/?next=%2Fusers%2F{plain_user.pk}%2Fpassword%2F"
    plain_user.refresh_from_db()
    assert plain_user.is_active


def test_it_answers_a_non_admin_403_not_a_password_prompt(plain_user, admin_user, browser_of):
    alice = browser_of("alice")
    stale(alice)

    assert alice.get(f"/users/{admin_user.pk}/password/").status_code == 403
    assert alice.post("/users/", NEW).status_code == 403


def test_the_api_wants_the_password_with_a_token(admin_user, client):
    token = client.post(
        "/api/v1/auth/token/",
        {"username": "admin", "password": ADMIN_PASSWORD},
        content_type="application/json",
    ).json()["token"]
    auth = {"Authorization": f"Token {token}"}

    bare = client.post("/api/v1/users/", NEW, content_type="application/json", headers=auth)
    wrong = client.post(
        "/api/v1/users/",
        NEW,
        content_type="application/json",
        headers={**auth, "X-Panel-Password": "guess"},
    )
    right = client.post(
        "/api/v1/users/",
        NEW,
        content_type="application/json",
        headers={**auth, "X-Panel-Password": ADMIN_PASSWORD},
    )

    assert (bare.status_code, bare.json()["detail"]) == (403, API_REFUSAL)
    assert (wrong.status_code, wrong.json()["detail"]) == (
        403,
        "That password is not right: try again.",
    )
    assert right.status_code == 201, right.content
    assert User.objects.filter(username="bob").count() == 1


def test_the_api_takes_a_browser_session_that_proved_itself_lately(admin_browser):
    recent = admin_browser.post("/api/v1/users/", NEW, content_type="application/json")
    stale(admin_browser)
    old = admin_browser.post(
        "/api/v1/users/", {**NEW, "username": "carol"}, content_type="application/json"
    )

    assert recent.status_code == 201, recent.content
    assert (old.status_code, old.json()["detail"]) == (403, API_REFUSAL)
