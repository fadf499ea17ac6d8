"""Verifying a backup after the fact: every file its restore reads hashed again and compared
with the SHA-256 taken when the file was written, then the point restored into a scratch
volume of its pool (the restore's own way: the chain flattened, read as recorded) and the
disk it holds hashed; a disk that reads differently from the last verification fails it.

A verification changes nothing but the backup's record (and marks it failed when a file
changed): the scratch volumes are deleted as soon as they are read."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from panel import hypervisor, jobs
from panel.actors import Actor
from panel.choices import JobKind
from panel.exceptions import ConflictError, ServiceError
from panel.models import Job
from panel.permissions import BACKUP
from storage.services import remove_made_volumes
from vms.choices import BackupState
from vms.models import Backup
from vms.services import chains
from vms.services.backups import NOTHING_TO_COPY, backup_host_errors
from vms.services.common import vm_job
from vms.tasks import vm_backup_task


def verify_backup(backup: Backup, *, actor: Actor) -> Job:
    """Queue the verification of a good backup (a job on its VM)."""
    vm = backup.vm
    if vm is None:
        raise ConflictError(f"The VM of backup #{backup.pk} was deleted: verify its files by hand.")
    with vm_job(vm, actor, "vm.backup.verify", "verify backups of", right=BACKUP) as request:
        if backup.state != BackupState.GOOD:
            raise ConflictError(
                f"Backup #{backup.pk} is {backup.get_state_display().lower()}: only a good "
                "backup can be verified."
            )
        if backup.pool is None:
            raise ConflictError(f"The pool of backup #{backup.pk} is no longer in the panel.")
        request.ready(NOTHING_TO_COPY)
        return request.queue(
            JobKind.VM_BACKUP,
            vm_backup_task,
            {"op": "verify", "backup": backup.pk},
            f"verify backup #{backup.pk}",
        )


def run_verify_job(job: Job) -> None:
    """The body of a verification job."""
    backup = Backup.objects.select_related("host", "pool").get(pk=job.result["backup"])
    if backup.pool is None:
        raise ServiceError(f"The pool of backup #{backup.pk} is no longer in the panel.")
    jobs.report(job.pk, progress=5, message=f"Verifying backup #{backup.pk}")
    before = {d["target"]: d.get("sha256") for d in backup.verified.get("disks", [])}
    disks = []
    for index, disk in enumerate(backup.disks):
        files = _check_files(job, backup, disk["target"])
        jobs.report(job.pk, progress=10 + 80 * index // len(backup.disks))
        with backup_host_errors(backup):
            digest = hypervisor.restored_digest(
                backup.host.uri,
                backup.pool.name,
                chains.images(backup)[disk["target"]],
                f"{backup.vm_name}-verify-{backup.pk}-{disk['target']}.raw",
                on_volume=jobs.recorder(job.pk),
            )
        same = None if not before.get(disk["target"]) else before[disk["target"]] == digest
        disks.append(_disk_result(disk["target"], files, digest, same))
        jobs.report(job.pk, log_line=f"{disk['target']}: {disks[-1]['summary']}")
    ok = all(d["ok"] for d in disks)
    verified = {"at": timezone.now().isoformat(), "ok": ok, "disks": disks}
    Backup.objects.filter(pk=backup.pk).update(verified=verified)
    if not ok:
        Backup.objects.filter(pk=backup.pk).update(
            state=BackupState.FAILED, message="Its verification found a changed or unreadable file."
        )
        raise ServiceError(
            f"Backup #{backup.pk} failed its verification: do not restore from it; take a new "
            "backup."
        )
    jobs.report(job.pk, progress=100, message=f"Backup #{backup.pk} is verified.")


def _check_files(job: Job, backup: Backup, target: str) -> list[dict[str, Any]]:
    """Each file the restore of target reads, hashed and compared with its digest when written."""
    results = []
    for point in chains.lineage(backup):
        disk = next(d for d in point.disks if d["target"] == target)
        recorded = next((v.get("sha256") for v in point.verify if v.get("target") == target), None)
        with backup_host_errors(backup):
            digest = hypervisor.file_digest(backup.host.uri, disk["path"])
        ok = recorded is None or recorded == digest
        results.append({"backup": point.pk, "path": disk["path"], "sha256": digest, "ok": ok})
        state = "as written" if recorded == digest else "no digest recorded" if ok else "CHANGED"
        jobs.report(job.pk, log_line=f"{target}: {disk['path']} (backup #{point.pk}): {state}")
    return results


def _disk_result(
    target: str, files: list[dict[str, Any]], digest: str, same: bool | None
) -> dict[str, Any]:
    changed = [f"#{f['backup']}" for f in files if not f["ok"]]
    ok = not changed and same is not False
    if changed:
        summary = f"the file of backup {', '.join(changed)} changed since it was written"
    elif same is False:
        summary = f"restored, it reads differently from the last verification (sha256 {digest})"
    else:
        summary = f"{len(files)} file(s) as written; restored, the disk's sha256 is {digest}"
    return {"target": target, "ok": ok, "files": files, "sha256": digest,
            "same_as_before": same, "summary": summary}  # fmt: skip


def undo_verify(job: Job) -> str:
    """A verification whose worker died: its scratch volume removed. What to tell the user."""
    backup = Backup.objects.select_related("host").filter(pk=job.result.get("backup")).first()
    if backup is None:
        return "its backup is no longer in the panel"
    try:
        removed, _kept = remove_made_volumes(backup.host, job.result.get(jobs.MADE) or [])
    except (ServiceError, hypervisor.HypervisorError):
        return f"check {backup.host.name}: it could not be read"
    return (
        f"its scratch volume was removed ({', '.join(removed)})" if removed else "nothing was left"
    )
