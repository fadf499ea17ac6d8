"""The attack suite: each test performs one attack end to end, as the hostile user would,
against the running panel (tests.stack: web server, Celery worker and websockify on
Redis) and the real local libvirtd, and checks that it gets nowhere.

Personas (tests.vms.conftest): ``admin``; project alpha: ``operator``, ``member`` (owns
the VMs ``make_vm`` makes), ``member2``, ``viewer``; project beta: ``outsider``.

``attacker("member")`` is that persona at the running stack over real HTTP: a browser
session (cookie and CSRF token, as a browser sends them) and an API token. Each module
carries ``pytestmark = [pytest.mark.stack, pytest.mark.libvirt]`` and names, in its
docstring, the attack and what the panel does about it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from django.test import Client

from panel import services
from panel.actors import Actor
from tests.attacks.media import (  # noqa: F401 - fixtures for the storage attacks
    created_vms,
    make_volume,
    media_pool,
)
from tests.stack import Stack, open_ws
from tests.vms.conftest import (  # noqa: F401 - fixtures used by the attack tests
    admin,
    alpha,
    beta,
    define_guest,
    fast_password_hashing,
    local_host,
    make_vm,
    member,
    people,
    virsh,
    wait_for,
)


@dataclass
class Attacker:
    """One persona at the running stack."""

    name: str
    user: Any
    stack: Stack
    browser: requests.Session
    api_session: requests.Session
    sessionid: str

    def page(self, path: str, **kwargs: Any) -> requests.Response:
        return self.browser.get(self.stack.url + path, timeout=30, allow_redirects=False, **kwargs)

    def post_form(self, path: str, data: dict[str, Any] | None = None, **kwargs: Any):
        """A form post as the browser makes it (session cookie, CSRF token, same origin)."""
        if "csrftoken" not in self.browser.cookies:
            self.page("/")
        headers = {
            "X-CSRFToken": self.browser.cookies.get("csrftoken", ""),
            "Referer": self.stack.url + path,
        }
        return self.browser.post(
            self.stack.url + path,
            data=data or {},
            headers=headers,
            timeout=60,
            allow_redirects=False,
            **kwargs,
        )

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """/api/v1/<path> with the persona's token."""
        return self.api_session.request(
            method, f"{self.stack.url}/api/v1/{path.lstrip('/')}", timeout=60, **kwargs
        )

    def ws(self, path: str):  # type: ignore[no-untyped-def]
        """A websocket to the panel with the persona's session, as the browser opens it."""
        return open_ws(self.stack, path, self.sessionid)


@pytest.fixture
def attacker(transactional_db, stack, people) -> Callable[[str], Attacker]:  # noqa: F811
    """attacker("viewer"): that persona, logged in at the running stack."""

    def make(persona: str) -> Attacker:
        user = people[persona]
        login = Client()
        login.force_login(user)
        sessionid = login.cookies["sessionid"].value
        browser = requests.Session()
        browser.cookies.set("sessionid", sessionid)
        api_session = requests.Session()
        token = services.create_token(user, actor=Actor(user))
        api_session.headers["Authorization"] = f"Token {token.key}"
        return Attacker(persona, user, stack, browser, api_session, sessionid)

    return make
