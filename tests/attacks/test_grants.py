"""Attack: give oneself (or others) more than one holds, through grants.

A member asks the grants API to make them operator; an operator of
alpha adds grants in beta, or in alpha on a VM of beta; someone who may manage alpha's
grants through a custom role (view and manage_project alone) grants themselves the
operator role, a role with privileges they lack, or takes back a grant they could not
have given; a non-admin defines a role, and an admin a role that would administer.

What the panel does: only admins and those who hold MANAGE_PROJECT on the whole project
change its grants (403), and then only with privileges they hold there on every object
(403, nothing changed); a project out of scope is not found (404) and a VM of another
project named in the body is refused (400); roles and groups are the admins' (403); no
role holds "administer" and no grant names the admin role (400). Every refusal is
audited.
"""

from __future__ import annotations

import pytest

from panel.actors import Actor
from panel.identity import access
from panel.models import AuditEvent, Grant, Role
from vms.models import VirtualMachine

pytestmark = [pytest.mark.stack, pytest.mark.libvirt, pytest.mark.timeout(300)]


def grants(project) -> list[tuple]:
    return sorted(Grant.objects.filter(project=project).values_list("user_id", "builtin", "vm_id"))


def test_a_member_cannot_make_themselves_operator(attacker, alpha):
    member = attacker("member")

    api = member.api(
        "POST", f"projects/{alpha.pk}/grants/", json={"user": member.user.pk, "role": "operator"}
    )

    assert api.status_code == 403
    assert grants(alpha) == []
    assert (
        member.api(
            "POST",
            f"projects/{alpha.pk}/members/",
            json={"user": member.user.pk, "role": "operator"},
        ).status_code
        == 403
    )


def test_an_operator_of_alpha_reaches_no_grant_of_beta(attacker, alpha, beta, make_vm, people):
    operator = attacker("operator")
    vm = make_vm()
    VirtualMachine.objects.filter(pk=vm.pk).update(project=beta, owner=people["outsider"])
    theirs = access.add_grant(
        beta, role="viewer", user=people["member2"], actor=Actor(people["admin"])
    )
    body = {"user": people["operator"].pk, "role": "operator"}

    in_beta = operator.api("POST", f"projects/{beta.pk}/grants/", json=body)
    page_in_beta = operator.post_form(
        f"/projects/{beta.pk}/grants/", {"username": "operator", "role": "operator"}
    )
    on_their_vm = operator.api(
        "POST", f"projects/{alpha.pk}/grants/", json={**body, "vm": str(vm.pk)}
    )
    taken = operator.api("DELETE", f"projects/{alpha.pk}/grants/{theirs.pk}/")
    taken_there = operator.api("DELETE", f"projects/{beta.pk}/grants/{theirs.pk}/")

    assert (in_beta.status_code, page_in_beta.status_code) == (404, 404)
    assert on_their_vm.status_code == 400
    assert on_their_vm.json()["vm"] == [f"No vm with id {vm.pk} that you can use."]
    assert (taken.status_code, taken_there.status_code) == (404, 404)
    assert grants(alpha) == [] and Grant.objects.filter(pk=theirs.pk).exists()


def test_a_grant_manager_gives_no_privilege_they_lack(attacker, alpha, people):
    admin = Actor(people["admin"])
    manager = access.create_role(name="grant-manager", privileges=["manage_project"], actor=admin)
    looker = access.create_role(name="looker", privileges=[], actor=admin)
    access.add_grant(alpha, role=manager.name, user=people["outsider"], actor=admin)
    operators = access.add_grant(alpha, role="operator", user=people["viewer"], actor=admin)
    me = attacker("outsider")
    url = f"projects/{alpha.pk}/grants/"

    as_operator = me.api("POST", url, json={"user": me.user.pk, "role": "operator"})
    as_viewer = me.api("POST", url, json={"user": me.user.pk, "role": "viewer"})
    take_back = me.api("DELETE", f"{url}{operators.pk}/")
    looking = me.api("POST", url, json={"user": people["member2"].pk, "role": looker.name})

    assert as_operator.status_code == 403
    assert "not yours to give" in as_operator.json()["detail"]
    assert as_viewer.status_code == 403 and take_back.status_code == 403
    assert looking.status_code == 201  # within what they hold: allowed
    assert Grant.objects.filter(pk=operators.pk).exists()
    assert not Grant.objects.filter(user=me.user, builtin__in=["operator", "viewer"]).exists()
    refusals = AuditEvent.objects.filter(username="outsider", result="denied")
    assert refusals.filter(action__contains="/grants/").count() == 3


def test_no_role_administers_and_only_admins_define_roles(attacker, alpha, people):
    operator, admin = attacker("operator"), attacker("admin")

    defined = operator.api("POST", "roles/", json={"name": "mine", "privileges": ["power"]})
    grouped = operator.api("POST", "groups/", json={"name": "mine"})
    administering = admin.api("POST", "roles/", json={"name": "root", "privileges": ["administer"]})
    as_admin = admin.api(
        "POST", f"projects/{alpha.pk}/grants/", json={"user": people["member"].pk, "role": "admin"}
    )
    builtin_name = admin.api("POST", "roles/", json={"name": "Operator", "privileges": ["power"]})

    assert (defined.status_code, grouped.status_code) == (403, 403)
    assert administering.status_code == 400
    assert "administer" in administering.json()["privileges"][0]
    assert as_admin.status_code == 400 and "Unknown role 'admin'" in as_admin.json()["role"][0]
    assert builtin_name.status_code == 400
    assert Role.objects.count() == 0 and grants(alpha) == []
