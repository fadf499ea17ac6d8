"""The image library's pages: the list (with search, and the admins' add form), an
image's page with its fetch job's progress, and the admins' forms to change and delete."""

from __future__ import annotations

import re
from typing import Any

from django.contrib import messages
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.models import Project
from panel.permissions import VIEW, get_object_for_user, is_admin, project_ids, require_admin

from . import services
from .models import LibraryImage, StoragePool, Volume


def _image(request: HttpRequest, image_id: int) -> LibraryImage:
    return get_object_for_user(
        LibraryImage.objects.select_related("pool__host", "volume", "job"),
        request.user,
        image_id,
        VIEW,
    )


def _list_context(request: HttpRequest) -> dict[str, Any]:
    query = request.GET.get("q", "").strip()
    images = services.visible_images(request.user).prefetch_related("projects")
    if query:
        images = images.filter(Q(name__icontains=query) | Q(os_variant__icontains=query))
    context: dict[str, Any] = {"images": images, "q": query, "is_admin": is_admin(request.user)}
    if context["is_admin"]:
        context |= {
            "pools": StoragePool.objects.filter(state="active").select_related("host"),
            "projects": Project.objects.order_by("name"),
            "volumes": Volume.objects.filter(project=None, library_image=None)
            .exclude(format_source="found")
            .select_related("pool"),
        }
    return context


def library_list(request: HttpRequest) -> HttpResponse:
    return render(request, "storage/library_list.html", _list_context(request))


def _spec(post: Any) -> services.ImageSpec:
    return services.ImageSpec(
        name=post.get("name", "").strip(),
        kind=post.get("kind", ""),
        format=post.get("format", "").strip(),
        os_variant=post.get("os_variant", "").strip(),
        public=post.get("public") == "1",
        projects=services.parse_projects(post.getlist("projects")),
    )


def _picked(model: type[Any], value: str) -> Any:
    """The object whose id the form sent, or None."""
    if not re.fullmatch(r"[0-9]{1,18}", value):
        return None
    return model.objects.filter(pk=int(value)).first()


def _add(request: HttpRequest) -> LibraryImage:
    post, actor = request.POST, Actor.of(request)
    if post.get("volume"):
        volume = _picked(Volume, post.get("volume", ""))
        if volume is None:
            raise ServiceError("Choose the volume to publish.", field="volume")
        return services.add_from_volume(volume, _spec(post), actor=actor)
    pool = _picked(StoragePool, post.get("pool", ""))
    if pool is None:
        raise ServiceError("Choose the pool the image goes into.", field="pool")
    return services.add_from_url(
        pool,
        _spec(post),
        url=post.get("url", ""),
        sha256=post.get("sha256", ""),
        sums_url=post.get("sums_url", ""),
        actor=actor,
    )


@require_POST
def library_add(request: HttpRequest) -> HttpResponse:
    """Add an image (admins): from a URL, fetched by a job, or from a volume."""
    require_admin(request.user, "add images to the library")
    try:
        image = _add(request)
    except ServiceError as exc:
        context = _list_context(request) | {"error": exc, "values": request.POST}
        return render(request, "storage/library_list.html", context, status=400)
    messages.success(request, f"{image.name} added to the library.")
    return redirect("library_detail", image_id=image.pk)


def library_detail(request: HttpRequest, image_id: int) -> HttpResponse:
    image = _image(request, image_id)
    admin = is_admin(request.user)
    shared = image.projects.order_by("name")
    if not admin:
        shared = shared.filter(pk__in=project_ids(request.user))
    context = {
        "image": image,
        "job": image.job if admin else None,
        "is_admin": admin,
        "shared_with": shared,
        "projects": Project.objects.order_by("name") if admin else [],
    }
    return render(request, "storage/library_detail.html", context)


@require_POST
def library_edit(request: HttpRequest, image_id: int) -> HttpResponse:
    """Change who may use the image and its OS variant (admins)."""
    image = _image(request, image_id)
    try:
        services.update_image(
            image,
            os_variant=request.POST.get("os_variant", "").strip(),
            public=request.POST.get("public") == "1",
            projects=services.parse_projects(request.POST.getlist("projects")),
            actor=Actor.of(request),
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("library_detail", image_id=image.pk)


@require_POST
def library_delete(request: HttpRequest, image_id: int) -> HttpResponse:
    """Remove the image and its volume (admins)."""
    image = _image(request, image_id)
    try:
        services.delete_image(image, actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("library_detail", image_id=image.pk)
    messages.success(request, f"{image.name} removed from the library.")
    return redirect("library_list")
