"""Admins edit a project: name, quota, and the hosts it may use."""

from __future__ import annotations

import pytest

from panel import quotas, services
from panel.actors import Actor
from panel.models import AuditEvent, Host

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(admin_user):
    return services.create_project(name="team-a", quota={"vms": 2}, actor=Actor(admin_user))


def test_it_saves_quota_and_allowed_hosts(admin_client, project):
    h1 = Host.objects.create(name="kvm01", uri="test:///one")
    Host.objects.create(name="kvm02", uri="test:///two")
    response = admin_client.post(
        f"/projects/{project.pk}/edit/",
        {
            "name": "team-a",
            "description": "web",
            "quota_vms": "5",
            "quota_vcpus": "",
            "quota_memory_mib": "4096",
            "quota_disk_gib": "",
            "allowed_hosts": [h1.pk],
        },
    )
    assert response.status_code == 302
    assert quotas.limits(project) == {
        "vms": 5,
        "vcpus": None,
        "memory_mib": 4096,
        "disk_gib": None,
        "backup_gib": None,
    }
    assert list(project.allowed_hosts.all()) == [h1]
    assert AuditEvent.objects.filter(action="project.update", project=project).exists()
    page = admin_client.get(f"/projects/{project.pk}/edit/").content.decode()
    assert 'value="5"' in page and "kvm02" in page


def test_it_refuses_a_negative_quota_and_changes_nothing(admin_client, project):
    response = admin_client.post(
        f"/projects/{project.pk}/edit/", {"name": "team-a", "quota_vms": "-1"}
    )
    assert response.status_code == 400
    assert "greater than or equal to 0" in response.content.decode()
    assert quotas.limits(project)["vms"] == 2


def test_it_lets_only_admins_edit(client, project, django_user_model, admin_user):
    user = django_user_model.objects.create_user("op", password="op-pass-8Jd2")
    services.add_member(project, user=user, role="operator", actor=Actor(admin_user))
    client.force_login(user)
    assert client.get(f"/projects/{project.pk}/edit/").status_code == 403
    other = services.create_project(name="team-b", actor=Actor(admin_user))
    assert client.get(f"/projects/{other.pk}/edit/").status_code == 404
