# Create jobs made before Job.secrets kept the whole install request, cloud-init
# user-data and kickstarts included, in their result, which every project member reads.
# Finished jobs lose them; a job still to run gets them as its secrets.

from django.db import migrations

SECRET_KEYS = ("user_data", "meta_data", "network_config", "kickstart")


def scrub(apps, schema_editor):
    Job = apps.get_model("panel", "Job")
    for job in Job.objects.filter(kind="vm.create").only("pk", "state", "result").iterator():
        install = (job.result or {}).get("install")
        if not isinstance(install, dict) or not any(k in install for k in SECRET_KEYS):
            continue
        secrets = {key: install.pop(key) for key in SECRET_KEYS if key in install}
        unfinished = job.state in ("queued", "running")
        Job.objects.filter(pk=job.pk).update(
            result=job.result, secrets=secrets if unfinished else {}
        )


class Migration(migrations.Migration):
    dependencies = [
        ("panel", "0005_job_secrets_and_backup_quota"),
    ]

    operations = [
        migrations.RunPython(scrub, migrations.RunPython.noop),
    ]
