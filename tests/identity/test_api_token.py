"""POST /api/v1/auth/token/ for a user with a second factor needs its code as "otp"."""

from __future__ import annotations

import pytest
from django.test import Client

from panel.models import AuditEvent, SecurityPolicy

from .conftest import PASSWORD, next_code

pytestmark = pytest.mark.django_db

URL = "/api/v1/auth/token/"


def ask(**body):
    return Client().post(
        URL, {"username": "tessa", "password": PASSWORD, **body}, content_type="application/json"
    )


def test_it_asks_for_the_otp_of_a_user_with_an_app(tessa_with_totp):
    _, secret, codes = tessa_with_totp
    missing = ask()
    assert missing.status_code == 401
    assert '"otp"' in missing.json()["detail"]
    wrong = ask(otp="000000")
    assert wrong.status_code == 401 and "wrong" in wrong.json()["detail"]
    assert AuditEvent.objects.filter(action="login.second_factor_failed").exists()
    code = next_code(secret)
    ok = ask(otp=code)
    assert ok.status_code == 200 and ok.json()["token"]
    assert ask(otp=code).status_code == 401  # the same code a second time
    assert ask(otp=codes[0]).status_code == 200  # a recovery code, once
    assert ask(otp=codes[0]).status_code == 401


def test_it_gives_a_token_without_otp_to_a_user_without_a_second_factor(tessa):
    assert ask().status_code == 200


def test_it_refuses_a_token_to_a_user_who_must_set_one_up(tessa):
    SecurityPolicy.objects.create(pk=1, require_second_factor=True)
    refused = ask()
    assert refused.status_code == 403
    assert "Two factors page in the browser" in refused.json()["detail"]
