"""Directory groups to project roles (panel/identity/directory.py), whatever the source:
memberships follow the groups, the strongest role wins, hand-given ones stay, and a
deprovisioned user loses their sessions, token and open websockets."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client
from rest_framework.authtoken.models import Token
from websockets.exceptions import ConnectionClosed

from panel.actors import Actor
from panel.identity import directory, tokens
from panel.models import ApiToken, AuditEvent, DirectoryMapping, Membership, Project, UserSession
from tests.stack import open_ws

OPS = "cn=ops,ou=groups,dc=panel,dc=test"
DEVS = "cn=devs,ou=groups,dc=panel,dc=test"
AUDITORS = "cn=auditors,ou=groups,dc=panel,dc=test"


@pytest.fixture
def projects(db):
    alpha = Project.objects.create(name="alpha")
    beta = Project.objects.create(name="beta")
    DirectoryMapping.objects.create(source="ldap", group=OPS, project=alpha, role="operator")
    DirectoryMapping.objects.create(source="ldap", group=DEVS, project=alpha, role="member")
    DirectoryMapping.objects.create(source="ldap", group=AUDITORS, project=beta, role="viewer")
    DirectoryMapping.objects.create(source="oidc", group="ops", project=beta, role="operator")
    return alpha, beta


@pytest.fixture
def dana(db):
    return get_user_model().objects.create_user("dana", "dana@panel.test")


def roles(user) -> dict[str, str]:
    return dict(Membership.objects.filter(user=user).values_list("project__name", "role"))


def actions(user) -> list[tuple[str, str]]:
    found = AuditEvent.objects.filter(action__startswith="sso.", target__startswith=str(user))
    return sorted(found.values_list("action", "detail"))


def test_groups_give_the_strongest_mapped_role_and_follow_the_groups(projects, dana):
    directory.apply_groups(dana, "ldap", [DEVS, OPS, AUDITORS, "cn=unmapped,dc=panel,dc=test"])
    assert roles(dana) == {"alpha": "operator", "beta": "viewer"}
    assert actions(dana) == [
        ("sso.membership_added", f"role operator from group {OPS}"),
        ("sso.membership_added", f"role viewer from group {AUDITORS}"),
    ]

    directory.apply_groups(dana, "ldap", [DEVS])  # left ops and auditors
    assert roles(dana) == {"alpha": "member"}
    assert ("sso.membership_changed", f"role member from group {DEVS}") in actions(dana)
    assert ("sso.membership_removed", f"role viewer from group {AUDITORS}") in actions(dana)

    directory.apply_groups(dana, "ldap", [])
    assert roles(dana) == {}


def test_a_sync_never_touches_a_membership_given_by_hand(projects, dana):
    alpha, beta = projects
    Membership.objects.create(user=dana, project=alpha, role="viewer")  # an admin's
    directory.apply_groups(dana, "ldap", [OPS, AUDITORS])
    assert roles(dana) == {"alpha": "viewer", "beta": "viewer"}

    # An admin changes the directory's membership by hand: it is theirs from then on.
    Membership.objects.filter(user=dana, project=beta).update(role="member")
    directory.apply_groups(dana, "ldap", [])
    assert roles(dana) == {"alpha": "viewer", "beta": "member"}


def test_each_source_keeps_to_its_own_mappings(projects, dana):
    directory.apply_groups(dana, "oidc", ["ops", OPS])
    assert roles(dana) == {"beta": "operator"}
    directory.apply_groups(dana, "ldap", [])  # LDAP's sync leaves OIDC's grant alone
    assert roles(dana) == {"beta": "operator"}


def test_a_mapped_user_sees_the_projects_vm_list(projects, dana):
    directory.apply_groups(dana, "ldap", [DEVS])
    client = Client()
    client.force_login(dana)
    assert client.get(f"/projects/{projects[0].pk}/").status_code == 200
    assert client.get(f"/projects/{projects[1].pk}/").status_code == 404


def test_deprovisioning_disables_and_ends_sessions_and_token(projects, dana):
    directory.apply_groups(dana, "ldap", [OPS])
    client = Client()
    client.force_login(dana)
    other = Client()
    other.force_login(get_user_model().objects.create_user("erin"))
    # A session from before sessions were tracked has no row: it stops all the same.
    untracked = Client()
    untracked.force_login(dana)
    UserSession.objects.filter(session_key=untracked.session.session_key).delete()
    Token.objects.create(user=dana)
    made = tokens.create_token(dana, actor=Actor(dana), name="laptop")

    directory.deprovision(dana, "ldap", "entry deleted")

    dana.refresh_from_db()
    assert not dana.is_active
    assert roles(dana) == {}
    assert not Token.objects.filter(user=dana).exists()
    assert Session.objects.count() == 2  # erin's, and the untracked one, which is refused:
    assert not UserSession.objects.filter(user=dana).exists()
    assert ApiToken.objects.get(pk=made.token.pk).revoked_at is not None
    assert client.get("/").status_code == 302
    assert untracked.get("/").status_code == 302
    event = AuditEvent.objects.get(action="sso.deprovisioned")
    assert event.target == "dana" and "entry deleted" in event.detail


def test_admins_alone_add_and_remove_mappings_and_each_change_is_audited(projects, admin_user):
    alpha, _beta = projects
    admin = Client()
    admin.force_login(admin_user)
    data = {"source": "ldap", "group": "cn=x,dc=panel,dc=test", "project": alpha.pk}
    response = admin.post(
        "/api/v1/directory-mappings/", {**data, "role": "boss"}, "application/json"
    )
    assert response.status_code == 400 and "role" in response.json()
    not_a_dn = admin.post(
        "/api/v1/directory-mappings/",
        {**data, "group": "ops", "role": "viewer"},
        "application/json",
    )
    assert not_a_dn.status_code == 400 and "not a DN" in not_a_dn.json()["group"][0]
    response = admin.post(
        "/api/v1/directory-mappings/", {**data, "role": "viewer"}, "application/json"
    )
    assert response.status_code == 201, response.content
    again = admin.post(
        "/api/v1/directory-mappings/", {**data, "role": "viewer"}, "application/json"
    )
    assert again.status_code == 400 and "already" in again.json()["group"][0]
    mapping_id = response.json()["id"]
    assert admin.post(f"/directory-groups/{mapping_id}/delete/").status_code == 302
    assert not DirectoryMapping.objects.filter(pk=mapping_id).exists()
    done = AuditEvent.objects.filter(action__startswith="sso.mapping", result="success")
    assert sorted(done.values_list("action", flat=True)) == [
        "sso.mapping_added",
        "sso.mapping_removed",
    ]


def test_the_mappings_page_adds_a_mapping(projects, admin_user):
    admin = Client()
    admin.force_login(admin_user)
    form = {"source": "oidc", "group": "", "project": projects[1].pk, "role": "member"}
    assert admin.post("/directory-groups/", form).status_code == 400
    assert admin.post("/directory-groups/", {**form, "group": "devs"}).status_code == 302
    page = admin.get("/directory-groups/").content.decode()
    assert "devs" in page and "OpenID Connect" in page


@pytest.mark.stack
def test_deprovisioning_closes_the_users_open_websocket(stack, transactional_db):
    alpha = Project.objects.create(name="alpha")
    DirectoryMapping.objects.create(source="ldap", group=OPS, project=alpha, role="member")
    dana = get_user_model().objects.create_user("dana")
    directory.apply_groups(dana, "ldap", [OPS])
    client = Client()
    client.force_login(dana)

    with open_ws(stack, "/ws/notifications/", client.cookies["sessionid"].value) as ws:
        ws.recv(timeout=10)  # the bell's first count
        directory.deprovision(dana, "ldap", "disabled", actor=Actor(None))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
