"""Getting past the password prompt of sensitive actions.

The attacks: someone at an unlocked, signed-in browser guesses the password on the
re-authentication page until one works; a link to the page carries ?next= to another
site, so that the confirmed user lands on a phishing page.

What the panel does: the guesses count in the login's throttle (per username and
address, PANEL_LOGIN_FAILURES), so after five wrong ones even the right password is
refused for a while, and each is audited ("reauth.failed"); next is followed only
within the panel, anything else leads to the dashboard.

In-process (the test client, from an address of its own): the throttle's counters in
Redis are the login's, tested over real HTTP in test_login.py.
"""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from panel import throttle
from panel.models import AuditEvent
from tests.sessions.conftest import ALICE_PASSWORD, stale

pytestmark = pytest.mark.sqlite


@pytest.fixture
def alice(plain_user, settings) -> Client:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    plain_user.set_password(ALICE_PASSWORD)
    plain_user.save()
    ip = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    client = Client(REMOTE_ADDR=ip)
    client.force_login(plain_user)
    stale(client)
    yield client
    throttle.reset("alice", ip)


def test_it_throttles_password_guesses_on_the_reauth_page(alice):
    for guess in range(5):
        wrong = alice.post("/account/reauth/", {"password": f"guess-{guess}"})
        assert "That password is not right" in wrong.content.decode()

    right = alice.post("/account/reauth/", {"password": ALICE_PASSWORD, "next": "/account/"})

    assert right.status_code == 400
    assert "Too many failed logins for this user from your address." in right.content.decode()
    denied = AuditEvent.objects.filter(action="reauth.failed", username="alice")
    assert sorted(denied.values_list("detail", flat=True)) == ["password"] * 5 + ["throttled"]
    assert not AuditEvent.objects.filter(action="reauth").exists()


@pytest.mark.parametrize(
    "elsewhere",
    [
        "https://phish.example.org/",
        "//phish.example.org/account/",
        "/\\phish.example.org",
        "http://testserver.phish.example.org/",
        "javascript:alert(1)",
    ],
)
def test_it_follows_next_only_within_the_panel(alice, elsewhere):
    form = alice.get("/account/reauth/", {"next": elsewhere}).content.decode()
    done = alice.post("/account/reauth/", {"password": ALICE_PASSWORD, "next": elsewhere})

    assert elsewhere not in form
    assert (done.status_code, done.url) == (302, "/")
