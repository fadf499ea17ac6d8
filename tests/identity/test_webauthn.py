"""Security keys over the pages' JSON endpoints, answered by a key in software (the
browser test does the same through Chromium's virtual authenticator)."""

from __future__ import annotations

import pytest
from django.test import Client

from panel.models import AuditEvent, WebAuthnCredential

from .conftest import password_step
from .soft_key import SoftKey

pytestmark = pytest.mark.django_db

ORIGIN = "http://testserver"


def register(client: Client, key: SoftKey, name: str = "yubikey"):
    options = client.post("/account/two-factor/keys/options/").json()
    answer = key.create(options, ORIGIN)
    return client.post(
        "/account/two-factor/keys/",
        {"name": name, "credential": answer},
        content_type="application/json",
    )


def key_step(client: Client, key: SoftKey):
    options = client.post("/login/second/key/options/").json()
    return client.post("/login/second/key/", key.get(options, ORIGIN), "application/json")


def test_it_registers_a_key_and_logs_in_with_it(tessa):
    key = SoftKey()
    client = Client()
    client.force_login(tessa)
    assert register(client, key).status_code == 200
    stored = WebAuthnCredential.objects.get(user=tessa)
    assert stored.name == "yubikey" and stored.transports == ["usb"]
    assert AuditEvent.objects.filter(action="mfa.webauthn_added").exists()
    login = Client()
    assert password_step(login)["Location"] == "/login/second/"
    answer = key_step(login, key)
    assert answer.status_code == 200 and answer.json()["redirect"] == "/"
    assert login.get("/").status_code == 200
    stored.refresh_from_db()
    assert stored.sign_count == 1 and stored.last_used is not None


def test_it_refuses_a_key_the_options_did_not_ask_for(tessa):
    client = Client()
    client.force_login(tessa)
    options = client.post("/account/two-factor/keys/options/").json()
    answer = SoftKey().create({**options, "challenge": "c29tZXRoaW5nIGVsc2U"}, ORIGIN)
    refused = client.post(
        "/account/two-factor/keys/", {"name": "x", "credential": answer}, "application/json"
    )
    assert refused.status_code == 400 and "refused" in refused.json()["detail"]
    assert not WebAuthnCredential.objects.exists()


def test_it_removes_a_key(tessa):
    client = Client()
    client.force_login(tessa)
    register(client, SoftKey())
    key = WebAuthnCredential.objects.get()
    assert client.post(f"/account/two-factor/keys/{key.pk}/remove/").status_code == 302
    assert not WebAuthnCredential.objects.exists()
    assert AuditEvent.objects.filter(action="mfa.webauthn_removed").exists()


def test_it_says_keys_need_a_host_name_not_an_address(tessa):
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(tessa)
    refused = client.post("/account/two-factor/keys/options/")
    assert refused.status_code == 400
    assert "reached by a host name, not the address 127.0.0.1" in refused.json()["detail"]
