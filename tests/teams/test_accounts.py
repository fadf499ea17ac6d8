"""Account security: throttled logins, API tokens, disabled users, password rules,
the account page, the production settings and secrets kept out of pages and
the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management import call_command

from panel import services, throttle
from panel.actors import Actor
from panel.models import ApiToken, AuditEvent, Host

from .conftest import PASSWORDS, page_text, texts

REPO_ROOT = Path(__file__).resolve().parents[2]
THROTTLED = "Too many failed logins for this user from your address. Try again in 15 minutes"
WRONG = "Please enter a correct username and password"
User = get_user_model()


def log_in(client, username: str, password: str):
    return client.post("/login/", {"username": username, "password": password})


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def get_token(client, username: str, password: str):
    return client.post(
        "/api/v1/auth/token/",
        {"username": username, "password": password},
        content_type="application/json",
    )


def api_status(new_client, token: str, path: str = "/api/v1/projects/") -> int:
    return new_client(headers={"Authorization": f"Token {token}"}).get(path).status_code


# --- login throttling ---------------------------------------------------------------------


def test_it_locks_a_username_out_from_one_address_after_five_failures(world, new_client, address):
    browser = new_client(REMOTE_ADDR=address)
    for _ in range(5):
        response = log_in(browser, "member", "wrong-password")
        assert response.status_code == 200
        assert WRONG in page_text(response)

    refused = log_in(browser, "member", PASSWORDS["member"])

    assert refused.status_code == 200
    assert THROTTLED in page_text(refused)
    assert not logged_in(browser)
    assert AuditEvent.objects.filter(action="login.failed", target="member").count() == 5
    assert AuditEvent.objects.filter(source_ip=address, result="denied").count() == 5

    assert "wrong-password" not in everything_stored()

    colleague = new_client(REMOTE_ADDR=address)
    assert log_in(colleague, "viewer", PASSWORDS["viewer"]).status_code == 302
    assert logged_in(colleague)


def test_it_still_lets_the_user_in_from_another_address(world, new_client, address):
    for _ in range(5):
        log_in(new_client(REMOTE_ADDR=address), "member", "wrong-password")

    elsewhere = new_client(REMOTE_ADDR="198.51.100.77")
    try:
        response = log_in(elsewhere, "member", PASSWORDS["member"])
        assert (response.status_code, response["Location"]) == (302, "/")
    finally:
        throttle.reset("member", "198.51.100.77")


def test_it_throttles_the_token_endpoint_the_same_way(world, new_client, address):
    api = new_client(REMOTE_ADDR=address)
    for _ in range(5):
        response = get_token(api, "member", "wrong-password")
        assert response.status_code == 400
        assert response.json() == {"detail": "Wrong username or password."}

    refused = get_token(api, "member", PASSWORDS["member"])
    other = get_token(api, "viewer", PASSWORDS["viewer"])

    assert refused.status_code == 429
    assert refused.json()["detail"].startswith(THROTTLED)
    assert not ApiToken.objects.filter(user__username="member").exists()
    assert other.status_code == 200
    assert api_status(new_client, other.json()["token"]) == 200


def test_it_counts_failures_on_the_login_page_and_the_api_together(world, new_client, address):
    client = new_client(REMOTE_ADDR=address)
    for _ in range(3):
        log_in(client, "operator", "wrong-password")
    for _ in range(2):
        get_token(client, "operator", "wrong-password")

    assert get_token(client, "operator", PASSWORDS["operator"]).status_code == 429
    assert THROTTLED in page_text(log_in(client, "operator", PASSWORDS["operator"]))


# --- API tokens ---------------------------------------------------------------------------


def test_it_answers_the_api_to_a_token_and_only_to_a_valid_one(world, token_for, new_client):
    token = token_for("member")

    listing = new_client(headers={"Authorization": f"Token {token}"}).get("/api/v1/projects/")

    assert listing.status_code == 200
    assert [p["name"] for p in listing.json()["results"]] == ["alpha"]
    assert new_client().get("/api/v1/projects/").status_code == 401
    assert api_status(new_client, token[:-4] + "0000") == 401


def test_it_refuses_a_revoked_token(world, member, token_for, new_client):
    token = token_for("member")
    assert api_status(new_client, token) == 200

    for made in ApiToken.objects.filter(user=member):
        services.revoke_token(made, actor=Actor(member))

    assert api_status(new_client, token) == 401


def test_it_shuts_a_disabled_user_out_of_the_api_the_pages_and_the_login(
    world, member, token_for, client_for, new_client, address
):
    token = token_for("member")
    session = client_for("member")
    assert session.get("/vms/").status_code == 200

    response = client_for("admin").post(f"/users/{member.pk}/active/", {"active": "0"})

    assert response.status_code == 302
    assert api_status(new_client, token) == 401
    assert session.get("/vms/").status_code == 302
    refused = log_in(new_client(REMOTE_ADDR=address), "member", PASSWORDS["member"])
    assert refused.status_code == 200
    assert WRONG in page_text(refused)
    assert (
        get_token(new_client(REMOTE_ADDR=address), "member", PASSWORDS["member"]).status_code == 400
    )
    assert AuditEvent.objects.filter(action="user.disable", target="member").exists()


def test_it_refuses_the_token_of_a_user_deactivated_behind_the_panels_back(
    world, member, token_for, new_client
):
    token = token_for("member")
    User.objects.filter(pk=member.pk).update(is_active=False)

    response = new_client(headers={"Authorization": f"Token {token}"}).get("/api/v1/jobs/")

    assert response.status_code == 401
    assert "alpha-web" not in response.content.decode()


# --- password rules -----------------------------------------------------------------------


def test_it_refuses_a_weak_password_on_the_users_page_and_creates_nobody(client_for):
    response = client_for("admin").post("/users/", {"username": "weak", "password": "123"})

    assert response.status_code == 400
    errors = texts(response, "//div[contains(@class, 'invalid-feedback')]")
    assert len(errors) == 1
    assert "This password is too short. It must contain at least 8 characters." in errors[0]
    assert "This password is entirely numeric." in errors[0]
    assert not User.objects.filter(username="weak").exists()
    assert not AuditEvent.objects.filter(action="user.create", target="weak", result="success")


def test_it_refuses_a_weak_password_in_the_api_and_creates_nobody(api_for):
    response = api_for("admin").post(
        "/api/v1/users/", {"username": "weak", "password": "123"}, content_type="application/json"
    )

    assert response.status_code == 400
    assert "This password is too short" in " ".join(response.json()["password"])
    assert not User.objects.filter(username="weak").exists()


# --- the account page ---------------------------------------------------------------------


def change_password(client, old: str, new: str):
    return client.post(
        "/account/", {"old_password": old, "new_password1": new, "new_password2": new}
    )


def test_it_changes_my_password_only_with_the_old_one(world, member, client_for, new_client):
    me = client_for("member")
    new = "Brand-new-lantern-88"

    refused = change_password(me, "not-my-password", new)

    assert refused.status_code == 400
    assert "Your old password was entered incorrectly" in page_text(refused)
    member.refresh_from_db()
    assert member.check_password(PASSWORDS["member"])

    changed = change_password(me, PASSWORDS["member"], new)

    assert (changed.status_code, changed["Location"]) == (302, "/account/")
    assert "Your password was changed." in page_text(me.get("/account/"))
    assert log_in(new_client(), "member", new).status_code == 302
    assert WRONG in page_text(log_in(new_client(), "member", PASSWORDS["member"]))
    assert AuditEvent.objects.filter(action="user.password", username="member").exists()


def test_it_refuses_a_weak_new_password_on_the_account_page(world, member, client_for):
    response = change_password(client_for("member"), PASSWORDS["member"], "12345678")

    assert response.status_code == 400
    assert "This password is too common." in page_text(response)
    member.refresh_from_db()
    assert member.check_password(PASSWORDS["member"])


# --- production settings and secrets ------------------------------------------------------


def test_it_passes_djangos_deployment_checks_in_production_mode():
    # The browser tests set DJANGO_ALLOW_ASYNC_UNSAFE in this process (Playwright runs
    # an event loop in the test thread); a deployment never has it.
    harness_only = {"PANEL_DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env = {k: v for k, v in os.environ.items() if k not in harness_only}
    env["PANEL_PRODUCTION"] = "1"

    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout + done.stderr


def everything_stored() -> str:
    out = StringIO()
    call_command("dumpdata", stdout=out)
    return out.getvalue()


# A password no field name or stored text contains (jobs have a `secrets` field).
URI_PASSWORD = "Zq7-hunter-pw"
PASSWORD_URI = f"qemu+ssh://u:{URI_PASSWORD}@h/system"


def test_it_refuses_a_host_uri_with_a_password_on_the_page_without_echoing_it(world, client_for):
    response = client_for("admin").post("/hosts/add/", {"name": "kvm-pw", "uri": PASSWORD_URI})

    assert response.status_code == 400
    assert "Do not put a password in the URI" in page_text(response)
    assert not Host.objects.filter(name="kvm-pw").exists()
    assert URI_PASSWORD not in everything_stored()
    assert URI_PASSWORD not in response.content.decode()


def test_it_refuses_a_host_uri_with_a_password_in_the_api_and_stores_nothing(world, api_for):
    response = api_for("admin").post(
        "/api/v1/hosts/",
        {"name": "kvm-pw", "uri": PASSWORD_URI},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert "Do not put a password in the URI" in response.json()["uri"][0]
    assert URI_PASSWORD not in response.content.decode()
    assert not Host.objects.filter(name="kvm-pw").exists()
    assert URI_PASSWORD not in everything_stored()


def test_it_never_returns_password_hashes_from_the_api(world, api_for):
    admin_api = api_for("admin")
    hashes = list(User.objects.values_list("password", flat=True))

    created = admin_api.post(
        "/api/v1/users/",
        {"username": "newbie", "password": "Silver-meadow-62r"},
        content_type="application/json",
    )
    answers = [
        created,
        admin_api.get("/api/v1/users/?page_size=500"),
        admin_api.get(f"/api/v1/users/{world.users['member'].pk}/"),
        api_for("member").get("/api/v1/users/"),
        admin_api.get("/api/v1/audit-events/?page_size=500"),
    ]

    assert created.status_code == 201
    hashes.append(User.objects.get(username="newbie").password)
    assert [a.status_code for a in answers] == [201, 200, 200, 200, 200]
    for answer in answers:
        body = answer.content.decode()
        assert not any(h in body for h in hashes), body
        assert "md5$" not in body
        assert "pbkdf2" not in body
        assert "password" not in json.dumps(list(_keys(answer.json())))


def _keys(data):
    """Every key of a JSON document, at any depth."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield key
            yield from _keys(value)
    elif isinstance(data, list):
        for value in data:
            yield from _keys(value)
