"""Users who log in through the login form, from addresses and browsers of their own."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from django.contrib.sessions.backends.base import SessionBase
from django.test import Client

from panel import throttle
from panel.identity.policy import AUTH_AT

ALICE_PASSWORD = "alice-pass-7Hq2"
ADMIN_PASSWORD = "admin-pass-9d3k"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def address() -> Iterator[Callable[[], str]]:
    """address(): a client address of its own (TEST-NET-3); its login counts are wiped
    afterwards."""
    used: list[str] = []

    def make() -> str:
        ip = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
        used.append(ip)
        return ip

    yield make
    for ip in used:
        for name in ("alice", "admin"):
            throttle.reset(name, ip)


@pytest.fixture
def browser_of(address) -> Callable[..., Client]:
    """browser_of("alice", agent): a client that logged in through the login form."""

    def make(username: str, agent: str = FIREFOX) -> Client:
        client = Client(REMOTE_ADDR=address(), HTTP_USER_AGENT=agent)
        password = ALICE_PASSWORD if username == "alice" else ADMIN_PASSWORD
        response = client.post("/login/", {"username": username, "password": password})
        assert response.status_code == 302, response.content
        return client

    return make


def session_of(client: Client) -> SessionBase:
    return client.session


def age(client: Client, **seconds_ago: float) -> None:
    """Move the session's times back: age(client, **{LOGIN_AT: 3600})."""
    session = client.session
    now = time.time()
    for key, ago in seconds_ago.items():
        session[key] = now - ago
    session.save()


def stale(client: Client) -> None:
    """The session's last proof of its user is older than the re-authentication window."""
    age(client, **{AUTH_AT: 301})
