"""The Backups card of the VM page: back up now, the list with its state, a schedule added
and refused with the reason shown, restore and delete, through the page's own forms."""

from __future__ import annotations

import pytest

from panel.models import Job
from tests.snapshots.conftest import run_backup_job
from vms.models import Backup, BackupSchedule

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(240)]


def test_the_backups_card_backs_up_schedules_and_restores(
    make_vm, backup_pool, admin_client, undefine_later
):
    vm = make_vm(start=False)
    page = f"/vms/{vm.pk}/"
    html = admin_client.get(page).content.decode()
    assert "data-vm-backups" in html and "No backups." in html and "No schedules." in html
    assert f'<option value="{backup_pool.pk}">{backup_pool.name}</option>' in html

    response = admin_client.post(
        f"/vms/{vm.pk}/backups/create/", {"pool": backup_pool.pk, "method": ""}
    )
    assert response.status_code == 302
    job = Job.objects.get(kind="vm.backup")
    run_backup_job(job.pk)
    backup = Backup.objects.get()
    html = admin_client.get(page).content.decode()
    assert f'data-backup="{backup.pk}" data-state="good"' in html
    assert "data-job-progress" in html and "100 %" in html
    assert backup.disks[0]["path"] in html

    response = admin_client.post(
        f"/vms/{vm.pk}/backups/schedule-add/",
        {"kind": "backup", "pool": backup_pool.pk, "minute": "99", "hour": "1"},
        follow=True,
    )
    assert "Invalid end range: 99 &gt; 59" in response.content.decode()
    assert not BackupSchedule.objects.exists()
    admin_client.post(
        f"/vms/{vm.pk}/backups/schedule-add/",
        {
            "kind": "backup",
            "pool": backup_pool.pk,
            "minute": "15",
            "hour": "*/6",
            "day_of_month": "*",
            "month_of_year": "*",
            "day_of_week": "*",
            "keep_last": "4",
            "keep_daily": "7",
            "keep_weekly": "0",
        },
    )
    schedule = BackupSchedule.objects.get()
    assert (schedule.cron, schedule.keep_last, schedule.keep_daily) == ("15 */6 * * *", 4, 7)
    html = admin_client.get(page).content.decode()
    assert f'data-schedule="{schedule.pk}"' in html and "15 */6 * * *" in html

    admin_client.post(
        f"/vms/{vm.pk}/backups/restore/",
        {"backup": backup.pk, "mode": "new", "name": "from-card", "pool": backup_pool.pk},
    )
    job = run_backup_job(Job.objects.get(kind="vm.backup.restore").pk)
    assert job.state == "succeeded", job.log
    undefine_later(job.result["restored"])

    admin_client.post(f"/vms/{vm.pk}/backups/schedule-delete/", {"schedule": schedule.pk})
    admin_client.post(f"/vms/{vm.pk}/backups/delete/", {"backup": backup.pk})
    assert not BackupSchedule.objects.exists() and not Backup.objects.exists()
