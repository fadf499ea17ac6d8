"""Named API tokens: made on the API tokens page or the API, the key shown once and
kept hashed, listed with their scope, expiry and last use, revoked; expired and revoked
ones refused with a message saying so; the keys of the old single-token table keep
working, and the upgrade moves them over hashed."""

from __future__ import annotations

import importlib
import time
from datetime import timedelta

from django.apps import apps
from django.utils import timezone
from rest_framework.authtoken.models import Token

from panel import services
from panel.actors import Actor
from panel.identity import tokens
from panel.identity.policy import AUTH_AT
from panel.models import ApiToken, AuditEvent

from .conftest import PASSWORDS, page_text, texts


def api(new_client, key: str, **extra):  # type: ignore[no-untyped-def]
    return new_client(headers={"Authorization": f"Token {key}"}, **extra)


def key_shown(response) -> list[str]:
    return texts(response, "//code[contains(@class, 'api-token')]")


# --- the page -------------------------------------------------------------------------------


def test_it_shows_a_new_tokens_key_once_and_keeps_only_its_hash(
    world, member, client_for, new_client
):
    me = client_for("member")

    made = me.post("/account/tokens/add/", {"name": "backup script", "scope": "all"})
    first = me.get("/account/tokens/")
    again = me.get("/account/tokens/")

    assert made.status_code == 302
    [key] = key_shown(first)
    assert key_shown(again) == [] and key not in again.content.decode()
    token = ApiToken.objects.get(user=member, name="backup script")
    assert token.digest == tokens.digest_of(key) and key not in str(vars(token))
    assert "backup script" in page_text(again) and "all rights" in page_text(again)
    assert first.content.decode().count('data-copy="#new-api-token"') == 1
    assert api(new_client, key).get("/api/v1/projects/").status_code == 200
    event = AuditEvent.objects.get(action="token.created")
    assert (event.username, event.target) == ("member", "member: backup script")


def test_it_makes_a_token_like_a_role_or_with_ticked_privileges(world, member, client_for):
    me = client_for("member")

    me.post("/account/tokens/add/", {"name": "ro", "scope": "viewer", "expires_in": "7"})
    me.post(
        "/account/tokens/add/",
        {"name": "power", "scope": "custom", "privileges": ["power", "console"]},
    )
    refused = me.post("/account/tokens/add/", {"name": "none", "scope": "custom"})

    ro = ApiToken.objects.get(user=member, name="ro")
    assert ro.privileges == ["console", "view"]
    assert timedelta(days=6, hours=23) < ro.expires - timezone.now() <= timedelta(days=7)
    assert ApiToken.objects.get(name="power").privileges == ["console", "power", "view"]
    assert refused.status_code == 400
    assert "Tick the privileges the token may use." in page_text(refused)
    assert "console, view" in page_text(me.get("/account/tokens/"))


def test_it_refuses_a_second_token_of_the_same_name(world, member, client_for):
    me = client_for("member")
    me.post("/account/tokens/add/", {"name": "ci", "scope": "all"})

    again = me.post("/account/tokens/add/", {"name": "ci", "scope": "all"})

    assert again.status_code == 400
    assert "You already have a token named 'ci'; choose another name." in page_text(again)
    assert ApiToken.objects.filter(user=member, name="ci").count() == 1


def test_it_revokes_a_token_from_the_page(world, member, client_for, new_client):
    made = services.create_token(member, actor=Actor(member), name="old")
    me = client_for("member")

    response = me.post(f"/account/tokens/{made.token.pk}/revoke/", follow=True)

    assert "Token old was revoked." in page_text(response)
    assert "old" not in texts(response, "//table[@id='api-tokens']//td")
    refused = api(new_client, made.key).get("/api/v1/projects/")
    assert refused.status_code == 401
    assert "This API token (old) was revoked on" in refused.json()["detail"]
    assert AuditEvent.objects.filter(action="token.revoked", target="member: old").exists()


def test_it_asks_for_the_password_again_before_making_a_token(world, member, client_for):
    me = client_for("member")
    session = me.session
    session[AUTH_AT] = time.time() - 301
    session.save()

    response = me.post("/account/tokens/add/", {"name": "late", "scope": "all"})

    assert response.status_code == 302
    assert response["Location"].startswith("/account/reauth/?next=")
    assert not ApiToken.objects.filter(name="late").exists()


def test_it_lets_an_admin_see_and_revoke_a_users_tokens(world, member, client_for):
    made = services.create_token(member, actor=Actor(member), name="laptop")
    admin = client_for("admin")

    users = admin.get("/users/")
    listed = admin.get(f"/users/{member.pk}/tokens/")
    revoked = admin.post(f"/account/tokens/{made.token.pk}/revoke/")

    assert f'href="/users/{member.pk}/tokens/"' in users.content.decode()
    assert "API tokens of member" in page_text(listed) and "laptop" in page_text(listed)
    assert revoked["Location"] == f"/users/{member.pk}/tokens/"
    assert ApiToken.objects.get(pk=made.token.pk).revoked_at is not None
    assert client_for("operator").get(f"/users/{member.pk}/tokens/").status_code == 403


# --- the API --------------------------------------------------------------------------------


def test_it_makes_lists_and_revokes_tokens_through_the_api(world, member, client_for):
    session = client_for("member")  # signed in just now

    made = session.post(
        "/api/v1/tokens/",
        {"name": "deploy", "like": "viewer", "expires": None},
        content_type="application/json",
    )
    listing = session.get("/api/v1/tokens/")
    gone = session.delete(f"/api/v1/tokens/{made.json()['id']}/")

    assert made.status_code == 201, made.content
    body = made.json()
    assert body["privileges"] == ["console", "view"] and body["prefix"] == body["key"][:8]
    assert [t["name"] for t in listing.json()["results"]] == ["deploy"]
    assert "key" not in listing.json()["results"][0]
    assert gone.status_code == 204
    assert session.get("/api/v1/tokens/").json()["results"] == []


def test_it_refuses_unknown_privileges_and_a_past_expiry(world, client_for):
    session = client_for("member")

    unknown = session.post(
        "/api/v1/tokens/", {"privileges": ["view", "root"]}, content_type="application/json"
    )
    past = session.post(
        "/api/v1/tokens/", {"expires": "2020-01-01T00:00:00Z"}, content_type="application/json"
    )

    assert unknown.status_code == 400 and "privileges" in unknown.json()
    assert past.json() == {"expires": ["The expiry must be in the future."]}
    assert not ApiToken.objects.exists()


def test_it_refuses_an_expired_token_with_a_message_saying_so(world, member, new_client):
    made = services.create_token(member, actor=Actor(member), name="short")
    assert api(new_client, made.key).get("/api/v1/projects/").status_code == 200

    ApiToken.objects.filter(pk=made.token.pk).update(expires=timezone.now() - timedelta(seconds=1))
    response = api(new_client, made.key).get("/api/v1/projects/")

    assert response.status_code == 401
    assert "This API token (short) expired on" in response.json()["detail"]


def test_it_records_the_last_use_and_audits_a_new_address(world, member, new_client):
    made = services.create_token(member, actor=Actor(member), name="roaming")

    api(new_client, made.key, REMOTE_ADDR="198.51.100.7").get("/api/v1/projects/")
    first = ApiToken.objects.get(pk=made.token.pk)
    api(new_client, made.key, REMOTE_ADDR="198.51.100.7").get("/api/v1/projects/")
    same = ApiToken.objects.get(pk=made.token.pk)
    api(new_client, made.key, REMOTE_ADDR="203.0.113.9").get("/api/v1/projects/")
    moved = ApiToken.objects.get(pk=made.token.pk)

    assert first.last_used_from == "198.51.100.7" and first.last_used_at is not None
    assert same.last_used_at == first.last_used_at  # not written again within the minute
    assert moved.last_used_from == "203.0.113.9"
    events = AuditEvent.objects.filter(action="token.used_from_new_address")
    assert list(events.values_list("username", "target", "source_ip")) == [
        ("member", "member: roaming", "203.0.113.9")
    ]
    listing = api(new_client, made.key, REMOTE_ADDR="203.0.113.9").get("/api/v1/tokens/")
    listed = listing.json()["results"][0]
    assert listed["last_used_from"] == "203.0.113.9"


def test_it_audits_the_first_use_away_from_where_the_token_was_made(world, member, new_client):
    here = services.create_token(member, actor=Actor(member, "192.0.2.10"), name="here")
    away = services.create_token(member, actor=Actor(member, "192.0.2.10"), name="away")

    api(new_client, here.key, REMOTE_ADDR="192.0.2.10").get("/api/v1/projects/")
    api(new_client, away.key, REMOTE_ADDR="198.51.100.7").get("/api/v1/projects/")

    events = AuditEvent.objects.filter(action="token.used_from_new_address")
    assert list(events.values_list("target", "source_ip")) == [("member: away", "198.51.100.7")]


def test_it_hands_out_a_new_named_token_for_a_username_and_password(world, member, new_client):
    client = new_client()

    first = client.post(
        "/api/v1/auth/token/",
        {"username": "member", "password": PASSWORDS["member"]},
        content_type="application/json",
    )
    second = client.post(
        "/api/v1/auth/token/",
        {"username": "member", "password": PASSWORDS["member"]},
        content_type="application/json",
    )

    assert list(first.json()) == ["token"]
    assert first.json()["token"] != second.json()["token"]
    names = sorted(ApiToken.objects.filter(user=member).values_list("name", flat=True))
    assert names == ["API token", "API token 2"]
    for answer in (first, second):
        assert api(new_client, answer.json()["token"]).get("/api/v1/jobs/").status_code == 200


# --- the keys of before ---------------------------------------------------------------------


def test_it_keeps_accepting_a_key_of_the_old_token_table(world, member, new_client):
    old = Token.objects.create(user=member)

    assert api(new_client, old.key).get("/api/v1/projects/").status_code == 200


def test_the_upgrade_moves_old_keys_over_hashed_and_they_keep_working(world, member, new_client):
    old = Token.objects.create(user=member)
    migration = importlib.import_module("panel.migrations.0011_api_tokens")

    migration.keys_to_digests(apps, None)

    assert not Token.objects.filter(key=old.key).exists()
    moved = ApiToken.objects.get(user=member)
    assert (moved.name, moved.privileges, moved.expires) == ("API token", None, None)
    assert moved.digest == tokens.digest_of(old.key)
    assert api(new_client, old.key).get("/api/v1/projects/").status_code == 200
