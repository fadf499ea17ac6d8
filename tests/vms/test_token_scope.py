"""A token's privileges on the real host: a read-only token sees the tiny guest but may
not start it, a full one starts it; a token never carries more than its user holds now
(out of the project: the VM is gone for it), and an admin's scoped token is no admin."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from panel import hypervisor, services
from panel.actors import Actor
from panel.identity import tokens
from panel.models import Host
from tests.conftest import LOCAL_URI

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(120)]


def client_with(user, **scope) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    key = services.create_token(user, actor=Actor(user), **scope).key
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def state(vm) -> str:
    return hypervisor.get_domain(LOCAL_URI, str(vm.pk)).state


def test_a_read_only_token_lists_the_vm_but_cannot_start_it_a_power_one_can(make_vm, member):
    vm = make_vm()
    read_only = client_with(member, name="ro", privileges=["view", "console"])
    power = client_with(member, name="power", privileges=["view", "power"])

    listing = read_only.get("/api/v1/vms/")
    refused = read_only.post(f"/api/v1/vms/{vm.pk}/start/", {}, format="json")

    assert [v["id"] for v in listing.json()["results"]] == [str(vm.pk)]
    assert refused.status_code == 403
    assert "This API token's privileges do not allow 'power'" in refused.json()["detail"]
    assert state(vm) == "shutoff"

    started = power.post(f"/api/v1/vms/{vm.pk}/start/", {}, format="json")
    snapshot = power.post(f"/api/v1/vms/{vm.pk}/snapshots/", {"name": "s1"}, format="json")

    assert started.status_code == 200, started.content
    assert state(vm) == "running"
    assert snapshot.status_code == 403
    assert "do not allow 'snapshot'" in snapshot.json()["detail"]
    assert hypervisor.list_snapshots(LOCAL_URI, str(vm.pk)) == []


def test_a_token_loses_the_project_its_user_is_taken_out_of(make_vm, people, member, admin):
    vm = make_vm()
    token = client_with(member, name="ci")
    assert token.get(f"/api/v1/vms/{vm.pk}/").status_code == 200

    services.remove_member(people.alpha, user=member, actor=Actor(admin))

    assert token.get(f"/api/v1/vms/{vm.pk}/").status_code == 404
    assert token.post(f"/api/v1/vms/{vm.pk}/start/", {}, format="json").status_code == 404
    assert state(vm) == "shutoff"


def test_an_admins_scoped_token_is_no_admin(make_vm, admin, local_host):
    vm = make_vm()
    scoped = client_with(admin, name="like operator", privileges=tokens.preset("operator"))

    hosts = scoped.post(
        "/api/v1/hosts/", {"name": "other", "uri": "test:///default"}, format="json"
    )
    seen = scoped.get("/api/v1/hosts/")
    start = scoped.post(f"/api/v1/vms/{vm.pk}/start/", {}, format="json")
    deleted = scoped.delete(f"/api/v1/hosts/{local_host.pk}/")

    assert hosts.status_code == 403
    assert seen.json()["results"] == []
    assert start.status_code == 404
    assert deleted.status_code == 404
    assert state(vm) == "shutoff"
    assert list(Host.objects.values_list("name", flat=True)) == ["local"]
    assert client_with(admin, name="full").get("/api/v1/hosts/").json()["count"] == 1
