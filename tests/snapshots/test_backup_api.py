"""The backup and schedule endpoints: bad input named by field, state refusals 409, scopes
and roles, quota for restores into new VMs; a backup taken and restored through the API."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from panel import quotas
from panel.models import AuditEvent, Job, Membership, Quota
from panel.permissions import forget
from tests.snapshots.conftest import post, run_backup_job
from vms.models import Backup, BackupSchedule

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(300)]


def test_it_takes_lists_restores_and_deletes_a_backup_through_the_api(
    make_vm, backup_pool, dir_pool, admin_client, undefine_later
):
    vm = make_vm(start=False)
    url = f"/api/v1/vms/{vm.pk}/backups/"
    response = post(admin_client, url, {"pool": backup_pool.pk})
    assert response.status_code == 202, response.content
    job = run_backup_job(response.json()["job"])
    assert job.state == "succeeded", job.log
    [listed] = admin_client.get(url).json()["results"]
    assert listed["id"] == response.json()["backup"]
    assert (listed["state"], listed["method"], listed["pool"]) == (
        "good",
        "offline",
        backup_pool.pk,
    )
    assert listed["disks"][0]["target"] == "vda" and listed["size"] > 0
    assert admin_client.get(f"{url}{listed['id']}/").json()["verify"][0]["ok"] is True

    restore = f"{url}{listed['id']}/restore/"
    cases = [
        ({"mode": "sideways"}, "mode"),
        ({"mode": "new", "name": "two words", "pool": dir_pool.pk}, "name"),
        ({"mode": "new", "name": vm.name, "pool": dir_pool.pk}, "name"),
        ({"mode": "new", "name": "fresh"}, "pool"),
        ({"mode": "new", "name": "fresh", "pool": 999999}, "pool"),
    ]
    for body, field in cases:
        response = post(admin_client, restore, body)
        assert response.status_code == 400, (body, response.content)
        assert field in response.json(), (body, response.json())
    assert not Job.objects.filter(kind="vm.backup.restore").exists()

    Quota.objects.update_or_create(project=vm.project, defaults={"vms": 1})
    response = post(admin_client, restore, {"mode": "new", "name": "fresh", "pool": dir_pool.pk})
    assert response.status_code == 403 and "Quota exceeded" in response.json()["detail"]
    Quota.objects.filter(project=vm.project).update(vms=2)

    response = post(admin_client, restore, {"mode": "new", "name": "fresh", "pool": dir_pool.pk})
    assert response.status_code == 202, response.content
    # The new VM's slot is held while its job is queued, before its row exists.
    assert quotas.usage(vm.project).vms == 2
    again = post(admin_client, restore, {"mode": "new", "name": "fresh2", "pool": dir_pool.pk})
    assert again.status_code == 409 and "is busy: job #" in again.json()["detail"]
    job = run_backup_job(response.json()["job"])
    assert job.state == "succeeded", job.log
    undefine_later(job.result["restored"])
    assert quotas.usage(vm.project).vms == 2  # the row now, the hold released
    assert AuditEvent.objects.filter(action="vm.backup.restore", result="success").exists()

    response = admin_client.delete(f"{url}{listed['id']}/")
    assert response.status_code == 204
    assert not Backup.objects.exists()
    assert not any(backup_pool.volumes.all())  # the copies went with it


def test_it_refuses_bad_backups_and_schedules_with_the_field_named(
    make_vm, backup_pool, admin_client
):
    vm = make_vm(start=True)
    url = f"/api/v1/vms/{vm.pk}/backups/"
    for body, field in [
        ({}, "pool"),
        ({"pool": 999999}, "pool"),
        ({"pool": backup_pool.pk, "method": "tape"}, "method"),
        ({"pool": backup_pool.pk, "method": "offline"}, "method"),  # it runs
    ]:
        response = post(admin_client, url, body)
        assert response.status_code == 400, (body, response.content)
        assert field in response.json(), (body, response.json())

    busy = Job.objects.create(kind="vm.clone", target=f"vm:{vm.pk}", state="running")
    response = post(admin_client, url, {"pool": backup_pool.pk})
    assert response.status_code == 409 and f"job #{busy.pk}" in response.json()["detail"]
    busy.delete()
    assert not Backup.objects.exists()

    schedules = f"/api/v1/vms/{vm.pk}/backup-schedules/"
    for body, field in [
        ({"kind": "backup"}, "pool"),
        ({"kind": "backup", "pool": backup_pool.pk, "minute": "61"}, "minute"),
        ({"kind": "backup", "pool": backup_pool.pk, "day_of_week": "someday"}, "day_of_week"),
        ({"kind": "snapshot", "keep_last": -1}, "keep_last"),
        ({"kind": "weekly"}, "kind"),
    ]:
        response = post(admin_client, schedules, body)
        assert response.status_code == 400, (body, response.content)
        assert field in response.json(), (body, response.json())
    assert (
        "cron syntax"
        in post(admin_client, schedules, {"kind": "snapshot", "hour": "25"}).json()["hour"][0]
    )
    assert not BackupSchedule.objects.exists()

    response = post(
        admin_client,
        schedules,
        {"kind": "backup", "pool": backup_pool.pk, "minute": "30", "hour": "3", "keep_last": 3},
    )
    assert response.status_code == 201, response.content
    made = response.json()
    assert (made["cron"], made["keep_last"], made["enabled"]) == ("30 3 * * *", 3, True)
    assert made["next_run"].endswith("03:30:00+00:00")
    one = f"/api/v1/backup-schedules/{made['id']}/"
    response = admin_client.patch(
        one, {"enabled": False, "keep_daily": 7}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert (
        response.json()["enabled"],
        response.json()["next_run"],
        response.json()["keep_daily"],
    ) == (False, None, 7)
    assert AuditEvent.objects.filter(action="vm.backup_schedule.update").exists()
    assert admin_client.delete(one).status_code == 204
    assert not BackupSchedule.objects.exists()


def test_it_scopes_backups_and_schedules_by_project_and_role(
    make_vm, project, plain_user, backup_pool, admin_client
):
    vm = make_vm(start=False)
    run_backup_job(
        post(admin_client, f"/api/v1/vms/{vm.pk}/backups/", {"pool": backup_pool.pk}).json()["job"]
    )
    backup = Backup.objects.get()
    schedule = post(
        admin_client, f"/api/v1/projects/{project.pk}/backup-schedules/", {"kind": "snapshot"}
    ).json()
    urls = {
        "list": f"/api/v1/vms/{vm.pk}/backups/",
        "one": f"/api/v1/vms/{vm.pk}/backups/{backup.pk}/",
        "restore": f"/api/v1/vms/{vm.pk}/backups/{backup.pk}/restore/",
        "schedules": f"/api/v1/vms/{vm.pk}/backup-schedules/",
        "project": f"/api/v1/projects/{project.pk}/backup-schedules/",
        "schedule": f"/api/v1/backup-schedules/{schedule['id']}/",
    }
    api = APIClient()
    assert api.get(urls["list"]).status_code == 401
    api.force_authenticate(plain_user)
    # Outside the project nothing exists (404); restore takes only POST, which is said
    # before anything is looked up (405).
    codes = {name: api.get(url).status_code for name, url in urls.items()}
    assert codes == {**dict.fromkeys(urls, 404), "restore": 405}, codes
    assert api.post(urls["restore"], {"mode": "in_place"}, format="json").status_code == 404

    Membership.objects.create(user=plain_user, project=project, role="viewer")
    forget(plain_user)
    assert [b["id"] for b in api.get(urls["list"]).json()["results"]] == [backup.pk]
    assert api.get(urls["schedule"]).json()["kind"] == "snapshot"
    assert api.post(urls["list"], {"pool": backup_pool.pk}, format="json").status_code == 403
    assert api.post(urls["restore"], {"mode": "in_place"}, format="json").status_code == 403
    assert api.delete(urls["one"]).status_code == 403
    assert api.post(urls["schedules"], {"kind": "snapshot"}, format="json").status_code == 403
    assert api.post(urls["project"], {"kind": "snapshot"}, format="json").status_code == 403
    assert api.delete(urls["schedule"]).status_code == 403
    assert api.get(urls["restore"]).status_code == 405

    Membership.objects.filter(user=plain_user).update(role="operator")
    forget(plain_user)
    response = api.post(urls["restore"], {"mode": "in_place"}, format="json")
    assert response.status_code == 202, response.content
    assert Job.objects.get(pk=response.json()["job"]).user == plain_user
    assert api.post(urls["project"], {"kind": "snapshot"}, format="json").status_code == 201


def test_it_refuses_to_delete_a_backup_being_made_but_not_one_whose_job_died(
    make_vm, backup_pool, admin_client
):
    vm = make_vm(start=False)
    job = Job.objects.create(kind="vm.backup", target=f"vm:{vm.pk}", state="running")
    backup = Backup.objects.create(
        vm=vm, vm_uuid=vm.pk, vm_name=vm.name, host=vm.host, pool=backup_pool, job=job
    )
    url = f"/api/v1/vms/{vm.pk}/backups/{backup.pk}/"
    response = admin_client.delete(url)
    assert response.status_code == 409 and "still being made" in response.json()["detail"]
    Job.objects.filter(pk=job.pk).update(state="failed")  # its worker went away
    assert admin_client.delete(url).status_code == 204
    assert not Backup.objects.exists()
