"""The volume page's forms, one small view per verb: the volume fetched as one the user
sees (the services check the right each verb needs), a refusal shown as the page's
error; the answer is the page again, or where the verb leads (its job, the pool)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.models import Project
from panel.permissions import VIEW, get_object_for_user, restrict

from . import services
from .models import StoragePool, Volume

VolumeForm = Callable[[HttpRequest, Volume], HttpResponse | None]


def volume_form(apply: VolumeForm) -> Callable[[HttpRequest, int], HttpResponse]:
    """The view of a volume form whose body is apply(request, volume): it answers where to
    go, or None to come back to the volume's page."""

    @require_POST
    @functools.wraps(apply)
    def view(request: HttpRequest, volume_id: int) -> HttpResponse:
        volume = get_object_for_user(
            Volume.objects.select_related("pool__host", "project", "owner"),
            request.user,
            volume_id,
            VIEW,
        )
        try:
            answer = apply(request, volume)
        except ServiceError as exc:
            messages.error(request, exc.message)
            answer = None
        return answer or redirect("volume_detail", volume_id=volume.pk)

    return view


def _done(request: HttpRequest, volume: Volume, verb: str) -> None:
    messages.success(request, f"{volume.name}: {verb} done.")


@volume_form
def volume_resize(request: HttpRequest, volume: Volume) -> None:
    """Grow the volume (or shrink it, when asked)."""
    services.resize_volume(
        volume,
        request.POST.get("capacity_gib"),
        shrink=request.POST.get("shrink") == "1",
        actor=Actor.of(request),
    )
    _done(request, volume, "resize")


@volume_form
def volume_copy(request: HttpRequest, volume: Volume) -> HttpResponse:
    """Clone the volume, or convert it to another format, as a job (its page is the answer)."""
    data = request.POST
    target = (
        restrict(StoragePool.objects.all(), request.user).filter(pk=data.get("pool") or 0).first()
    )
    job = services.copy_volume(
        volume,
        name=data.get("name", ""),
        format=data.get("format") or None,
        target_pool=target,
        actor=Actor.of(request),
    )
    return redirect("job_detail", job_id=job.pk)


@volume_form
def volume_wipe(request: HttpRequest, volume: Volume) -> HttpResponse:
    """Zero the volume's data, as a job (its page is the answer)."""
    job = services.wipe_volume(volume, actor=Actor.of(request))
    return redirect("job_detail", job_id=job.pk)


@volume_form
def volume_check(request: HttpRequest, volume: Volume) -> None:
    """Run qemu-img check on the volume."""
    services.check_volume(volume, actor=Actor.of(request))
    _done(request, volume, "check")


@volume_form
def volume_info(request: HttpRequest, volume: Volume) -> None:
    """Read the volume's details from its host again."""
    services.volume_details(volume)


@volume_form
def volume_share(request: HttpRequest, volume: Volume) -> None:
    """Publish the image to every project, or withdraw it (admins)."""
    services.set_shared(volume, request.POST.get("shared") == "1", actor=Actor.of(request))
    _done(request, volume, "share")


@volume_form
def volume_assign(request: HttpRequest, volume: Volume) -> None:
    """Give the volume to a project, with the format it is to be used as (admins)."""
    project = Project.objects.filter(pk=request.POST.get("project") or 0).first()
    services.assign_volume(volume, project, request.POST.get("format", ""), actor=Actor.of(request))
    _done(request, volume, "assign")


@volume_form
def volume_delete(request: HttpRequest, volume: Volume) -> HttpResponse:
    """Delete the volume; its pool's page is the answer."""
    pool_id = volume.pool_id
    services.delete_volume(volume, actor=Actor.of(request))
    messages.success(request, f"Volume {volume.name} deleted.")
    return redirect("pool_detail", pool_id=pool_id)
