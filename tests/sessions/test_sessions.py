"""Sessions: idle and absolute expiry, the "Your sessions" page with revoke and log out
everywhere, an admin's view of a user's sessions, and the audit trail of each."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from panel import services
from panel.actors import Actor
from panel.identity.policy import LOGIN_AT, SEEN_AT
from panel.models import AuditEvent, UserSession
from panel.tasks import end_expired_sessions

from .conftest import CHROME, FIREFOX, age

pytestmark = pytest.mark.sqlite


@pytest.fixture
def alice(plain_user):
    return plain_user


def actions(username: str) -> list[tuple[str, str]]:
    rows = AuditEvent.objects.filter(username=username).order_by("time", "id")
    return [(e.action, e.detail) for e in rows]


def login_page_after(response, client: Client) -> str:
    assert response.status_code == 302
    assert response.url.startswith("/login/?next=")
    return client.get(response.url).content.decode()


def test_it_logs_in_and_out_with_an_audit_row_and_a_session_row_each(alice, browser_of):
    client = browser_of("alice")
    row = UserSession.objects.get(user=alice)
    assert row.session_key == client.session.session_key
    assert row.user_agent == FIREFOX
    assert row.address is not None

    client.post("/logout/")

    assert not UserSession.objects.filter(user=alice).exists()
    assert actions("alice") == [("login", ""), ("logout", "")]


def test_it_ends_a_session_idle_too_long_and_says_why_on_the_login_page(alice, browser_of):
    client = browser_of("alice")
    age(client, **{SEEN_AT: 3601})

    body = login_page_after(client.get("/vms/"), client)

    assert "Your session expired after 60 minutes without activity; sign in again." in body
    assert not UserSession.objects.filter(user=alice).exists()
    assert ("session.expired", "idle") in actions("alice")
    assert ("logout", "") not in actions("alice")  # expired, not logged out
    assert client.get("/account/").status_code == 302


@override_settings(PANEL_SESSION_MAX_SECONDS=7200)
def test_it_ends_a_busy_session_at_its_absolute_lifetime(alice, browser_of):
    client = browser_of("alice")
    assert client.get("/account/").status_code == 200
    age(client, **{LOGIN_AT: 7201, SEEN_AT: 5})

    body = login_page_after(client.get("/account/"), client)

    assert "Your session ended 2 hours after you signed in" in body
    assert ("session.expired", "absolute") in actions("alice")


def test_it_notes_activity_at_most_once_a_minute(alice, browser_of):
    client = browser_of("alice")
    age(client, **{SEEN_AT: 30})
    before = client.session[SEEN_AT]

    client.get("/account/")
    assert client.session[SEEN_AT] == before  # under a minute: not written

    age(client, **{SEEN_AT: 61})
    client.get("/account/")
    assert time.time() - client.session[SEEN_AT] < 5
    assert (time.time() - UserSession.objects.get(user=alice).last_seen.timestamp()) < 5


def test_it_lists_each_session_and_ends_the_one_revoked_only(alice, browser_of):
    laptop = browser_of("alice", FIREFOX)
    office = browser_of("alice", CHROME)

    page = laptop.get("/account/sessions/").content.decode()

    assert "Firefox 133 on Linux" in page
    assert "Chrome 131 on Windows" in page
    assert page.count(">this session<") == 1
    office_row = UserSession.objects.get(session_key=office.session.session_key)

    response = laptop.post(f"/account/sessions/{office_row.pk}/revoke/")

    assert response.status_code == 302
    assert login_page_after(office.get("/vms/"), office)
    assert laptop.get("/vms/").status_code == 200
    assert ("session.revoked", f"session #{office_row.pk} from {office_row.address}") in actions(
        "alice"
    )


def test_it_logs_out_all_other_sessions_or_every_one(alice, browser_of):
    here, there, elsewhere = (browser_of("alice") for _ in range(3))

    response = here.post("/account/sessions/revoke-all/", {"keep_this": "1"})

    assert response.status_code == 302
    assert here.get("/vms/").status_code == 200
    for client in (there, elsewhere):
        assert client.get("/vms/").status_code == 302
    assert ("sessions.revoked_all", "2 sessions, this one kept") in actions("alice")

    again = browser_of("alice")
    response = here.post("/account/sessions/revoke-all/")

    assert response.url == "/login/"
    for client in (here, again):
        assert client.get("/vms/").url.startswith("/login/")
    assert not UserSession.objects.filter(user=alice).exists()


def test_it_shows_an_admin_a_users_sessions_and_lets_them_end_them(alice, admin_user, browser_of):
    alice_browser = browser_of("alice")
    admin_browser = browser_of("admin")
    row = UserSession.objects.get(user=alice)

    page = admin_browser.get(f"/users/{alice.pk}/sessions/")
    assert page.status_code == 200
    assert "Sessions of alice" in page.content.decode()
    assert alice_browser.get(f"/users/{admin_user.pk}/sessions/").status_code == 403
    assert alice_browser.post(f"/users/{admin_user.pk}/sessions/revoke-all/").status_code == 403

    admin_browser.post(f"/users/{alice.pk}/sessions/{row.pk}/revoke/")

    assert alice_browser.get("/vms/").status_code == 302
    event = AuditEvent.objects.get(action="session.revoked")
    assert (event.username, event.target) == ("admin", "alice")


def test_it_ends_every_session_of_a_user_an_admin_disables(alice, admin_user, browser_of):
    first, second = browser_of("alice"), browser_of("alice")

    services.set_user_active(alice, active=False, actor=Actor(admin_user))

    assert not UserSession.objects.filter(user=alice).exists()
    for client in (first, second):
        assert client.get("/vms/").status_code == 302


def test_it_keeps_the_session_row_when_a_password_change_renews_the_key(alice, browser_of):
    client = browser_of("alice")
    old_key = client.session.session_key

    response = client.post(
        "/account/",
        {
            "old_password": "alice-pass-7Hq2",
            "new_password1": "Brass-lantern-93k",
            "new_password2": "Brass-lantern-93k",
        },
    )

    assert response.status_code == 302
    new_key = client.session.session_key
    assert new_key != old_key
    assert list(UserSession.objects.filter(user=alice).values_list("session_key", flat=True)) == [
        new_key
    ]
    assert "this session" in client.get("/account/sessions/").content.decode()


def test_it_drops_sessions_a_password_change_ended_from_the_list(alice, browser_of):
    kept, other = browser_of("alice"), browser_of("alice")
    kept.post(
        "/account/",
        {
            "old_password": "alice-pass-7Hq2",
            "new_password1": "Brass-lantern-93k",
            "new_password2": "Brass-lantern-93k",
        },
    )

    kept.get("/account/sessions/")

    assert other.get("/vms/").status_code == 302
    assert UserSession.objects.filter(user=alice).count() == 1


def test_the_periodic_pass_ends_sessions_that_expired_without_a_request(alice, browser_of):
    idle, busy = browser_of("alice"), browser_of("alice")
    UserSession.objects.filter(session_key=idle.session.session_key).update(
        last_seen=timezone.now() - timedelta(hours=2)
    )

    assert end_expired_sessions() == 1

    assert list(UserSession.objects.values_list("session_key", flat=True)) == [
        busy.session.session_key
    ]
    assert idle.get("/vms/").status_code == 302
    assert busy.get("/vms/").status_code == 200
