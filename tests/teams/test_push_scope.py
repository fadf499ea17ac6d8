"""The websockets decide which VM changes a user gets from the VM's project alone
(panel.permissions.vm_projects_seen / sees_vm), without a query per change. That must
agree, for every kind of user and VM, with what the VM list and the API show them."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model

from panel import services
from panel.actors import Actor
from panel.choices import ProjectRole
from panel.models import Host
from panel.permissions import sees_vm, vm_projects_seen
from vms.models import VirtualMachine
from vms.permissions import visible_vms
from vms.services import serialize_vm

pytestmark = pytest.mark.django_db


def test_a_change_is_pushed_to_exactly_those_who_see_the_vm():
    User = get_user_model()
    admin = User.objects.create_superuser("admin", "a@example.test", "admin-pass-9d3k")
    alpha = services.create_project(name="alpha", actor=Actor(admin))
    beta = services.create_project(name="beta", actor=Actor(admin))
    people = {"admin": admin}
    for name, project, role in (
        ("operator", alpha, ProjectRole.OPERATOR),
        ("member", alpha, ProjectRole.MEMBER),
        ("viewer", alpha, ProjectRole.VIEWER),
        ("outsider", beta, ProjectRole.MEMBER),
        ("disabled", alpha, ProjectRole.OPERATOR),
    ):
        people[name] = User.objects.create_user(name, f"{name}@example.test", "x-pass-12345")
        services.add_member(project, user=people[name], role=role, actor=Actor(admin))
    people["nobody"] = User.objects.create_user("nobody", "n@example.test", "x-pass-12345")
    people["disabled"].is_active = False
    people["disabled"].save()
    host = Host.objects.create(name="kvm01", uri="qemu+ssh://root@kvm01.example.test/system")
    vms = [
        VirtualMachine.objects.create(id=uuid.uuid4(), name=name, host=host, project=project)
        for name, project in (("in-alpha", alpha), ("in-beta", beta), ("unassigned", None))
    ]
    # The member owns nothing here, and the outsider was granted nothing: seeing is by
    # project only.
    seen = {}
    for who, user in people.items():
        projects = vm_projects_seen(User.objects.get(pk=user.pk))
        for vm in vms:
            pushed = sees_vm(projects, serialize_vm(vm))
            shown = visible_vms(user).filter(pk=vm.pk).exists()
            assert pushed == shown, (who, vm.name, pushed, shown)
            seen[who, vm.name] = pushed
    assert seen["admin", "unassigned"] and seen["viewer", "in-alpha"]
    assert not seen["outsider", "in-alpha"] and seen["outsider", "in-beta"]
    assert not any(seen["disabled", n] or seen["nobody", n] for n in ("in-alpha", "in-beta"))
