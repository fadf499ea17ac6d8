"""Uploads into a volume (checked, then streamed inside a job) and downloads of one."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator

from django.db import transaction

from panel import audit, hypervisor, jobs, rows
from panel.actors import Actor
from panel.choices import JobKind, JobState
from panel.exceptions import ConflictError, GoneError, ServiceError
from panel.hostcalls import on_host
from panel.hypervisor import images
from panel.hypervisor import storage as hv
from panel.models import Job
from panel.permissions import ALLOCATE_SPACE, VOLUME_READ
from storage.models import FormatSource, Volume
from storage.services.common import require_right, vms_using, volume_change
from storage.services.sync import save_volume, touch_pool
from storage.services.trust import check_head, require_trusted
from storage.services.validation import as_gib

REPORT_SECONDS = 0.5


def start_upload(volume: Volume, length: int, *, actor: Actor) -> Job:
    """Check an upload of length bytes into volume; the returned job reports its progress."""
    with volume_change(
        volume, actor, "volume.upload", "upload into", right=ALLOCATE_SPACE
    ) as change:
        require_trusted(volume, "uploaded into")
        if length <= 0:
            raise ServiceError(
                "The upload is empty: send the file as the request body with its Content-Length."
            )
        if length > volume.capacity:
            raise ServiceError(
                f"The file is {length} bytes but {volume.name} holds {volume.capacity}: create "
                "the volume with the file's size, or resize it first."
            )
        needed = max(0, length - volume.allocation)
        if needed > volume.pool.available:
            raise ServiceError(
                f"Pool {volume.pool.name} has {as_gib(volume.pool.available)} free; the upload "
                f"needs {as_gib(needed)} more."
            )
        users = vms_using(volume.pool.host, [volume.path])
        if users:
            raise ConflictError(
                f"{volume.name} is a disk of {', '.join(sorted(users))}: detach it before "
                "overwriting it."
            )
        with transaction.atomic():
            job = jobs.create_job(
                JobKind.VOLUME_UPLOAD,
                target=f"volume:{volume.pk}",
                actor=actor,
                host=volume.pool.host,
                project=volume.project,
                label=volume.name,
            )
            job.result = {"volume": volume.pk, "volume_name": volume.name, "length": length}
            job.save(update_fields=["result"])
            change.done(f"job #{job.pk}; {length} bytes")
    return job


def run_upload(
    job: Job, volume: Volume, chunks: Iterable[bytes], *, remove_on_failure: bool
) -> Volume:
    """Stream chunks into the volume inside the job; on failure the job says why and,
    when the volume was made for this upload, it is deleted."""
    length = int(job.result["length"])
    last = {"at": 0.0}

    def progress(done: int, total: int) -> None:
        # At most twice a second: each report is a database write and a push to browsers.
        now = time.monotonic()
        if now - last["at"] >= REPORT_SECONDS or done == total:
            last["at"] = now
            jobs.report(job.pk, progress=int(99 * done / total), message=f"{done} of {total} bytes")

    refused: ServiceError | None = None
    with jobs.running(job.pk) as running:
        if running is None:
            raise ConflictError(f"Upload job #{job.pk} already ran.")
        try:
            # The first bytes are checked against the format the volume was made with
            # before anything is written: a refused image never reaches the host.
            head, rest = take_head(chunks, min(length, images.HEAD_BYTES))
            whole = length <= images.HEAD_BYTES
            try:
                with audit.refusals_recorded(Actor.of_job(job), "volume.upload", volume):
                    chain = check_head(volume, head, whole=whole, what="uploaded")
            except ServiceError as exc:
                refused = exc
                raise
            with on_host(volume.pool.host, f"Upload into {volume.name}"):
                info = hv.upload_volume(
                    volume.pool.host.uri,
                    volume.pool.name,
                    volume.name,
                    itertools.chain([head], rest),
                    length,
                    progress=progress,
                )
        except BaseException as exc:
            if remove_on_failure:
                discard_volume(volume)
                jobs.report(job.pk, log_line=f"removed {volume.name}: the upload did not finish")
            if not isinstance(exc, ServiceError):
                raise ServiceError(f"The upload stopped: {exc}") from exc
            raise
        volume = save_volume(volume, info)
        volume.format_source, volume.backing = FormatSource.DECLARED, chain
        if not rows.save_if_present(volume, ["format_source", "backing"]):
            raise GoneError(f"Volume {volume.name} was deleted meanwhile.")
        jobs.report(job.pk, progress=100, message=f"Uploaded {length} bytes into {volume.name}.")
    if refused is not None:
        raise refused  # the content was refused (400), not the host
    job.refresh_from_db()
    touch_pool(volume.pool)
    if job.state != JobState.SUCCEEDED:
        raise ConflictError(job.message or "The upload failed.")
    return volume


def take_head(chunks: Iterable[bytes], size: int) -> tuple[bytes, Iterator[bytes]]:
    """The first size bytes of chunks, and the rest still to come."""
    it = iter(chunks)
    head = bytearray()
    for chunk in it:
        head += chunk
        if len(head) >= size:
            break
    rest = bytes(head[size:])
    return bytes(head[:size]), itertools.chain([rest] if rest else [], it)


def discard_volume(volume: Volume) -> None:
    """Delete a volume made for a job that failed: on the host, then its row."""
    try:
        hv.delete_volume(volume.pool.host.uri, volume.pool.name, volume.name)
    except hypervisor.NotFound:
        pass
    except hypervisor.HypervisorError:
        return  # keep the row so the leftover stays visible
    Volume.objects.filter(pk=volume.pk).delete()


def open_download(volume: Volume, *, actor: Actor) -> tuple[int, Iterator[bytes]]:
    """(size, chunks) of a volume's contents streamed from its host: for those who may
    change the volume (a viewer, or another member, sees it but does not read it)."""
    require_right(actor, volume, VOLUME_READ, "download")
    with on_host(volume.pool.host, f"Volume {volume.name}"):
        size, chunks = hv.download_volume(volume.pool.host.uri, volume.pool.name, volume.name)
    audit.record(actor, "volume.download", volume, detail=f"{size} bytes")
    return size, chunks
