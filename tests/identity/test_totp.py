"""The authenticator app: set up through the pages, then asked for at every login; codes
computed here with pyotp, as the app computes them."""

from __future__ import annotations

import time

import pyotp
import pytest
from django.test import Client

from panel.identity.policy import AUTH_AT
from panel.models import AuditEvent, TotpDevice

from .conftest import WRONG_CODE_TEXT, next_code, password_step

pytestmark = pytest.mark.django_db


def test_it_sets_up_the_app_with_a_qr_code_and_a_first_code(tessa):
    client = Client()
    client.force_login(tessa)
    client.post("/account/two-factor/totp/")
    page = client.get("/account/two-factor/totp/confirm/").content.decode()
    assert "<svg" in page and "<script" not in page.split("<main")[1].split("</main>")[0]
    refused = client.post("/account/two-factor/totp/confirm/", {"code": "000000"})
    assert refused.status_code == 400
    assert "not the one the app shows now" in refused.content.decode()
    assert not TotpDevice.objects.get(user=tessa).confirmed


def test_it_keeps_the_secret_encrypted(tessa_with_totp):
    user, secret, _ = tessa_with_totp
    assert secret not in TotpDevice.objects.get(user=user).secret


def test_it_asks_for_the_code_after_the_password(tessa_with_totp):
    _, secret, _ = tessa_with_totp
    client = Client()
    response = password_step(client)
    assert response.status_code == 302 and response["Location"] == "/login/second/"
    assert client.get("/").status_code == 302  # still anonymous: the login page
    wrong = client.post("/login/second/", {"code": "123456"})
    assert WRONG_CODE_TEXT in wrong.content.decode()
    ok = client.post("/login/second/", {"code": next_code(secret)})
    assert ok.status_code == 302 and ok["Location"] == "/"
    assert client.get("/").status_code == 200
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"mfa.totp_enabled", "login.second_factor", "login.second_factor_failed"} <= actions


def test_it_refuses_a_code_used_before(tessa_with_totp):
    _, secret, _ = tessa_with_totp
    code = next_code(secret)
    first = Client()
    password_step(first)
    assert first.post("/login/second/", {"code": code}).status_code == 302
    again = Client()
    password_step(again)
    replay = again.post("/login/second/", {"code": code})
    assert replay.status_code == 400 and WRONG_CODE_TEXT in replay.content.decode()
    # An older code of the app (one step back) is refused too, after a later one was used.
    older = again.post("/login/second/", {"code": pyotp.TOTP(secret).now()})
    assert older.status_code == 400


def test_it_takes_a_recovery_code_once(tessa_with_totp):
    _, _, codes = tessa_with_totp
    first = Client()
    password_step(first)
    assert first.post("/login/second/", {"code": codes[0].upper()}).status_code == 302
    again = Client()
    password_step(again)
    assert again.post("/login/second/", {"code": codes[0]}).status_code == 400
    assert AuditEvent.objects.filter(action="mfa.recovery_used").count() == 1


def test_it_logs_in_without_a_second_step_a_user_who_has_none(tessa):
    client = Client()
    response = password_step(client)
    assert response.status_code == 302 and response["Location"] == "/"


def test_it_asks_to_confirm_who_you_are_to_remove_the_app(tessa_with_totp):
    user, secret, recovery = tessa_with_totp
    client = Client()
    password_step(client)
    client.post("/login/second/", {"code": next_code(secret)})
    session = client.session
    session[AUTH_AT] = time.time() - 3600  # logged in an hour ago
    session.save()

    stale = client.post("/account/two-factor/totp/remove/")

    assert stale.status_code == 302 and stale["Location"].startswith("/account/reauth/?next=")
    assert TotpDevice.objects.filter(user=user, confirmed=True).exists()
    wrong = client.post("/account/reauth/", {"code": "0000-0000-0000-0000"})
    assert wrong.status_code == 400 and "That code is not right" in wrong.content.decode()
    right = client.post("/account/reauth/", {"code": recovery[0], "next": "/account/two-factor/"})
    assert (right.status_code, right["Location"]) == (302, "/account/two-factor/")
    client.post("/account/two-factor/totp/remove/")
    assert not TotpDevice.objects.filter(user=user).exists()
    assert AuditEvent.objects.filter(action="reauth", detail="code").exists()
    assert AuditEvent.objects.filter(action="mfa.totp_disabled").exists()


def test_it_replaces_the_recovery_codes(tessa_with_totp):
    user, _, codes = tessa_with_totp
    client = Client()
    client.force_login(user)
    client.post("/account/two-factor/recovery/")
    page = client.get("/account/two-factor/").content.decode()
    assert "recovery codes (shown only now)" in page
    assert codes[1] not in page
    second = Client()
    password_step(second)
    assert second.post("/login/second/", {"code": codes[1]}).status_code == 400
