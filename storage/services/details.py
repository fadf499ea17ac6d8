"""What the panel reads and records about one volume: its details and check result,
its assignment to a project, its sharing."""

from __future__ import annotations

import math

from django.db import transaction
from django.utils import timezone

from panel import audit, hypervisor, quotas, rows
from panel.actors import Actor
from panel.exceptions import ConflictError, GoneError, ServiceError
from panel.hostcalls import on_host
from panel.hypervisor import qemu_img
from panel.hypervisor import storage as hv
from panel.models import Project
from panel.permissions import VIEW, require_admin
from storage.models import FormatSource, Volume
from storage.services.common import require_idle, require_right
from storage.services.sync import observed, save_volume
from storage.services.trust import check_content, pinned, trusted
from storage.services.validation import FORMATS, GIB


def volume_details(volume: Volume) -> Volume:
    """qemu-img's view (local host) or libvirt's (remote), saved on the row."""
    host = volume.pool.host
    with on_host(host, f"Volume {volume.name}"):
        info = hv.get_volume(host.uri, volume.pool.name, volume.name)
        volume = save_volume(volume, info)
        refused = ""
        if hypervisor.is_local(host.uri) and trusted(volume):
            try:
                check_content(volume, "read by qemu-img")
            except ServiceError as exc:
                refused = exc.message
        if hypervisor.is_local(host.uri) and trusted(volume) and not refused:
            # Opened as recorded (format and chain given), so the header decides nothing.
            chain = qemu_img.info(host.uri, pinned(volume))
            volume.info = {
                "source": "qemu-img",
                "chain": chain,
                "read_at": timezone.now().isoformat(),
            }
        else:
            volume.info = {
                "source": "libvirt",
                "chain": [
                    {
                        "path": info.path,
                        "format": info.format,
                        "virtual_size": info.capacity,
                        "actual_size": info.allocation,
                        "backing_file": info.backing[0].path if info.backing else "",
                        "snapshots": [],
                    }
                ],
                "read_at": timezone.now().isoformat(),
            }
            if refused or not trusted(volume):
                # libvirt's guess from the content: shown as such, never acted on.
                volume.info["untrusted"] = refused or (
                    "Found on the host: the format and backing file above are libvirt's "
                    "guess from the content, not trusted until an admin assigns the volume."
                )
    if not rows.save_if_present(volume, ["info"]):
        raise GoneError(f"Volume {volume.name} was deleted meanwhile.")
    return volume


def check_volume(volume: Volume, *, actor: Actor) -> Volume:
    """`qemu-img check`, result saved on the row."""
    require_right(actor, volume, VIEW, "check")
    with audit.refusals_recorded(actor, "volume.check", volume):
        # qemu-img opens only what passed the header check, as its recorded format.
        check_content(volume, "checked")
        with on_host(volume.pool.host, f"Volume {volume.name}"):
            result = qemu_img.check(volume.pool.host.uri, volume.path, volume.format or "raw")
        volume.check_result = {**result, "checked_at": timezone.now().isoformat()}
        with transaction.atomic():
            if not rows.save_if_present(volume, ["check_result"]):
                raise GoneError(f"Volume {volume.name} was deleted meanwhile.")
            audit.record(actor, "volume.check", volume, detail=str(result["summary"]))
    return volume


DECLARABLE = FORMATS


def assign_volume(
    volume: Volume,
    project: Project | None,
    format: str,
    *,
    actor: Actor,
) -> Volume:
    """An admin takes a volume found on a host into the panel: it joins project (counted
    against its disk quota; None: it stays the admins', e.g. an image to publish) with
    the format the admin declares, once its content is checked as that format (nothing
    its header names outside the project's volumes)."""
    require_admin(actor.user, "assign volumes found on a host")
    with audit.refusals_recorded(actor, "volume.assign", volume, project=project):
        if format not in DECLARABLE:
            raise ServiceError(
                f"Declare the volume's format: one of {', '.join(DECLARABLE)} ('{format[:20]}' "
                "is not one). The panel does not take the format from the content.",
                field="format",
            )
        if trusted(volume):
            raise ConflictError(
                f"{volume.name} is already assigned ({volume.get_format_source_display()}): "
                "only volumes found on a host are assigned."
            )
        require_idle(volume)
        volume.project = project  # the chain may reach this project's volumes only
        chain = check_content(volume, "assigned", declared=format)
        host = volume.pool.host
        with on_host(host, f"Volume {volume.name}"):
            info = hv.get_volume(host.uri, volume.pool.name, volume.name)
        with transaction.atomic():
            values = observed(info, timezone.now(), format)
            if project is not None:
                quotas.reserve(project, disk_gib=math.ceil(values["capacity"] / GIB))
            for key, value in values.items():
                setattr(volume, key, value)
            volume.format, volume.format_source, volume.backing = (
                format,
                FormatSource.ASSIGNED,
                chain,
            )
            fields = [*values, "project", "format", "format_source", "backing"]
            if not rows.save_if_present(volume, fields):
                raise GoneError(f"Volume {volume.name} was deleted meanwhile.")
            audit.record(
                actor,
                "volume.assign",
                volume,
                detail=f"to {project.name if project else 'no project'} as {format}"
                + (f" backed by {chain[0]['path']}" if chain else ""),
            )
    return volume


def set_shared(volume: Volume, shared: bool, *, actor: Actor) -> Volume:
    """Publish a volume (ISO, cloud image) to every project, or withdraw it."""
    require_admin(actor.user, "publish shared images")
    with transaction.atomic():
        volume.shared = shared
        if not rows.save_if_present(volume, ["shared"]):
            raise GoneError(f"Volume {volume.name} was deleted meanwhile.")
        audit.record(actor, "volume.share", volume, detail="on" if shared else "off")
    return volume
