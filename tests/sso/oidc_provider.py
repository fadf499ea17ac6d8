"""The OpenID provider the single sign-on tests sign in at: tests/sso/provider (a small
django-oauth-toolkit project) started on loopback with its own database and a fresh RSA
key, and a panel web server configured with it as its issuer.

The fixtures are imported by the test modules that use them (tests/sso, tests/attacks).
``sign_in_at_provider`` walks the provider's pages as a browser would (login form, then
consent) with requests, for tests that drive the panel with Django's test client.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import html

from panel import throttle
from panel.identity.oidc import CALLBACK_COUNTER
from tests.stack import REPO_ROOT, free_port, process_env, spawn, stop_process, wait_for_web

CLIENT_ID = "kvm-panel"
OTHER_CLIENT_ID = "another-app"
NAME = "Test IdP"
# The address the panel runs at in tests that use Django's test client.
TEST_CLIENT_CALLBACK = "http://testserver/login/oidc/callback/"


@dataclass(frozen=True)
class Provider:
    url: str
    issuer: str
    state: Path
    client_secret: str
    other_secret: str
    # The panel web server (sso_panel) is registered for this callback.
    panel_port: int

    def admin(self, *args: str) -> str:
        """Run a command of tests/sso/provider/admin.py on the provider's database."""
        done = subprocess.run(
            [sys.executable, "-m", "tests.sso.provider.admin", *args],
            cwd=REPO_ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.strip()

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
        env["SSO_PROVIDER_DIR"] = str(self.state)
        env["DJANGO_SETTINGS_MODULE"] = "tests.sso.provider.settings"
        return env

    def private_key(self) -> bytes:
        return (self.state / "key.pem").read_bytes()

    def panel_settings(self) -> dict[str, str]:
        """The panel's settings that make it sign in here."""
        return {
            "PANEL_OIDC_ISSUER": self.issuer,
            "PANEL_OIDC_CLIENT_ID": CLIENT_ID,
            "PANEL_OIDC_CLIENT_SECRET": self.client_secret,
            "PANEL_OIDC_NAME": NAME,
        }


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    state = tmp_path_factory.mktemp("oidc-provider")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (state / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (state / "secret").write_text(secrets.token_urlsafe(40))
    port, panel_port = free_port(), free_port()
    provider = Provider(
        url=f"http://127.0.0.1:{port}",
        issuer=f"http://127.0.0.1:{port}/o",
        state=state,
        client_secret=secrets.token_urlsafe(30),
        other_secret=secrets.token_urlsafe(30),
        panel_port=panel_port,
    )
    callbacks = f"http://127.0.0.1:{panel_port}/login/oidc/callback/ {TEST_CLIENT_CALLBACK}"
    provider.admin("setup", CLIENT_ID, provider.client_secret, callbacks)
    provider.admin("setup", OTHER_CLIENT_ID, provider.other_secret, TEST_CLIENT_CALLBACK)
    log = state / "provider.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "django", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=REPO_ROOT,
            env=provider.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for(provider.issuer + "/.well-known/openid-configuration", proc, log)
        yield provider
    finally:
        stop_process(proc)


@pytest.fixture
def sso(settings: Any, oidc_provider: Provider) -> Provider:
    """The provider, with the in-process panel's settings pointing at it, and the
    sign-in answers refused by earlier tests forgotten."""
    for name, value in oidc_provider.panel_settings().items():
        setattr(settings, name, value)
    throttle.reset(CALLBACK_COUNTER, "127.0.0.1")
    return oidc_provider


def _wait_for(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the OpenID provider did not start:\n" + log.read_text())
        time.sleep(0.2)


@dataclass(frozen=True)
class SsoPanel:
    url: str
    log: Path


@pytest.fixture(scope="session")
def sso_panel(
    oidc_provider: Provider, django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SsoPanel]:
    """A panel web server (uvicorn, as the stack's) that signs in at the provider."""
    logs = tmp_path_factory.mktemp("sso-panel")
    env = {**process_env(), **oidc_provider.panel_settings()}
    port = oidc_provider.panel_port
    web = spawn(
        [
            str(Path(sys.executable).parent / "uvicorn"),
            "panel.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--no-proxy-headers",
        ],
        logs / "web.log",
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_web(url, web, logs / "web.log")
        yield SsoPanel(url, logs / "web.log")
    finally:
        stop_process(web)


def _form_fields(page: requests.Response) -> tuple[str, dict[str, str]]:
    doc = html.fromstring(page.text)
    [form] = doc.forms
    fields = {i.name: i.value or "" for i in form.inputs if i.name and i.type != "submit"}
    return urljoin(page.url, form.action or page.url), fields


def sign_in_at_provider(
    authorize_url: str, username: str, password: str, *, consent: bool = True
) -> str:
    """What the provider sends the browser back to (the callback URL with its code and
    state) after the user logs in there and answers the consent page; raises
    AssertionError when the provider refuses the login."""
    browser = requests.Session()
    login = browser.get(authorize_url, timeout=10)
    action, fields = _form_fields(login)
    fields.update(username=username, password=password)
    answer = browser.post(action, data=fields, timeout=10)
    assert "/o/authorize/" in answer.url, f"the provider refused {username}'s login"
    action, fields = _form_fields(answer)
    if consent:
        fields["allow"] = "Authorize"
    back = browser.post(action, data=fields, allow_redirects=False, timeout=10)
    assert back.status_code == 302, back.text
    return back.headers["Location"]
