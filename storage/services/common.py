"""What the volume actions share: the checks before them (rights, the project, the
pool, a busy volume, the VMs using it), the frame of a change to a volume
(volume_change), the row a new volume starts as, the queued job."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction

from panel import jobs, locks, quotas
from panel.actors import Actor
from panel.exceptions import ConflictError, ServiceError
from panel.hostcalls import Change, changing
from panel.models import Host, Job, Project
from panel.permissions import ALLOCATE_SPACE, VIEW, allowed, holds, is_admin, restrict
from storage.models import FormatSource, StoragePool, Volume
from storage.services.validation import GIB
from vms.models import VirtualMachine


def vms_using(host: Host, paths: Iterable[str]) -> dict[str, str]:
    """{VM name: path} for the VMs on host whose disks use one of paths."""
    wanted = set(paths)
    found = {}
    for name, disks in VirtualMachine.objects.filter(host=host).values_list("name", "disks"):
        for disk in disks or []:
            if disk.get("source") in wanted:
                found[name] = disk["source"]
    return found


def require_right(actor: Actor, volume: Volume, action: str, verb: str) -> None:
    """PermissionDenied unless actor's role allows action on volume (verb says what)."""
    if not allowed(actor.user, volume, action):
        raise PermissionDenied(f"Your role does not allow you to {verb} {volume.name}.")


def may_create_in(actor: Actor, project: Project | None) -> None:
    """PermissionDenied unless actor may create volumes in project (ServiceError: none given)."""
    if is_admin(actor.user):
        return
    if project is None:
        raise ServiceError("Choose the project the volume belongs to.", field="project")
    if holds(actor.user, project, ALLOCATE_SPACE) is None:
        raise PermissionDenied(f"Your role does not allow creating volumes in {project.name}.")


def require_idle(volume: Volume) -> None:
    """ConflictError while another job holds the volume."""
    locks.refuse_if_busy(f"volume:{volume.pk}", volume.name)


def require_usable_pool(pool: StoragePool, actor: Actor) -> None:
    """Refuses a pool the actor's project may not use, or one that is not running."""
    if not restrict(StoragePool.objects.filter(pk=pool.pk), actor.user, VIEW).exists():
        raise ServiceError(f"Your project may not use pool {pool.name}.", field="pool")
    if pool.state != "active":
        raise ConflictError(f"Pool {pool.name} is not running: an admin must start it first.")


def placeholder(
    pool: StoragePool,
    name: str,
    fmt: str,
    capacity: int,
    *,
    actor: Actor,
    project: Project | None,
) -> Volume:
    """The volume's row, taken with its quota in the caller's transaction (synced empty)."""
    if Volume.objects.filter(pool=pool, name=name).exists():
        raise ServiceError(f"Pool {pool.name} already has a volume named {name}.", field="name")
    if project is not None:
        quotas.reserve(project, disk_gib=math.ceil(capacity / GIB))
    owner = actor.person
    return Volume.objects.create(
        pool=pool,
        name=name,
        format=fmt,
        format_source=FormatSource.CREATED,
        capacity=capacity,
        project=project,
        owner=owner,
    )


def queue_volume_job(
    volume: Volume,
    kind: str,
    spec: dict[str, Any],
    *,
    actor: Actor,
    action: str,
    detail: str,
) -> Job:
    """Queue a volume job of kind for volume; spec goes into the job's result."""
    from storage.tasks import volume_job_task  # storage.tasks imports the services

    return jobs.queue(
        kind,
        volume_job_task,
        volume,
        target=f"volume:{volume.pk}",
        spec={"volume": volume.pk, "volume_name": volume.name, **spec},
        actor=actor,
        host=volume.pool.host,
        project=volume.project,
        action=action,
        detail=detail,
    )


class VolumeChange(Change):
    """A change to a volume (see volume_change), made at once or as a volume job."""

    @classmethod
    def of(cls, volume: Volume, actor: Actor, action: str) -> VolumeChange:
        return cls(actor, action, volume, volume.pool.host, f"Volume {volume.name}")

    def queue(self, kind: str, spec: dict[str, Any], detail: str = "") -> Job:
        """The volume's job queued with spec and audited as the action; inside the
        caller's transaction when there is one (rows made with it)."""
        with transaction.atomic():
            return queue_volume_job(
                self.target, kind, spec, actor=self.actor, action=self.action, detail=detail
            )


@contextlib.contextmanager
def volume_change(
    volume: Volume, actor: Actor, action: str, verb: str, *, right: str
) -> Iterator[VolumeChange]:
    """The frame of a change to volume: refused (403, "you may not <verb> it") unless
    actor has right on it, then (audited) while a job holds it; see panel.hostcalls.changing."""
    require_right(actor, volume, right, verb)
    with changing(VolumeChange.of(volume, actor, action)) as change:
        require_idle(volume)
        yield change
