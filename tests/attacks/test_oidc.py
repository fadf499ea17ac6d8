"""Attacks on the OpenID Connect sign-in, against the real test provider
(tests/sso/provider): ID tokens from another issuer, for another client or signed with
another key; a sign-in answer with a tampered state or a code used already; a provider
account named like a local one; and the ``next`` parameter as an open redirect."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import get_user_model
from joserfc import jwt
from joserfc.jwk import RSAKey

from panel.identity import oidc
from panel.models import AuditEvent, OidcIdentity
from tests.sso.oidc_provider import (
    CLIENT_ID,
    OTHER_CLIENT_ID,
    TEST_CLIENT_CALLBACK,
    Provider,
    sign_in_at_provider,
)

pytestmark = pytest.mark.django_db


def start(client, next_url: str = "") -> str:
    answer = client.get("/login/oidc/", {"next": next_url} if next_url else {})
    assert answer.status_code == 302
    return answer["Location"]


def refusal(client, callback: str) -> str:
    """The login page the panel answers a callback with, and that nobody is signed in."""
    answer = client.get(callback.removeprefix("http://testserver"), follow=True)
    assert answer.redirect_chain[-1][0] == "/login/", answer.redirect_chain
    assert "_auth_user_id" not in client.session
    return answer.content.decode()


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return parts._replace(query=urlencode(query)).geturl()


def token_for(provider: Provider, client_id: str, secret: str, user: str, nonce: str) -> dict:
    """A real token response of the provider for client_id (code flow with PKCE)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": TEST_CLIENT_CALLBACK,
        "scope": "openid profile",
        "state": secrets.token_urlsafe(8),
        "nonce": nonce,
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    callback = sign_in_at_provider(f"{provider.issuer}/authorize/?{urlencode(query)}", user, "pw-5")
    answer = requests.post(
        f"{provider.issuer}/token/",
        data={
            "grant_type": "authorization_code",
            "code": parse_qs(urlsplit(callback).query)["code"][0],
            "redirect_uri": TEST_CLIENT_CALLBACK,
            "code_verifier": verifier,
        },
        auth=(client_id, secret),
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json()


def forged(key: bytes, **claims: object) -> dict:
    now = int(time.time())
    payload = {"sub": "1", "iat": now, "exp": now + 300, "nonce": "n", **claims}
    private = RSAKey.import_key(key)
    header = {"alg": "RS256", "kid": private.thumbprint()}
    return {"id_token": jwt.encode(header, payload, private)}


def test_it_refuses_an_id_token_the_provider_issued_to_another_client(sso):
    sso.admin("user", "mallory", "pw-5")
    own = token_for(sso, CLIENT_ID, sso.client_secret, "mallory", "n1")
    assert oidc.verify_id_token(own, nonce="n1")["aud"] == CLIENT_ID  # the check can pass

    other = token_for(sso, OTHER_CLIENT_ID, sso.other_secret, "mallory", "n2")

    with pytest.raises(oidc.SignInRefused, match="failed its checks") as refused:
        oidc.verify_id_token(other, nonce="n2")
    assert "aud" in refused.value.detail


def test_it_refuses_an_id_token_from_another_issuer_or_key(sso):
    good = {"iss": sso.issuer, "aud": CLIENT_ID}
    oidc.verify_id_token(forged(sso.private_key(), **good), nonce="n")  # the check can pass

    with pytest.raises(oidc.SignInRefused) as refused:
        oidc.verify_id_token(
            forged(sso.private_key(), **{**good, "iss": "http://127.0.0.1:1/o"}), nonce="n"
        )
    assert "iss" in refused.value.detail
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = stranger.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(oidc.SignInRefused):
        oidc.verify_id_token(forged(pem, **good), nonce="n")
    with pytest.raises(oidc.SignInRefused, match="failed its checks"):
        oidc.verify_id_token(forged(sso.private_key(), **good), nonce="another")


def test_it_refuses_a_sign_in_answer_with_a_tampered_state(client, sso):
    sso.admin("user", "nina", "pw-5")
    callback = sign_in_at_provider(start(client), "nina", "pw-5")

    page = refusal(client, with_query(callback, state="made-up"))

    assert "does not belong to a sign-in started here" in page
    assert not get_user_model().objects.filter(username="nina").exists()
    assert AuditEvent.objects.filter(action="login.failed", target="OIDC").exists()


def test_it_throttles_an_address_sending_refused_sign_in_answers(client, sso, settings):
    sso.admin("user", "petra", "pw-5")
    for _ in range(settings.PANEL_LOGIN_FAILURES):
        assert "does not belong" in refusal(client, "/login/oidc/callback/?state=x&code=y")

    # Then even a right answer from that address waits, and nobody is signed in.
    callback = sign_in_at_provider(start(client), "petra", "pw-5")
    assert "Try again in" in refusal(client, callback)
    assert not get_user_model().objects.filter(username="petra").exists()
    assert AuditEvent.objects.filter(action="login.failed", detail="throttled").exists()


def test_it_refuses_a_sign_in_code_used_already(client, sso):
    sso.admin("user", "oscar", "pw-5")
    callback = sign_in_at_provider(start(client), "oscar", "pw-5")
    assert client.get(callback.removeprefix("http://testserver")).status_code == 302
    client.logout()

    # The same answer again: its state is used up.
    assert "does not belong" in refusal(client, callback)
    # Its code with the state of a sign-in just started: the provider refuses the code.
    state = parse_qs(urlsplit(start(client)).query)["state"][0]
    page = refusal(client, with_query(callback, state=state))

    assert "refused the sign-in code: it was used already or has expired" in page


def test_it_does_not_take_over_a_local_account_of_the_same_name(client, sso):
    local = get_user_model().objects.create_user("Victim", password="victim-pass-7")
    sso.admin("user", "victim", "pw-5")  # the provider's user, named like the local one

    page = refusal(client, sign_in_at_provider(start(client), "victim", "pw-5"))

    assert "An account named &#x27;victim&#x27; already exists here" in page
    assert not OidcIdentity.objects.exists()
    local.refresh_from_db()
    assert local.has_usable_password() and local.check_password("victim-pass-7")
    assert AuditEvent.objects.get(action="login.failed", target="OIDC").detail.startswith(
        "local account 'victim' is not taken over"
    )


@pytest.mark.parametrize(
    "next_url", ["https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:x"]
)
def test_it_does_not_redirect_off_the_site_after_signing_in(client, sso, next_url):
    sso.admin("user", "paula", "pw-5")
    callback = sign_in_at_provider(start(client, next_url), "paula", "pw-5")

    answer = client.get(callback.removeprefix("http://testserver"))

    assert answer.status_code == 302 and answer["Location"] == "/"
    assert client.session["_auth_user_id"]
