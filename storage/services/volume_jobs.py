"""The body of the volume jobs (full create, clone, convert, wipe) and what undoes
them when their host went away or their worker died."""

from __future__ import annotations

import contextlib
import logging

from panel import hypervisor, jobs
from panel.choices import JobKind, JobState
from panel.exceptions import ServiceError, UnavailableError
from panel.hostcalls import on_host
from panel.hypervisor import storage as hv
from panel.models import Host, Job
from storage.models import Volume
from storage.services.sync import save_volume, touch_pool
from storage.services.trust import check_content, pinned

log = logging.getLogger(__name__)

# How long the cleanup after a dead worker waits for libvirt to finish writing a volume.
ABANDONED_WAIT_SECONDS = 600


def remove_leftovers(host: Host) -> int:
    """Delete the partial copies that jobs left on host when it went away mid-copy."""
    removed = 0
    failed = Job.objects.filter(
        host=host,
        kind__in=[JobKind.VOLUME_CLONE, JobKind.VOLUME_CONVERT],
        state=JobState.FAILED,
        result__has_key="leftover",
    )
    for job in failed:
        leftover = job.result["leftover"]
        pool, name = leftover["pool"], leftover["volume"]
        # A later volume of the same name is someone's real volume: keep it.
        if not Volume.objects.filter(pool__host=host, pool__name=pool, name=name).exists():
            try:
                hv.delete_volume(host.uri, pool, name)
                removed += 1
                log.info("job %s: partial copy %s/%s removed", job.pk, pool, name)
            except hypervisor.NotFound:
                pass
        result = {k: v for k, v in job.result.items() if k != "leftover"}
        Job.objects.filter(pk=job.pk).update(result=result)
    return removed


def run_volume_job(job: Job) -> None:
    """The body of a create (full), clone, convert or wipe job."""
    volume = Volume.objects.select_related("pool__host").filter(pk=job.result["volume"]).first()
    if volume is None:
        raise ServiceError("The volume of this job was removed.")
    if job.kind == JobKind.VOLUME_CREATE:
        _run_create(job, volume)
    elif job.kind in (JobKind.VOLUME_CLONE, JobKind.VOLUME_CONVERT):
        _run_copy(job, volume)
    elif job.kind == JobKind.VOLUME_WIPE:
        _run_wipe(job, volume)
    else:
        raise ServiceError(f"Unknown volume job {job.kind}.")
    touch_pool(volume.pool)


def _run_create(job: Job, volume: Volume) -> None:
    """Write the volume as its spec says; its row goes when the host refuses."""
    host = volume.pool.host
    jobs.report(job.pk, progress=5, message=f"Writing {volume.name}", log_line="create started")
    spec = hypervisor.VolumeSpec(**job.result["spec"])
    try:
        with on_host(host, f"Volume {volume.name}"):
            info = hv.create_volume(host.uri, volume.pool.name, spec)
    except BaseException:
        Volume.objects.filter(pk=volume.pk).delete()
        raise
    save_volume(volume, info)
    jobs.report(job.pk, progress=100, message=f"{volume.name} created.", log_line="created")


def _run_copy(job: Job, volume: Volume) -> None:
    """Copy the volume, as recorded, into the new volume's row (clone or convert)."""
    spec = job.result
    copy = Volume.objects.filter(pk=spec["copy"]).first()
    if copy is None:
        raise ServiceError("The new volume's row was removed.")

    def progress(done: int, total: int) -> None:
        jobs.report(
            job.pk, progress=int(95 * done / total), message=f"{done} of {total} bytes copied"
        )

    jobs.report(
        job.pk,
        progress=1,
        log_line=f"copying {volume.name} to {spec['pool']}/{copy.name} ({spec['format']})",
    )
    host = volume.pool.host
    try:
        # Checked again now the job runs: the copy reads the volume as recorded.
        check_content(volume, "copied")
        with on_host(host, f"Copy of {volume.name}"):
            info = hv.copy_volume(
                host.uri,
                volume.pool.name,
                volume.name,
                copy.name,
                source=pinned(volume),
                format=spec["format"],
                target_pool=spec["pool"],
                progress=progress,
            )
    except UnavailableError as exc:
        # The host went away mid-copy: the partial volume cannot be removed now.
        # Remember it; the reconcile that follows the host's return removes it.
        Volume.objects.filter(pk=copy.pk).delete()
        Job.objects.filter(pk=job.pk).update(
            result=spec | {"leftover": {"pool": spec["pool"], "volume": copy.name}}
        )
        raise UnavailableError(
            f"{exc.message} The partial copy {copy.name} is removed when {host.name} is back up."
        ) from exc
    except BaseException:
        Volume.objects.filter(pk=copy.pk).delete()
        raise
    save_volume(copy, info)
    jobs.report(job.pk, progress=100, message=f"{copy.name} is ready.", log_line="copy finished")
    touch_pool(copy.pool)


def _run_wipe(job: Job, volume: Volume) -> None:
    """Erase the volume's data, opened as recorded."""
    host = volume.pool.host
    jobs.report(job.pk, progress=5, message=f"Wiping {volume.name}", log_line="wipe started")
    with on_host(host, f"Volume {volume.name}"):
        info = hv.wipe_volume(host.uri, volume.pool.name, volume.name, source=pinned(volume))
    save_volume(volume, info)
    jobs.report(job.pk, progress=100, message=f"{volume.name} wiped.", log_line="wiped")


def remove_made_volumes(host: Host, made: list[list[str]]) -> tuple[list[str], list[str]]:
    """After a job whose worker died: the volumes it was making ([pool, name] each, see
    jobs.recorder) that no domain on host uses are deleted, once libvirtd has finished
    writing them, with their rows. Returns the names removed and the paths kept (in use:
    the job had got that far)."""
    try:
        in_use = {d.source for dom in hypervisor.list_domains(host.uri) for d in dom.disks}
    except hypervisor.HypervisorError as exc:
        raise ServiceError(f"{host.name} could not be read: {exc}") from exc
    removed: list[str] = []
    kept: list[str] = []
    for pool, name in made:
        try:
            path = hv.get_volume(host.uri, pool, name).path
        except hypervisor.NotFound:
            continue
        if path in in_use:
            kept.append(path)
            continue
        with contextlib.suppress(hypervisor.NotFound):
            hv.delete_volume(host.uri, pool, name, wait=ABANDONED_WAIT_SECONDS)
            removed.append(name)
        Volume.objects.filter(pool__host=host, pool__name=pool, name=name).delete()
    return removed, kept


def undo_abandoned(job: Job) -> str:
    """A volume job whose worker died: the volume it was making removed (host and row);
    what to tell the user."""
    spec = job.result
    if job.kind in (JobKind.VOLUME_CREATE, JobKind.VOLUME_CLONE, JobKind.VOLUME_CONVERT):
        pk = spec.get("volume") if job.kind == JobKind.VOLUME_CREATE else spec.get("copy")
        made = Volume.objects.select_related("pool__host").filter(pk=pk).first()
        if made is None:
            return "it had made nothing that is left"
        host = made.pool.host
        # libvirtd goes on writing a volume after its caller died: wait for it, then delete.
        with contextlib.suppress(hypervisor.NotFound):
            hv.delete_volume(host.uri, made.pool.name, made.name, wait=ABANDONED_WAIT_SECONDS)
        made.delete()
        touch_pool(made.pool)
        return f"the unfinished volume {made.name} was removed"
    name = spec.get("volume_name", "the volume")
    if job.kind == JobKind.VOLUME_UPLOAD:
        return f"{name} holds part of the upload only: upload the file again"
    return f"{name} may be partly wiped: wipe it again"
