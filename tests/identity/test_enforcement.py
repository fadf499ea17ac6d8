"""Admins require a second factor of everyone, or of a project's members: such a user
without one can only set one up (pages send them there, the API answers 403)."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from panel import services
from panel.actors import Actor
from panel.models import AuditEvent, Membership, SecurityPolicy

from .conftest import set_up_totp

pytestmark = pytest.mark.django_db

SET_UP = "A second factor is required for your account"


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_it_lets_an_admin_require_a_second_factor_of_everyone(admin_client, tessa):
    page = admin_client.get("/users/")
    assert "Everyone needs a second factor" in page.content.decode()
    admin_client.post("/users/second-factor/", {"require_second_factor": "on"})
    assert SecurityPolicy.current().require_second_factor
    assert AuditEvent.objects.filter(action="mfa.policy").exists()
    client = signed_in(tessa)
    response = client.get("/vms/", follow=True)
    assert response.redirect_chain[-1][0] == "/account/two-factor/"
    assert SET_UP in response.content.decode()
    set_up_totp(client)
    assert client.get("/vms/").status_code == 200


def test_it_refuses_the_api_to_a_user_who_must_set_one_up(admin_client, tessa):
    admin_client.post("/users/second-factor/", {"require_second_factor": "on"})
    token = Token.objects.create(user=tessa)
    api = Client(headers={"Authorization": f"Token {token.key}"})
    response = api.get("/api/v1/projects/")
    assert response.status_code == 403
    assert "Two factors page in the browser" in response.json()["detail"]
    session = signed_in(tessa).get("/api/v1/projects/")
    assert session.status_code == 403


def test_it_keeps_the_rule_to_admins(tessa):
    client = signed_in(tessa)
    assert client.post("/users/second-factor/", {"require_second_factor": "on"}).status_code == 403
    assert not SecurityPolicy.current().require_second_factor


def test_it_requires_a_second_factor_of_a_projects_members(admin_user, tessa, django_user_model):
    actor = Actor(admin_user)
    strict = services.create_project(name="strict", actor=actor)
    loose = services.create_project(name="loose", actor=actor)
    Membership.objects.create(user=tessa, project=strict, role="member")
    other = django_user_model.objects.create_user("otto", password="otto-pass-55xZ")
    Membership.objects.create(user=other, project=loose, role="member")
    admin = signed_in(admin_user)
    form = admin.get(f"/projects/{strict.pk}/edit/").content.decode()
    assert "Members need a second factor" in form
    admin.post(
        f"/projects/{strict.pk}/edit/",
        {"name": "strict", "description": "", "require_second_factor": "on"},
    )
    strict.refresh_from_db()
    assert strict.require_second_factor
    assert signed_in(tessa).get("/").url == "/account/two-factor/"
    assert signed_in(other).get("/").status_code == 200
    token = Token.objects.create(user=tessa)
    api = Client(headers={"Authorization": f"Token {token.key}"})
    assert api.get("/api/v1/projects/").status_code == 403


def test_it_lets_an_admin_set_the_rule_on_a_project_through_the_api(admin_user, tessa):
    project = services.create_project(name="strict", actor=Actor(admin_user))
    admin = signed_in(admin_user)
    url = f"/api/v1/projects/{project.pk}/"
    changed = admin.patch(url, {"require_second_factor": True}, "application/json")
    assert changed.status_code == 200 and changed.json()["require_second_factor"] is True
    Membership.objects.create(user=tessa, project=project, role="viewer")
    refused = signed_in(tessa).patch(url, {"require_second_factor": False}, "application/json")
    assert refused.status_code == 403
    project.refresh_from_db()
    assert project.require_second_factor
