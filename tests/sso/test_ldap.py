"""LDAP sign-on against the session's real slapd (tests/sso/conftest.py): users appear at
their first login with the roles their groups map to, and the periodic sync follows the
directory: groups left, entries disabled (Active Directory's userAccountControl bit) or
deleted. Hand-given memberships are never touched."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from websockets.exceptions import ConnectionClosed

from panel import tasks
from panel.identity import ldap as directory_ldap
from panel.models import AuditEvent, DirectoryAccount, DirectoryMapping, Host, Membership, Project
from tests.stack import open_ws
from vms.models import VirtualMachine

from .conftest import AUDITORS, DEVS, OPS, POSIX_OPS

PASSWORD = "Directory-pass-7q"
User = get_user_model()


@pytest.fixture
def mapped(db):
    alpha = Project.objects.create(name="alpha")
    beta = Project.objects.create(name="beta")
    DirectoryMapping.objects.create(source="ldap", group=OPS, project=alpha, role="operator")
    # Spelt differently from the directory: DNs compare without case and spaces.
    DirectoryMapping.objects.create(
        source="ldap", group=DEVS.upper().replace(",", ", "), project=alpha, role="member"
    )
    DirectoryMapping.objects.create(source="ldap", group=AUDITORS, project=beta, role="viewer")
    host = Host.objects.create(name="kvm-alpha", uri="test:///default", domain_type="qemu")
    VirtualMachine.objects.create(
        id=uuid.uuid4(), name="alpha-web", host=host, project=alpha, vcpus=1, memory_mib=64
    )
    return alpha, beta


def log_in(username: str, password: str) -> Client:
    client = Client()
    client.post("/login/", {"username": username, "password": password})
    return client


def roles(username: str) -> dict[str, str]:
    found = Membership.objects.filter(user__username=username)
    return dict(found.values_list("project__name", "role"))


def test_a_first_login_creates_the_user_with_the_roles_their_groups_map_to(directory, mapped):
    uid = directory.add_user("dana", PASSWORD, DEVS, AUDITORS)

    client = log_in(uid, PASSWORD)

    assert client.get("/account/").status_code == 200
    user = User.objects.get(username=uid)
    assert (user.email, user.first_name, user.last_name) == (f"{uid}@panel.test", "Dana", "Tester")
    assert not user.has_usable_password()
    account = DirectoryAccount.objects.get(user=user)
    assert (
        account.source == "ldap" and account.external_id == f"uid={uid},ou=people,dc=panel,dc=test"
    )
    assert roles(uid) == {"alpha": "member", "beta": "viewer"}
    assert "alpha-web" in client.get("/vms/").content.decode()
    added = AuditEvent.objects.filter(action="sso.membership_added", target__startswith=uid)
    assert added.count() == 2
    assert AuditEvent.objects.filter(action="sso.login", username=uid).exists()


def test_posix_groups_name_their_members_by_uid(directory, mapped, settings):
    settings.PANEL_LDAP_GROUP_TYPE = "posixGroup"
    DirectoryMapping.objects.create(
        source="ldap", group=POSIX_OPS, project=mapped[1], role="operator"
    )
    uid = directory.add_user("mona", PASSWORD, OPS)  # a groupOfNames: not read now
    directory.add_posix_member(POSIX_OPS, uid)

    log_in(uid, PASSWORD)

    assert roles(uid) == {"beta": "operator"}


def test_a_wrong_password_is_refused_and_creates_nobody(directory, mapped):
    uid = directory.add_user("erin", PASSWORD, OPS)

    client = log_in(uid, "Not-the-password-1")

    assert client.get("/account/").status_code == 302
    assert not User.objects.filter(username=uid).exists()
    assert AuditEvent.objects.filter(action="login.failed", target=uid).exists()


def test_the_sync_follows_the_groups_and_leaves_hand_given_memberships(directory, mapped):
    alpha, beta = mapped
    uid = directory.add_user("frank", PASSWORD, OPS, DEVS, AUDITORS)
    log_in(uid, PASSWORD)
    assert roles(uid) == {"alpha": "operator", "beta": "viewer"}
    user = User.objects.get(username=uid)
    gamma = Project.objects.create(name="gamma")
    Membership.objects.create(user=user, project=gamma, role="member")  # an admin's

    directory.remove_member(OPS, uid)
    directory.remove_member(AUDITORS, uid)
    assert directory_ldap.sync_directory() == {"synced": 1}

    assert roles(uid) == {"alpha": "member", "gamma": "member"}
    removed = AuditEvent.objects.get(action="sso.membership_removed")
    assert removed.project == beta and AUDITORS in removed.detail
    assert removed.via == "schedule"


def test_the_beat_runs_the_sync_as_a_task(directory, mapped):
    uid = directory.add_user("gwen", PASSWORD, AUDITORS)
    log_in(uid, PASSWORD)
    directory.add_member(OPS, uid)

    assert tasks.sync_ldap_directory.apply().get() == {"synced": 1}
    assert roles(uid) == {"alpha": "operator", "beta": "viewer"}


def test_an_admin_runs_the_sync_at_once_from_the_command_line(directory, mapped, capsys):
    uid = directory.add_user("nina", PASSWORD, OPS)
    log_in(uid, PASSWORD)
    directory.disable(uid)

    call_command("sync_ldap")

    assert capsys.readouterr().out == "disabled: 1\n"
    assert not User.objects.get(username=uid).is_active


def test_the_command_says_when_no_directory_is_configured(settings):
    settings.PANEL_LDAP_URI = ""
    with pytest.raises(CommandError, match="PANEL_LDAP_URI"):
        call_command("sync_ldap")


def test_a_user_disabled_in_the_directory_is_refused_at_login(directory, mapped):
    uid = directory.add_user("hank", PASSWORD, OPS)
    log_in(uid, PASSWORD)
    directory.disable(uid)

    client = log_in(uid, PASSWORD)

    assert client.get("/account/").status_code == 302
    user = User.objects.get(username=uid)
    assert not user.is_active
    assert roles(uid) == {}
    assert AuditEvent.objects.filter(action="sso.deprovisioned", target=uid).exists()


def test_a_refused_login_of_a_user_deleted_from_the_directory_deprovisions_them(directory, mapped):
    uid = directory.add_user("kurt", PASSWORD, OPS)
    still_open = log_in(uid, PASSWORD)
    directory.delete(uid)

    assert log_in(uid, PASSWORD).get("/account/").status_code == 302

    assert not User.objects.get(username=uid).is_active
    assert roles(uid) == {}
    assert still_open.get("/account/").status_code == 302  # its session ended too
    event = AuditEvent.objects.get(action="sso.deprovisioned", target=uid)
    assert "no longer in the directory" in event.detail


def test_a_wrong_password_of_a_directory_user_changes_nothing(directory, mapped):
    uid = directory.add_user("lena", PASSWORD, OPS)
    still_open = log_in(uid, PASSWORD)

    assert log_in(uid, "Not-the-password-1").get("/account/").status_code == 302

    assert User.objects.get(username=uid).is_active
    assert roles(uid) == {"alpha": "operator"}
    assert still_open.get("/account/").status_code == 200


def test_an_unreachable_directory_changes_nobody(directory, mapped, settings):
    uid = directory.add_user("ivy", PASSWORD, OPS)
    log_in(uid, PASSWORD)
    settings.PANEL_LDAP_URI = "ldap://127.0.0.1:9"

    assert directory_ldap.sync_directory() == {}
    assert User.objects.get(username=uid).is_active
    assert roles(uid) == {"alpha": "operator"}


@pytest.mark.stack
@pytest.mark.parametrize("how", ["disable", "delete"])
def test_the_sync_deprovisions_and_closes_the_open_websocket(
    stack, transactional_db, directory, how
):
    alpha = Project.objects.create(name="alpha")
    DirectoryMapping.objects.create(source="ldap", group=OPS, project=alpha, role="member")
    uid = directory.add_user("jade", PASSWORD, OPS)
    log_in(uid, PASSWORD)
    assert roles(uid) == {"alpha": "member"}
    # The stack's server has no directory configured: the page's session is one its own
    # backend accepts, for the user the directory login made.
    client = Client()
    client.force_login(User.objects.get(username=uid), "django.contrib.auth.backends.ModelBackend")

    with open_ws(stack, "/ws/notifications/", client.cookies["sessionid"].value) as ws:
        ws.recv(timeout=10)  # the bell's first count
        getattr(directory, how)(uid)
        outcome = {"disable": "disabled", "delete": "removed"}[how]
        assert directory_ldap.sync_directory() == {outcome: 1}
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)

    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert not User.objects.get(username=uid).is_active
    assert roles(uid) == {}
    assert client.get("/account/").status_code == 302
