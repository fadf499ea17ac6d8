"""The image library: ISOs and cloud images admins publish in a pool, for every project
(public) or for the projects listed, and the projects' view of it.

An image is a volume of no project. Its format is the one the admin states (or the
volume's recorded one), checked against the file's header: never taken from it, and an
image whose header names a backing or data file is refused. Added from a URL, it is
fetched by a job (library_fetch); added from a volume (one uploaded or made by an
admin), it is checked at once.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import QuerySet

from panel import audit, hypervisor, jobs
from panel.actors import Actor
from panel.choices import JobKind
from panel.exceptions import ConflictError, ServiceError
from panel.hostcalls import on_host
from panel.hypervisor import storage as hv
from panel.models import Job, Project
from panel.permissions import VIEW, require_admin, restrict
from storage.models import FormatSource, ImageKind, ImageState, LibraryImage, StoragePool, Volume
from storage.services.common import require_idle, vms_using
from storage.services.library_fetch import HEX, LIBRARY, SUMS_RULES, file_name
from storage.services.sync import touch_pool
from storage.services.trust import check_content, require_cd_image
from storage.services.validation import validate_name
from vms.install import tree

# The formats an image of each kind may be stated as.
KIND_FORMATS = {ImageKind.ISO: ("raw",), ImageKind.CLOUD: ("qcow2", "raw")}


@dataclass(frozen=True)
class ImageSpec:
    """What an admin says about an image: its name, kind and format, the OS it holds,
    and who may use it (public, or the projects listed)."""

    name: str
    kind: str
    format: str = ""
    os_variant: str = ""
    public: bool = False
    projects: tuple[Project, ...] = field(default_factory=tuple)


def visible_images(user: object) -> QuerySet[LibraryImage]:
    """The library images user sees: all for admins, else the public ones and those
    shared with one of their projects."""
    return restrict(
        LibraryImage.objects.select_related("pool__host", "volume", "job"),
        user,  # type: ignore[arg-type]
        VIEW,
    )


def usable_image(user: object, project: Project, pk: int | None, kind: str) -> LibraryImage:
    """A ready library image of kind that a VM of project may use, as user sees it; a
    refusal naming library_image otherwise (another project's private image is none)."""
    image = None
    if pk is not None:
        image = visible_images(user).filter(pk=pk, kind=kind, state=ImageState.READY).first()
    if image is not None and not (image.public or image.projects.filter(pk=project.pk).exists()):
        image = None
    if image is None or image.volume is None:
        label = ImageKind(kind).label.lower()
        raise ServiceError(
            f"No library {label} with id {pk} that {project.name} may use.",
            field="library_image",
        )
    return image


def _format(spec: ImageSpec) -> str:
    if spec.kind not in KIND_FORMATS:
        raise ServiceError("The kind is iso (an installer) or cloud (a cloud image).", field="kind")
    allowed = KIND_FORMATS[ImageKind(spec.kind)]
    fmt = spec.format or allowed[0]
    if fmt not in allowed:
        raise ServiceError(
            f"A {ImageKind(spec.kind).label.lower()} is {' or '.join(allowed)}, not "
            f"'{fmt[:20]}'. The panel takes the format you state and checks the file against it.",
            field="format",
        )
    return fmt


def _volume_name(spec: ImageSpec, url: str) -> str:
    name = validate_name(spec.name or file_name(url), "image", field="name")
    if spec.kind == ImageKind.ISO and not name.lower().endswith(".iso"):
        raise ServiceError(
            f"An installer ISO's name ends in .iso ('{name}' does not).", field="name"
        )
    return name


def add_from_url(
    pool: StoragePool,
    spec: ImageSpec,
    *,
    url: str,
    sha256: str = "",
    sums_url: str = "",
    actor: Actor,
) -> LibraryImage:
    """Publish the image at url in pool: checked here, fetched by a job that verifies its
    SHA-256 (typed, or read from the SUMS file at sums_url)."""
    require_admin(actor.user, "add images to the library")
    with audit.refusals_recorded(actor, "library.add", pool):
        fmt = _format(spec)
        url = tree.checked_url(url.strip(), LIBRARY)
        sha256 = sha256.strip().lower()
        if sha256 and not HEX.match(sha256):
            raise ServiceError("A SHA-256 is 64 hexadecimal digits.", field="sha256")
        if not sha256 and not sums_url.strip():
            raise ServiceError(
                "Give the image's SHA-256, or the URL of a SUMS file (SHA256SUMS) listing it: "
                "the panel verifies every image it fetches.",
                field="sha256",
            )
        if sums_url.strip():
            sums_url = tree.checked_url(sums_url.strip(), SUMS_RULES)
            tree.target(sums_url, SUMS_RULES)
        # Its name resolved and every address checked now, and again, hop by hop, when the
        # job fetches from it.
        tree.target(url, LIBRARY)
        name = _volume_name(spec, url)
        if pool.state != "active":
            raise ConflictError(f"Pool {pool.name} is not running: start it first.")
        with transaction.atomic():
            if Volume.objects.filter(pool=pool, name=name).exists():
                raise ServiceError(
                    f"Pool {pool.name} already has a volume named {name}.", field="name"
                )
            volume = Volume.objects.create(
                pool=pool, name=name, format=fmt, format_source=FormatSource.CREATED,
                shared=spec.public, owner=actor.person,
            )  # fmt: skip
            image = _create(spec, pool, volume, fmt, actor, url=url, sha256=sha256)
            image.sums_url = sums_url
            image.job = _queue_fetch(image, volume, actor)
            image.save(update_fields=["sums_url", "job"])
    return image


def _create(
    spec: ImageSpec, pool: StoragePool, volume: Volume, fmt: str, actor: Actor, **source: str
) -> LibraryImage:
    image = LibraryImage.objects.create(
        name=spec.name or volume.name,
        kind=spec.kind,
        pool=pool,
        volume=volume,
        format=fmt,
        os_variant=spec.os_variant,
        public=spec.public,
        created_by=actor.person,
        source_url=source.get("url", ""),
        sha256=source.get("sha256", ""),
        state=ImageState.READY if not source else ImageState.FETCHING,
    )
    image.projects.set(spec.projects)
    return image


def _queue_fetch(image: LibraryImage, volume: Volume, actor: Actor) -> Job:
    from storage.tasks import library_fetch_task  # storage.tasks imports the services

    return jobs.queue(
        JobKind.LIBRARY_FETCH,
        library_fetch_task,
        image,
        target=f"volume:{volume.pk}",
        spec={"image": image.pk, "volume": volume.pk, "volume_name": volume.name},
        actor=actor,
        host=image.pool.host,
        project=None,
        action="library.add",
        detail=f"{image.source_url} into {image.pool.name}/{volume.name} ({image.format})",
    )


def add_from_volume(volume: Volume, spec: ImageSpec, *, actor: Actor) -> LibraryImage:
    """Publish a volume of no project (uploaded or made by an admin) as an image, once its
    content is checked as the format stated: self-contained, no backing or data file."""
    require_admin(actor.user, "add images to the library")
    with audit.refusals_recorded(actor, "library.add", volume):
        fmt = _format(spec)
        if volume.project_id is not None:
            raise ServiceError(
                f"{volume.name} belongs to project {volume.project}: publish a copy of no "
                "project (clone it as an admin), so the project cannot change the image.",
                field="volume",
            )
        if LibraryImage.objects.filter(volume=volume).exists():
            raise ConflictError(f"{volume.name} is already in the library.")
        require_idle(volume)
        if spec.kind == ImageKind.ISO:
            require_cd_image(volume, "volume")
        chain = check_content(volume, "published", declared=fmt)
        if chain:
            raise ServiceError(
                f"{volume.name} has a backing file: a library image must be self-contained "
                "(qemu-img convert -O qcow2 makes one).",
                field="volume",
            )
        with transaction.atomic():
            if volume.format_source == FormatSource.FOUND:
                volume.format_source = FormatSource.ASSIGNED
            volume.format, volume.backing, volume.shared = fmt, [], spec.public
            volume.save(update_fields=["format", "format_source", "backing", "shared"])
            image = _create(spec, volume.pool, volume, fmt, actor)
            audit.record(actor, "library.add", image, detail=f"volume {volume.name} ({fmt})")
    return image


def update_image(
    image: LibraryImage,
    *,
    os_variant: str | None = None,
    public: bool | None = None,
    projects: Iterable[Project] | None = None,
    actor: Actor,
) -> LibraryImage:
    """Change an image's OS variant and who may use it."""
    require_admin(actor.user, "change library images")
    with transaction.atomic():
        if os_variant is not None:
            image.os_variant = os_variant
        if public is not None:
            image.public = public
            if image.volume is not None:
                Volume.objects.filter(pk=image.volume.pk).update(shared=public)
        image.save(update_fields=["os_variant", "public"])
        if projects is not None:
            image.projects.set(list(projects))
        names = ", ".join(p.name for p in image.projects.all()) or "none"
        audit.record(
            actor, "library.change", image, detail=f"public={image.public}; projects: {names}"
        )
    return image


def delete_image(image: LibraryImage, *, actor: Actor) -> None:
    """Remove an image from the library with its volume (refused while a VM uses it or it
    is being fetched)."""
    require_admin(actor.user, "delete library images")
    with audit.refusals_recorded(actor, "library.delete", image):
        if image.state == ImageState.FETCHING:
            raise ConflictError(
                f"{image.name} is still being fetched: cancel its job first, or wait."
            )
        volume = image.volume
        if volume is not None:
            users = vms_using(volume.pool.host, [volume.path])
            if users:
                raise ConflictError(
                    f"{image.name} is a disk of {', '.join(sorted(users))}: it stays while "
                    "they use it."
                )
            require_idle(volume)
        with transaction.atomic():
            audit.record(actor, "library.delete", image)
            image.delete()
            if volume is not None:
                volume.delete()
                host = volume.pool.host
                with (
                    on_host(host, f"Volume {volume.name}"),
                    contextlib.suppress(hypervisor.NotFound),
                ):
                    hv.delete_volume(host.uri, volume.pool.name, volume.name)
    touch_pool(image.pool)


def undo_abandoned_fetch(job: Job) -> str:
    """A fetch whose worker died: its volume removed (host and row), the image failed."""
    image = LibraryImage.objects.filter(pk=job.result.get("image")).first()
    volume = Volume.objects.select_related("pool__host").filter(pk=job.result.get("volume"))
    made = volume.first()
    if made is not None:
        with contextlib.suppress(hypervisor.NotFound):
            hv.delete_volume(made.pool.host.uri, made.pool.name, made.name, wait=600)
        made.delete()
    if image is not None:
        LibraryImage.objects.filter(pk=image.pk).update(
            state=ImageState.FAILED, message="The worker fetching it stopped."
        )
    return "the partly fetched image was removed"


def parse_projects(values: Iterable[object]) -> tuple[Project, ...]:
    """The projects named by ids; a refusal naming projects when one is none."""
    ids = []
    for value in values:
        if isinstance(value, bool) or not re.fullmatch(r"[0-9]{1,18}", str(value)):
            raise ServiceError("projects is a list of project ids.", field="projects")
        ids.append(int(str(value)))
    found = {p.pk: p for p in Project.objects.filter(pk__in=ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise ServiceError(f"No project with id {missing[0]}.", field="projects")
    return tuple(found[i] for i in ids)
