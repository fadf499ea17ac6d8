"""Attacks on the directory sign-on, against the real slapd of tests/sso/conftest.py.

- LDAP filter injection: a username like ``*)(uid=*`` or ``*`` would, pasted into the
  user search's filter, match someone else's entry (or every entry). The username is
  escaped before it goes into the filter: no entry matches, nobody logs in.
- Taking over a directory account with a local one: an admin once made a local account
  whose name a directory user has (or will have). Merging them would hand the directory
  user the local account (its admin flag, its memberships) or the reverse. A directory
  login never merges into a local account: it is refused (and audited) until an admin
  renames or removes the local one (the directory is not even asked), and an admin
  cannot make a local account with the name of a directory user.
- An empty password: for an LDAP server a simple bind with a DN and no password is an
  anonymous bind, and it succeeds. The panel refuses an empty password before it binds.
"""

from __future__ import annotations

import ldap
import pytest
from django.contrib.auth import authenticate, get_user_model
from django.test import Client

from panel import services
from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.models import AuditEvent, DirectoryAccount, DirectoryMapping, Membership, Project
from tests.sso.conftest import OPS, PEOPLE, directory, slapd  # noqa: F401 - fixtures

PASSWORD = "Directory-pass-7q"
User = get_user_model()


@pytest.fixture
def alpha(db):
    project = Project.objects.create(name="alpha")
    DirectoryMapping.objects.create(source="ldap", group=OPS, project=project, role="operator")
    return project


def logged_in(username: str, password: str) -> bool:
    client = Client()
    client.post("/login/", {"username": username, "password": password})
    return client.get("/account/").status_code == 200


@pytest.mark.parametrize("shape", ["*", "{uid}*", "*)(uid=*", "{uid})(|(uid=*", "{uid})(uid=*"])
def test_a_filter_in_the_username_matches_no_one(directory, alpha, shape):  # noqa: F811
    uid = directory.add_user("olga", PASSWORD, OPS)

    assert not logged_in(shape.format(uid=uid), PASSWORD)
    assert not User.objects.exists()
    assert not Membership.objects.exists()
    assert logged_in(uid, PASSWORD)  # the real name still works


def test_a_directory_login_never_takes_a_local_account_of_the_same_name(
    directory,  # noqa: F811
    alpha,
):
    uid = directory.add_user("pete", PASSWORD, OPS)
    admin = User.objects.create_superuser("root-admin", "", "Admin-pass-93x")
    local = services.create_user(
        username=uid, password="Local-pass-58k", is_admin=True, actor=Actor(admin)
    )

    assert not logged_in(uid, PASSWORD)

    local.refresh_from_db()
    assert local.is_superuser and local.check_password("Local-pass-58k")
    assert not DirectoryAccount.objects.exists()
    assert not Membership.objects.filter(user=local).exists()
    assert not AuditEvent.objects.filter(action="sso.login").exists()
    assert AuditEvent.objects.filter(action="login.failed", target=uid).exists()
    # The local account is its own owner's, with its own password.
    assert logged_in(uid, "Local-pass-58k")


def test_no_local_account_can_be_made_with_a_directory_users_name(directory, alpha):  # noqa: F811
    uid = directory.add_user("quinn", PASSWORD, OPS)
    assert logged_in(uid, PASSWORD)
    admin = User.objects.create_superuser("root-admin", "", "Admin-pass-93x")

    with pytest.raises(ServiceError, match="taken"):
        services.create_user(username=uid.upper(), password="Local-pass-58k", actor=Actor(admin))
    # Nor does a password work for the directory's account: it has none here.
    assert authenticate(None, username=uid, password="") is None
    assert not User.objects.get(username=uid).has_usable_password()


def test_no_local_password_can_be_given_to_a_directory_user(directory, alpha):  # noqa: F811
    uid = directory.add_user("sam", PASSWORD, OPS)
    assert logged_in(uid, PASSWORD)
    admin = User.objects.create_superuser("root-admin", "", "Admin-pass-93x")
    user = User.objects.get(username=uid)

    with pytest.raises(ServiceError, match="password is changed there"):
        services.set_password(user, password="Local-pass-58k", actor=Actor(admin))

    user.refresh_from_db()
    assert not user.has_usable_password()
    assert not User.objects.get(username=uid).check_password("Local-pass-58k")


def test_an_empty_password_is_not_an_anonymous_bind(directory, alpha):  # noqa: F811
    uid = directory.add_user("rita", PASSWORD, OPS)
    # What the directory itself does with it: an anonymous bind, accepted.
    conn = ldap.initialize(directory.uri)
    conn.simple_bind_s(f"uid={uid},{PEOPLE}", "")
    assert conn.whoami_s() == ""
    conn.unbind_s()

    assert authenticate(None, username=uid, password="") is None
    answer = Client().post("/api/v1/auth/token/", {"username": uid, "password": ""})
    assert answer.status_code == 400
    assert not logged_in(uid, "")
    assert not User.objects.exists()
