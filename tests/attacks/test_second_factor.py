"""Getting past the second factor.

The attacks: with a user's password but not their second factor, ask for pages and the
API right after the password step (still anonymous?), or answer the security-key step
with a key of one's own; guess the authenticator app's code until one fits; replay a
code or a recovery code that worked once (page and API); register a key into another
user's account with the options their session was given, or remove theirs.

What the panel does: the password step logs nobody in (the session only notes who
waits for a second factor, for PANEL_SECOND_STEP_SECONDS); codes are throttled per user
and address like passwords (PANEL_LOGIN_FAILURES) and each time step and recovery code
works once; a key counts only for the user who registered it; a WebAuthn challenge lives
in the session that asked for it and is used once; keys are reached through their owner.

These run in the test process through Django's whole middleware stack, on the test Redis
(the throttle's counters are this run's own and are cleared after each test).
"""

from __future__ import annotations

import pyotp
import pytest
from django.test import Client

from panel.models import AuditEvent, WebAuthnCredential
from tests.identity.conftest import (  # noqa: F401 - fixtures
    PASSWORD,
    next_code,
    password_step,
    tessa,
    tessa_with_totp,
)
from tests.identity.soft_key import SoftKey

pytestmark = pytest.mark.django_db

ORIGIN = "http://testserver"
THROTTLED = "Too many failed logins for this user from your address."


@pytest.fixture
def mallory(django_user_model):
    return django_user_model.objects.create_user("mallory", password="mallory-pass-1Zx8")


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def register(client: Client, key: SoftKey, options=None):
    options = options or client.post("/account/two-factor/keys/options/").json()
    body = {"name": "key", "credential": key.create(options, ORIGIN)}
    return client.post("/account/two-factor/keys/", body, "application/json")


def test_the_password_alone_logs_nobody_in(tessa_with_totp, settings):  # noqa: F811
    client = Client()
    assert password_step(client)["Location"] == "/login/second/"
    assert client.get("/").url.startswith("/login/?next=")
    assert client.get("/account/two-factor/").url.startswith("/login/?next=")
    assert client.get("/api/v1/projects/").status_code in (401, 403)
    assert (
        client.post(
            "/api/v1/auth/token/", {"username": "tessa", "password": PASSWORD}, "application/json"
        ).status_code
        == 401
    )
    assert "_auth_user_id" not in client.session
    settings.PANEL_SECOND_STEP_SECONDS = 0
    assert client.get("/login/second/").url == "/login/"  # waited too long
    assert client.post("/login/second/key/options/").status_code == 400


def test_guessing_the_code_is_throttled(tessa_with_totp, settings):  # noqa: F811
    _, secret, _ = tessa_with_totp
    client = Client()
    password_step(client)
    for guess in range(settings.PANEL_LOGIN_FAILURES):
        answer = client.post("/login/second/", {"code": f"{guess:06d}"})
        assert "That code is not right" in answer.content.decode()
    refused = client.post("/login/second/", {"code": next_code(secret)})
    assert THROTTLED in refused.content.decode()
    assert "_auth_user_id" not in client.session
    failed = AuditEvent.objects.filter(action="login.second_factor_failed", target="tessa")
    assert failed.count() == settings.PANEL_LOGIN_FAILURES


def test_a_used_code_or_recovery_code_does_not_work_again(tessa_with_totp):  # noqa: F811
    _, secret, codes = tessa_with_totp
    code = next_code(secret)
    first = Client()
    password_step(first)
    assert first.post("/login/second/", {"code": code}).status_code == 302
    token = {"username": "tessa", "password": PASSWORD, "otp": code}
    assert Client().post("/api/v1/auth/token/", token, "application/json").status_code == 401
    token["otp"] = codes[3]
    assert Client().post("/api/v1/auth/token/", token, "application/json").status_code == 200
    again = Client()
    password_step(again)
    assert again.post("/login/second/", {"code": codes[3]}).status_code == 400
    assert again.post("/login/second/", {"code": pyotp.TOTP(secret).now()}).status_code == 400


def test_a_key_of_another_user_does_not_finish_the_login(tessa_with_totp, mallory):  # noqa: F811
    mallorys_key = SoftKey()
    assert register(signed_in(mallory), mallorys_key).status_code == 200
    client = Client()
    password_step(client)  # tessa's stolen password
    options = client.post("/login/second/key/options/").json()
    assert options["allowCredentials"] == []  # tessa has no key
    answer = mallorys_key.get({**options, "rpId": "testserver"}, ORIGIN)
    refused = client.post("/login/second/key/", answer, "application/json")
    assert refused.status_code == 400
    assert "_auth_user_id" not in client.session


def test_a_key_cannot_be_registered_into_another_account(tessa, mallory):  # noqa: F811
    victim = signed_in(tessa)
    victims_options = victim.post("/account/two-factor/keys/options/").json()
    attacker = signed_in(mallory)
    attacker.post("/account/two-factor/keys/options/")  # a challenge of mallory's own
    refused = register(attacker, SoftKey(), victims_options)
    assert refused.status_code == 400
    assert not WebAuthnCredential.objects.exists()
    # And a key in tessa's account is not mallory's to remove.
    assert register(victim, SoftKey()).status_code == 200
    key = WebAuthnCredential.objects.get(user=tessa)
    assert attacker.post(f"/account/two-factor/keys/{key.pk}/remove/").status_code == 404
    assert WebAuthnCredential.objects.filter(pk=key.pk).exists()


def test_a_registration_answer_is_not_accepted_twice(tessa):  # noqa: F811
    client = signed_in(tessa)
    options = client.post("/account/two-factor/keys/options/").json()
    key = SoftKey()
    assert register(client, key, options).status_code == 200
    replay = register(client, SoftKey(), options)
    assert replay.status_code == 400
    assert WebAuthnCredential.objects.count() == 1
