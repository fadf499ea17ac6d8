"""Roles, groups and grants as their admins and managers use them, on pages and in the
API: each change is audited, bad input is refused with a message that names it and
changes nothing, and a grant changes what its holder may do at once."""

from __future__ import annotations

from django.contrib.auth.models import Group

from panel.actors import Actor
from panel.identity import access
from panel.models import AuditEvent, Grant, Role
from panel.permissions import allowed, forget, sees_vm, vm_projects_seen, vms_granted
from vms.models import Template

from .conftest import texts


def test_an_admin_defines_changes_and_deletes_a_role_in_the_api(api_for):
    api = api_for("admin")

    made = api.post(
        "/api/v1/roles/",
        {"name": "power-user", "privileges": ["power", "console"], "description": "Runs VMs"},
        content_type="application/json",
    )
    role_id = made.json()["id"]
    changed = api.patch(
        f"/api/v1/roles/{role_id}/", {"own_only": True}, content_type="application/json"
    )
    listed = api.get("/api/v1/roles/").json()
    gone = api.delete(f"/api/v1/roles/{role_id}/")

    assert made.status_code == 201
    assert made.json()["privileges"] == ["console", "power", "view"]
    assert changed.status_code == 200 and changed.json()["own_only"] is True
    assert [r["name"] for r in listed] == ["operator", "member", "viewer", "power-user"]
    assert gone.status_code == 204 and not Role.objects.exists()
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"role.created", "role.updated", "role.deleted"} <= actions


def test_it_refuses_a_bad_role_naming_what_is_wrong(api_for):
    api = api_for("admin")

    unknown = api.post(
        "/api/v1/roles/",
        {"name": "x", "privileges": ["power", "fly"]},
        content_type="application/json",
    )
    builtin = api.post(
        "/api/v1/roles/", {"name": "viewer", "privileges": []}, content_type="application/json"
    )

    assert unknown.status_code == 400
    assert unknown.json()["privileges"][0].startswith("Unknown privilege(s) fly: use ")
    assert builtin.status_code == 400
    assert builtin.json()["name"] == ["'viewer' is a built-in role: choose another name."]
    assert not Role.objects.exists()


def test_a_role_in_use_is_not_deleted(world, client_for, alpha):
    admin = Actor(world.users["admin"])
    role = access.create_role(name="helper", privileges=["snapshot"], actor=admin)
    access.add_grant(alpha, role="helper", user=world.users["newcomer"], actor=admin)

    answer = client_for("admin").post(f"/roles/{role.pk}/delete/", follow=True)

    assert texts(answer, "//div[contains(@class,'alert')]") == [
        "Role helper is used by 1 grant(s): remove them first."
    ]
    assert Role.objects.filter(pk=role.pk).exists()


def test_an_admin_defines_a_role_and_a_group_on_their_pages(client_for, world):
    admin = client_for("admin")

    page = admin.get("/roles/")
    admin.post(
        "/roles/",
        {"name": "backup-operator", "privileges": ["backup", "snapshot"], "own_only": "1"},
    )
    admin.post("/groups/", {"name": "night-shift", "members": "member viewer"})

    assert "config_cpu_memory" in page.content.decode()  # the catalogue, with descriptions
    role = Role.objects.get(name="backup-operator")
    assert (role.privileges, role.own_only) == (["backup", "snapshot", "view"], True)
    group = Group.objects.get(name="night-shift")
    assert sorted(u.username for u in group.user_set.all()) == ["member", "viewer"]
    assert "night-shift" in admin.get("/groups/").content.decode()
    assert client_for("operator").get("/groups/").status_code == 403


def test_an_operator_grants_a_group_a_role_and_its_members_hold_it(world, client_for, alpha):
    admin = Actor(world.users["admin"])
    newcomer = world.users["newcomer"]
    access.save_group(None, name="ops", members=[newcomer], actor=admin)
    vm = world.teams["alpha"].vms[0]
    assert not allowed(newcomer, vm, "power")

    page = client_for("operator")
    page.post(f"/projects/{alpha.pk}/grants/", {"group": "ops", "role": "operator"})
    grant = Grant.objects.get(project=alpha)
    shown = texts(page.get(f"/projects/{alpha.pk}/"), "//table[contains(@class,'grants')]//td")

    assert (grant.group.name, grant.builtin, grant.vm) == ("ops", "operator", None)
    assert shown[:3] == ["group ops", "operator", "the whole project"]
    assert allowed(forget(newcomer), vm, "power")
    page.post(f"/projects/{alpha.pk}/grants/{grant.pk}/remove/")
    assert not allowed(forget(newcomer), vm, "power")
    assert {"grant.added", "grant.removed"} <= set(
        AuditEvent.objects.filter(username="operator").values_list("action", flat=True)
    )


def test_the_grants_api_adds_lists_and_removes_a_vm_grant(world, api_for, alpha):
    api = api_for("operator")
    vm = world.teams["alpha"].vms[0]
    url = f"/api/v1/projects/{alpha.pk}/grants/"
    group = Group.objects.create(name="ops")

    added = api.post(
        url,
        {"user": world.users["newcomer"].pk, "role": "viewer", "vm": str(vm.pk)},
        content_type="application/json",
    )
    both = api.post(
        url,
        {"user": world.users["newcomer"].pk, "group": group.pk, "role": "viewer"},
        content_type="application/json",
    )
    listed = api_for("viewer").get(url).json()
    removed = api.delete(f"{url}{added.json()['id']}/")

    assert added.status_code == 201
    assert (added.json()["username"], added.json()["vm"]) == ("newcomer", str(vm.pk))
    assert both.json() == {"user": ["Grant the role to a user or to a group (one of them)."]}
    assert [g["role"] for g in listed] == ["viewer"]
    assert removed.status_code == 204 and not Grant.objects.exists()


def test_an_own_only_role_creates_vms_from_templates_only(world, new_client, alpha):
    admin = Actor(world.users["admin"])
    newcomer = world.users["newcomer"]
    role = access.create_role(
        name="self-service", privileges=["allocate"], own_only=True, actor=admin
    )
    access.add_grant(alpha, role=role.name, user=newcomer, actor=admin)
    Template.objects.create(name="small").projects.add(alpha)
    page = new_client()
    page.force_login(newcomer)

    wizard = page.get("/vms/new/")
    api = page.post(
        "/api/v1/vms/",
        {"name": "mine", "project": alpha.pk, "install": {"method": "kernel", "kernel": "/k"}},
        content_type="application/json",
    )

    assert wizard.status_code == 302 and wizard["Location"].endswith("/vms/new/from-template/")
    assert api.status_code == 403
    assert "choose a template" in api.json()["detail"]


def test_the_live_changes_of_a_vm_granted_alone_reach_its_holder(world, alpha):
    admin = Actor(world.users["admin"])
    newcomer = world.users["newcomer"]
    web, db = world.teams["alpha"].vms
    access.add_grant(alpha, role="viewer", user=newcomer, vm=web, actor=admin)
    projects, granted = vm_projects_seen(newcomer), vms_granted(newcomer)

    assert sees_vm(projects, {"id": str(web.pk), "project": alpha.pk}, granted) is True
    assert sees_vm(projects, {"id": str(db.pk), "project": alpha.pk}, granted) is False
