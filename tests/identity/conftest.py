"""Users with and without second factors, and the login pages driven by Django's client."""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from django.test import Client

from panel import throttle
from panel.identity import factors

PASSWORD = "tessa-pass-7Qw2"
WRONG_CODE_TEXT = "That code is not right"


@pytest.fixture
def tessa(django_user_model):
    user = django_user_model.objects.create_user("tessa", password=PASSWORD)
    yield user
    throttle.reset("tessa", "127.0.0.1")
    throttle.reset("second-factor:tessa", "127.0.0.1")


def set_up_totp(client: Client) -> str:
    """Set up an authenticator app through the pages as the client's user; its secret
    (read off the page, as a person types it into the app)."""
    assert client.post("/account/two-factor/totp/").status_code == 302
    page = client.get("/account/two-factor/totp/confirm/").content.decode()
    secret = re.search(r"data-totp-secret>([A-Z2-7]+)<", page).group(1)
    response = client.post("/account/two-factor/totp/confirm/", {"code": pyotp.TOTP(secret).now()})
    assert response.status_code == 302, response.content
    return secret


@pytest.fixture
def tessa_with_totp(tessa):
    """tessa with an authenticator app; (user, secret, recovery codes)."""
    client = Client()
    client.force_login(tessa)
    secret = set_up_totp(client)
    page = client.get("/account/two-factor/").content.decode()
    codes = re.findall(r"<li>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})</li>", page)
    assert len(codes) == factors.RECOVERY_CODES
    return tessa, secret, codes


def next_code(secret: str) -> str:
    """A code for a time step later than any used so far (the app's next code: a code is
    accepted one step ahead)."""
    return pyotp.TOTP(secret).at(time.time() + 30)


def password_step(client: Client, username: str = "tessa", password: str = PASSWORD):
    return client.post("/login/", {"username": username, "password": password})
