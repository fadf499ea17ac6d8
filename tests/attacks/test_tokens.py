"""Attacks with API tokens: replaying a revoked key, revoking someone else's token,
making a wider token with a narrow one, and guessing a key a character at a time.

What the panel does: a revoked key answers 401 saying it was revoked, wherever it is
sent (the API, /metrics); another user's token does not exist for a non-admin (404,
page or API), and stays working; a token cannot make tokens at all, whatever its
scope (403: creating one takes the user's own recent sign-in), so no token mints one
wider than itself; keys are looked up by their SHA-256 digest, which a guess cannot
steer character by character, so a key that shares its start with a real one fails
exactly as a random one does, and no key is stored anywhere.
"""

from __future__ import annotations

import secrets

import pytest
import requests

from panel import services
from panel.actors import Actor
from panel.models import ApiToken, AuditEvent

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(300)]


def with_key(stack, key: str, path: str = "/api/v1/projects/", method: str = "GET", **kw):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Token {key}"}
    return requests.request(method, stack.url + path, headers=headers, timeout=30, **kw)


def test_a_revoked_key_replayed_gets_nowhere(attacker, member, stack):
    me = attacker("member")
    made = services.create_token(member, actor=Actor(member), name="leaked")
    assert with_key(stack, made.key).status_code == 200

    revoked = me.post_form(f"/account/tokens/{made.token.pk}/revoke/")
    replays = [
        with_key(stack, made.key),
        with_key(stack, made.key, "/api/v1/tokens/"),
        with_key(stack, made.key, "/api/v1/tokens/", "POST", json={"name": "again"}),
    ]

    assert revoked.status_code == 302
    assert [r.status_code for r in replays] == [401, 401, 401]
    assert "was revoked on" in replays[0].json()["detail"]
    assert with_key(stack, made.key, "/metrics").status_code == 403
    assert not ApiToken.objects.filter(user=member, name="again").exists()


def test_nobody_revokes_another_users_token(attacker, member, stack):
    outsider = attacker("outsider")
    made = services.create_token(member, actor=Actor(member), name="members")

    page = outsider.post_form(f"/account/tokens/{made.token.pk}/revoke/")
    api = outsider.api("DELETE", f"tokens/{made.token.pk}/")
    seen = outsider.api("GET", f"tokens/{made.token.pk}/")
    listed = outsider.api("GET", "tokens/").json()["results"]

    assert (page.status_code, api.status_code, seen.status_code) == (404, 404, 404)
    assert "members" not in [t["name"] for t in listed]
    assert ApiToken.objects.get(pk=made.token.pk).revoked_at is None
    assert with_key(stack, made.key).status_code == 200
    assert not AuditEvent.objects.filter(action="token.revoked").exists()


def test_a_narrow_token_cannot_mint_a_wider_one(attacker, member, stack):
    me = attacker("member")
    narrow = services.create_token(member, actor=Actor(member), privileges=["view"], name="ro")
    wider = {"name": "wider", "privileges": None}

    alone = with_key(stack, narrow.key, "/api/v1/tokens/", "POST", json=wider)
    # The session cookie too: the token is what the request is authenticated by.
    both = me.browser.post(
        stack.url + "/api/v1/tokens/",
        json=wider,
        headers={"Authorization": f"Token {narrow.key}"},
        timeout=30,
    )
    full = me.api("POST", "tokens/", json=wider)

    assert [r.status_code for r in (alone, both, full)] == [403, 403, 403]
    assert "An API token cannot create tokens" in alone.json()["detail"]
    assert not ApiToken.objects.filter(name="wider").exists()


def test_a_guess_sharing_the_start_of_a_key_fails_as_a_random_one(transactional_db, member, stack):
    made = services.create_token(member, actor=Actor(member), name="target")
    key = made.key
    near = key[:-1] + ("A" if key[-1] != "A" else "B")
    guesses = [near, key[:8] + secrets.token_urlsafe(32)[8:], secrets.token_urlsafe(32), key + "x"]

    answers = [with_key(stack, guess) for guess in guesses]

    assert [(a.status_code, a.json()) for a in answers] == [
        (401, {"detail": "Invalid token."})
    ] * len(guesses)
    stored = ApiToken.objects.filter(pk=made.token.pk).values().get()
    assert not any(key in str(value) for value in stored.values())
    assert with_key(stack, key).status_code == 200
