"""What an image's content may reach: the recorded format and chain of each volume,
and the header checks before qemu opens one (volumes, VM disks, uploads)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from panel import hypervisor
from panel.exceptions import ConflictError, ServiceError
from panel.hostcalls import on_host
from panel.hypervisor import images
from panel.hypervisor import storage as hv
from panel.hypervisor.qemu_img import PinnedImage
from panel.models import Host
from storage.models import FormatSource, StoragePool, Volume
from storage.services.sync import RAW_FORMATS, observed

# How deep a chain of overlays uploaded onto the project's own volumes may go.
MAX_CHAIN = 8
UNTRUSTED_HELP = (
    "The panel never lets an image's content decide: upload a self-contained image "
    "(qemu-img convert -O qcow2, no backing file, no data file), or base it on a volume "
    "of the same project in the same pool."
)


def trusted(volume: Volume) -> bool:
    """Whether the volume's format and chain were set by the panel, its owner or an admin
    (not guessed from its content on the host)."""
    return volume.format_source != FormatSource.FOUND


def require_trusted(volume: Volume, what: str) -> None:
    """ConflictError for a volume found on a host and never assigned: its format is only
    libvirt's guess from its content."""
    if not trusted(volume):
        raise ConflictError(
            f"{volume.name} was found on {volume.pool.host.name} and has not been assigned: "
            f"it cannot be {what} until an admin assigns it to a project with its format "
            "(the panel then checks its content)."
        )


def cd_images(volumes: QuerySet[Volume]) -> QuerySet[Volume]:
    """The volumes among volumes that a VM may boot as a CD-ROM: installer ISOs, named
    *.iso and recorded raw (as the panel makes and uploads them) or iso (libvirt's name
    for one it found). A CD-ROM shows its file raw, so a disk image is never one."""
    return volumes.filter(name__iendswith=".iso", format__in=RAW_FORMATS)


def require_cd_image(volume: Volume, field: str) -> None:
    """ServiceError on field when volume is no installer ISO (see cd_images)."""
    if volume.format not in RAW_FORMATS:
        raise ServiceError(
            f"{volume.name} is a {volume.format} disk image, not an installer ISO: as a CD-ROM "
            "the guest would read its raw bytes. Choose an .iso volume, or install by import "
            "to boot from this disk.",
            field=field,
        )
    if not volume.name.lower().endswith(".iso"):
        raise ServiceError(
            f"{volume.name} is not an installer ISO (its name does not end in .iso): choose "
            "an .iso volume, or upload the installer as a volume named *.iso.",
            field=field,
        )


def recorded_chain(volume: Volume) -> tuple[hypervisor.BackingInfo, ...]:
    """The backing chain the panel recorded for a trusted volume (nearest first)."""
    if not trusted(volume) or volume.format in RAW_FORMATS:
        return ()
    return as_backing(volume.backing)


def as_backing(chain: Iterable[dict[str, str]] | None) -> tuple[hypervisor.BackingInfo, ...]:
    """A recorded chain ([{path, format}]) as the hypervisor takes it."""
    return tuple(
        hypervisor.BackingInfo(path=str(b.get("path", "")), format=str(b.get("format", "")))
        for b in chain or []
        if b.get("path")
    )


def pinned(volume: Volume) -> PinnedImage:
    """The volume as qemu must open it: recorded format and chain, nothing from its header."""
    return PinnedImage(volume.path, volume.format or "raw", recorded_chain(volume))


def record_made(host: Host, path: str, fmt: str, chain: list[dict[str, str]]) -> None:
    """The row of a volume the panel just made at path (a VM's cloned, restored or moved
    disk): its format and chain as made, never as libvirt reads the new file."""
    try:
        info = hv.volume_by_path(host.uri, path)
    except hypervisor.HypervisorError:
        return  # not in a pool: nothing to record
    pool = StoragePool.objects.filter(host=host, name=info.pool).first()
    if pool is None:
        return
    now = timezone.now()
    Volume.objects.update_or_create(
        pool=pool,
        name=info.name,
        defaults={
            **observed(info, now, fmt),
            "format": fmt,
            "format_source": FormatSource.CREATED,
            "backing": chain if fmt not in RAW_FORMATS else [],
        },
    )


def recorded_chains(host: Host, paths: Iterable[str]) -> dict[str, tuple[Any, ...]]:
    """{path: recorded chain} of the trusted volumes at paths on host."""
    rows = Volume.objects.filter(pool__host=host, path__in=list(paths)).select_related("pool")
    return {v.path: recorded_chain(v) for v in rows if trusted(v)}


def check_vm_disks(host: Host, disks: Iterable[dict[str, Any]], what: str) -> None:
    """Before qemu opens a VM's disks (boot, backup): each disk that is a volume the panel
    keeps must be defined as its recorded format, and its header pass check_content."""
    disks = [d for d in disks if d.get("device", "disk") == "disk" and d.get("source")]
    rows = {
        v.path: v
        for v in Volume.objects.filter(
            pool__host=host, path__in=[d["source"] for d in disks]
        ).select_related("pool__host", "project")
    }
    for disk in disks:
        volume = rows.get(disk["source"])
        if volume is None or not trusted(volume):
            continue
        defined = disk.get("format") or "raw"
        recorded = volume.format or "raw"
        same = {defined, recorded} <= {"raw", "iso"} or defined == recorded
        if not same:
            raise ServiceError(
                f"Disk {disk.get('target', '')} is defined as {defined}, but {volume.name} is "
                f"recorded as {recorded}: it cannot be {what} until its definition names the "
                "recorded format (detach it and attach it again).",
                field="disks",
            )
        check_content(volume, what)


def _base_volume(volume: Volume, path: str) -> Volume | None:
    """The trusted volume at path in volume's pool and project, if there is one."""
    if volume.project_id is None:
        return None
    base = Volume.objects.filter(pool=volume.pool, path=path, project=volume.project).first()
    return base if base is not None and trusted(base) and base.pk != volume.pk else None


def _refuse(volume: Volume, what: str, problems: list[str]) -> None:
    raise ServiceError(
        f"{volume.name} cannot be {what}: {'; '.join(problems)}. {UNTRUSTED_HELP}",
        field="volume",
    )


def check_content(
    volume: Volume, what: str, *, declared: str | None = None, depth: int = 0
) -> list[dict[str, str]]:
    """Check the volume's header before qemu reads it: ServiceError (saying why) when its
    content is not its recorded (or declared) format, or names any file (backing file,
    data file, extent) but the panel's recorded chain or a volume of the same project in
    that pool. Returns the chain to record and pin ([{path, format}], nearest first).

    declared: the format an upload or an assignment declares (raw content must then be
    raw, not a disguised image); otherwise the recorded one, and a raw volume needs no
    check (qemu reads it as bytes, whatever a guest wrote into it)."""
    if declared is None:
        require_trusted(volume, what)
    fmt = declared or volume.format or "raw"
    if declared is None and fmt in RAW_FORMATS:
        return []
    if depth > MAX_CHAIN:
        _refuse(volume, what, [f"its backing chain is deeper than {MAX_CHAIN} volumes"])
    host = volume.pool.host
    with on_host(host, f"Volume {volume.name}"):
        facts = hv.inspect_volume(host.uri, volume.pool.name, volume.name, fmt)
    return _judge(volume, facts, what, declared=declared, depth=depth)


def check_head(volume: Volume, head: bytes, *, whole: bool, what: str) -> list[dict[str, str]]:
    """check_content for the first bytes of an upload into volume, before they are
    written: the volume's format is what its owner declared when making it."""
    facts = images.inspect_head(head, volume.format or "raw", whole=whole)
    return _judge(volume, facts, what, declared=volume.format or "raw", depth=0)


def _judge(
    volume: Volume, facts: images.ImageFacts, what: str, *, declared: str | None, depth: int
) -> list[dict[str, str]]:
    problems = list(facts.problems)
    if declared is None:
        # A format the inspector cannot vouch for (QED) is refused when declared; one the
        # panel made itself holds only what qemu wrote.
        problems = [p for p in problems if p != images.CHECKS["banned"]]
    chain: list[dict[str, str]] = []
    if facts.backing_file:
        path = images.backing_path(volume.path, facts.backing_file)
        recorded = [{"path": b.path, "format": b.format} for b in recorded_chain(volume)]
        base = _base_volume(volume, path)
        if declared is None and recorded and recorded[0]["path"] == path:
            chain = recorded
        elif base is not None:
            try:
                below = check_content(base, what, depth=depth + 1)
            except ServiceError as exc:
                problems.append(f"its backing volume {base.name} is refused ({exc.message})")
            else:
                chain = [{"path": base.path, "format": base.format or "raw"}, *below]
        else:
            project = volume.project.name if volume.project else "its project"
            problems.append(
                f"its header names the backing file {path[:200]}, which is not a volume of "
                f"{project} in pool {volume.pool.name}"
            )
    if problems:
        _refuse(volume, what, problems)
    return chain
