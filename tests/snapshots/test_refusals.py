"""What the snapshot endpoints refuse, and who may use them: every refusal changes nothing."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from panel.models import AuditEvent, Job, Membership
from panel.permissions import forget
from tests.snapshots.conftest import post, run_job, snapshots, virsh

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(180)]


def names(vm) -> str:
    return virsh("snapshot-list", str(vm.pk), "--name").strip()


def test_it_refuses_bad_snapshot_names_and_options_with_the_field_named(make_vm, admin_client):
    vm = make_vm(start=False)
    url = f"/api/v1/vms/{vm.pk}/snapshots/"
    cases = [
        ({"name": "two words"}, "name"),
        ({"name": "../etc"}, "name"),
        ({"name": "a;reboot"}, "name"),
        ({"name": "<x>"}, "name"),
        ({"name": "-dash-first"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": "ok", "kind": "sideways"}, "kind"),
        ({"name": "ok", "memory": True}, "memory"),  # shut off: no memory to keep
        ({"name": "ok", "kind": "external", "memory": True}, "memory"),
        ({"name": "ok", "quiesce": True}, "quiesce"),
    ]
    for body, field in cases:
        response = post(admin_client, url, body)
        assert response.status_code == 400, (body, response.content)
        assert field in response.json(), (body, response.json())
    assert "letters, digits" in post(admin_client, url, {"name": "a b"}).json()["name"][0]
    assert not Job.objects.exists()
    assert names(vm) == ""
    assert AuditEvent.objects.filter(action="vm.snapshot.create", result="failure").exists()

    run_job(post(admin_client, url, {"name": "once"}))
    response = post(admin_client, url, {"name": "once"})
    assert response.status_code == 400
    assert "already has a snapshot named 'once'" in response.json()["name"][0]


def test_it_refuses_internal_snapshots_without_qcow2_disks_clearly(make_vm, admin_client):
    raw = make_vm(start=False, disk_format="raw")
    response = post(admin_client, f"/api/v1/vms/{raw.pk}/snapshots/", {"name": "s"})
    assert response.status_code == 400
    message = response.json()["kind"][0]
    assert "qcow2" in message and "vda is raw" in message and "external" in message

    diskless = make_vm(start=True, disk=False)
    response = post(admin_client, f"/api/v1/vms/{diskless.pk}/snapshots/", {"name": "s"})
    assert response.status_code == 400
    assert "no disk" in response.json()["kind"][0]
    assert not Job.objects.exists()
    assert names(raw) == "" and names(diskless) == ""


def test_it_answers_409_while_another_job_runs_on_the_vm(make_vm, admin_client, admin_user):
    vm = make_vm(start=False)
    url = f"/api/v1/vms/{vm.pk}/snapshots/"
    run_job(post(admin_client, url, {"name": "base"}))
    other = Job.objects.create(kind="vm.clone", target=f"vm:{vm.pk}", state="running")

    for response in (
        post(admin_client, f"{url}base/revert/", {"start": True}),
        post(admin_client, url, {"name": "next"}),
        admin_client.delete(f"{url}base/"),
    ):
        assert response.status_code == 409, response.content
        assert f"busy: job #{other.pk} " in response.json()["detail"]
    assert Job.objects.count() == 2
    assert names(vm) == "base"
    assert admin_client.get(f"{url}nothing/").status_code == 404
    assert post(admin_client, f"{url}nothing/revert/").status_code == 404


def test_it_scopes_snapshots_by_project_and_role(make_vm, project, plain_user, admin_client):
    vm = make_vm(start=False)
    url = f"/api/v1/vms/{vm.pk}/snapshots/"
    run_job(post(admin_client, url, {"name": "base"}))
    api = APIClient()

    assert api.get(url).status_code == 401
    api.force_authenticate(plain_user)
    # Outside the project: the VM and its snapshots do not exist.
    assert api.get(url).status_code == 404
    assert api.post(f"{url}base/revert/", {}, format="json").status_code == 404

    Membership.objects.create(user=plain_user, project=project, role="viewer")
    forget(plain_user)  # the same user object across requests: drop its cached roles
    assert [s["name"] for s in api.get(url).json()["results"]] == ["base"]
    assert api.post(url, {"name": "mine"}, format="json").status_code == 403
    assert api.post(f"{url}base/revert/", {}, format="json").status_code == 403
    assert api.delete(f"{url}base/").status_code == 403
    assert api.get(f"{url}base/revert/").status_code == 405

    Membership.objects.filter(user=plain_user).update(role="operator")
    forget(plain_user)
    response = api.post(url, {"name": "mine"}, format="json")
    assert response.status_code == 202, response.content
    assert Job.objects.get(pk=response.json()["job"]).user == plain_user
    assert [s["name"] for s in snapshots(admin_client, vm)] == ["base"]  # queued, not run
