"""Storage pages: pools per host with their space, pool and volume pages, the forms."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.models import Job, Project
from panel.permissions import (
    ADMINISTER,
    ALLOCATE_SPACE,
    VIEW,
    VOLUME_READ,
    get_object_for_user,
    is_admin,
    privileges_on,
    project_ids,
    restrict,
    visible_hosts,
)

from . import services
from .models import StoragePool, Volume


def _pool(request: HttpRequest, pool_id: int, action: str = VIEW) -> StoragePool:
    return get_object_for_user(
        StoragePool.objects.select_related("host"), request.user, pool_id, action
    )


def _volume(request: HttpRequest, volume_id: int, action: str = VIEW) -> Volume:
    return get_object_for_user(
        Volume.objects.select_related("pool__host", "project", "owner"),
        request.user,
        volume_id,
        action,
    )


def _creatable_projects(user: Any) -> Any:
    if is_admin(user):
        return Project.objects.order_by("name")
    return Project.objects.filter(pk__in=project_ids(user, ALLOCATE_SPACE)).order_by("name")


def pool_list(request: HttpRequest) -> HttpResponse:
    pools = restrict(StoragePool.objects.select_related("host"), request.user)
    return render(
        request,
        "storage/pool_list.html",
        {"pools": pools, "is_admin": is_admin(request.user)},
    )


def pool_add(request: HttpRequest) -> HttpResponse:
    if not is_admin(request.user):
        return render(
            request, "403.html", {"message": "Only administrators add pools."}, status=403
        )
    hosts = visible_hosts(request.user).order_by("name")
    values: dict[str, Any] = {"type": "dir", "persistent": "1", "build": "1", "start": "1"}
    error = None
    status = 200
    if request.method == "POST":
        values = request.POST.dict()
        try:
            pool = _create_pool(request, hosts, values)
        except ServiceError as exc:
            error = exc
            status = 400
        else:
            messages.success(request, f"Pool {pool.name} created on {pool.host.name}.")
            return redirect("pool_detail", pool_id=pool.pk)
    return _pool_add_form(request, hosts, values, error, status)


def _pool_add_form(
    request: HttpRequest, hosts: Any, values: dict[str, Any], error: Any, status: int
) -> HttpResponse:
    """The add-pool form, filled with values and showing error when there is one."""
    context = {
        "hosts": hosts,
        "types": services.POOL_TYPES,
        "field_labels": services.FIELD_LABELS,
        "source_formats": services.SOURCE_FORMATS,
        "values": values,
        "error": error,
        "roots": settings.PANEL_STORAGE_ROOTS,
    }
    return render(request, "storage/pool_form.html", context, status=status)


def _create_pool(request: HttpRequest, hosts: Any, values: dict[str, Any]) -> StoragePool:
    """The pool the add form describes, on one of hosts; ServiceError says what is wrong."""
    host = hosts.filter(pk=values.get("host") or 0).first()
    if host is None:
        raise ServiceError("Choose the host the pool goes on.", field="host")
    return services.create_pool(
        host,
        values,
        actor=Actor.of(request),
        persistent=values.get("persistent") == "1",
        build=values.get("build") == "1",
        start=values.get("start") == "1",
        autostart=values.get("autostart") == "1",
    )


def _backing_choices(user: Any, pool: StoragePool) -> Any:
    """Volumes an overlay in pool may be put on: those the user may change, shared images."""
    on_host = Volume.objects.filter(pool__host=pool.host)
    changeable = restrict(on_host, user, VOLUME_READ).values("pk")
    return restrict(on_host, user).filter(Q(shared=True) | Q(pk__in=changeable))


def pool_detail(request: HttpRequest, pool_id: int) -> HttpResponse:
    pool = _pool(request, pool_id)
    volumes = restrict(pool.volumes.select_related("project", "owner"), request.user)
    context = {
        "pool": pool,
        "volumes": volumes,
        "is_admin": is_admin(request.user),
        "projects": _creatable_projects(request.user),
        "formats": services.FORMATS,
        "preallocation": services.PREALLOCATION,
        "backing_choices": _backing_choices(request.user, pool),
        "jobs": Job.objects.filter(target__in=[f"volume:{v.pk}" for v in volumes]).order_by(
            "-created"
        )[:5],
    }
    return render(request, "storage/pool_detail.html", context)


PoolForm = Callable[[HttpRequest, StoragePool], str]


def pool_form(apply: PoolForm) -> Callable[[HttpRequest, int], HttpResponse]:
    """The view of a pool page's form (admins) whose body is apply(request, pool); apply
    answers what to say when the pool is gone after it ("" while it stays). A refusal is
    shown as the page's error."""

    @require_POST
    @functools.wraps(apply)
    def view(request: HttpRequest, pool_id: int) -> HttpResponse:
        pool = _pool(request, pool_id, ADMINISTER)
        try:
            gone = apply(request, pool)
        except ServiceError as exc:
            messages.error(request, exc.message)
            return redirect("pool_detail", pool_id=pool.pk)
        if gone:
            messages.success(request, gone)
            return redirect("pool_list")
        return redirect("pool_detail", pool_id=pool.pk)

    return view


@pool_form
def pool_shared_storage(request: HttpRequest, pool: StoragePool) -> str:
    """Declare the pool shared storage, or not."""
    on = request.POST.get("enabled") == "1"
    services.set_pool_shared_storage(pool, on, actor=Actor.of(request))
    messages.success(
        request, f"Pool {pool.name}: {'shared' if on else 'local'} storage from now on."
    )
    return ""


@pool_form
def pool_autostart(request: HttpRequest, pool: StoragePool) -> str:
    """Start the pool with libvirtd, or not."""
    services.set_pool_autostart(pool, request.POST.get("enabled") == "1", actor=Actor.of(request))
    messages.success(request, f"Pool {pool.name}: autostart done.")
    return ""


@pool_form
def pool_delete(request: HttpRequest, pool: StoragePool) -> str:
    """Stop and remove the pool, and its directory or volume group when asked."""
    services.delete_pool(
        pool, actor=Actor.of(request), delete_target=request.POST.get("delete_target") == "1"
    )
    return f"Pool {pool.name} deleted."


def _power(request: HttpRequest, pool: StoragePool, verb: str) -> str:
    if services.pool_action(pool, verb, actor=Actor.of(request)) is None:
        return f"Transient pool {pool.name} stopped and gone."
    messages.success(request, f"Pool {pool.name}: {verb} done.")
    return ""


@pool_form
def pool_build(request: HttpRequest, pool: StoragePool) -> str:
    """Make the pool's directory or volume group on its host."""
    return _power(request, pool, "build")


@pool_form
def pool_start(request: HttpRequest, pool: StoragePool) -> str:
    """Start the pool."""
    return _power(request, pool, "start")


@pool_form
def pool_stop(request: HttpRequest, pool: StoragePool) -> str:
    """Stop the pool (a transient one is gone then)."""
    return _power(request, pool, "stop")


@pool_form
def pool_refresh(request: HttpRequest, pool: StoragePool) -> str:
    """Read the pool's volumes from its host again."""
    return _power(request, pool, "refresh")


@require_POST
def volume_add(request: HttpRequest, pool_id: int) -> HttpResponse:
    pool = _pool(request, pool_id)
    creatable = _creatable_projects(request.user)
    if not is_admin(request.user) and not creatable.exists():
        raise PermissionDenied("Your role does not allow creating volumes in any project.")
    data = request.POST
    try:
        result = services.create_volume(
            pool,
            name=data.get("name", ""),
            format=data.get("format", "qcow2"),
            capacity_gib=data.get("capacity_gib", ""),
            preallocation=data.get("preallocation", "off"),
            backing_volume=_backing_volume(request, pool),
            project=creatable.filter(pk=data.get("project") or 0).first(),
            actor=Actor.of(request),
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("pool_detail", pool_id=pool.pk)
    return _volume_made(request, result)


def _volume_made(request: HttpRequest, result: Volume | Job) -> HttpResponse:
    """Where a new volume leads: its page, or its job's when it is made by a job."""
    if isinstance(result, Job):
        messages.info(request, f"Creating the volume (job #{result.pk}).")
        return redirect("job_detail", job_id=result.pk)
    messages.success(request, f"Volume {result.name} created.")
    return redirect("volume_detail", volume_id=result.pk)


def _backing_volume(request: HttpRequest, pool: StoragePool) -> Volume | None:
    """The backing volume the form names, if the user sees it on the pool's host."""
    if not request.POST.get("backing_volume"):
        return None
    return (
        restrict(Volume.objects.filter(pool__host=pool.host), request.user)
        .filter(pk=request.POST["backing_volume"])
        .first()
    )


def volume_detail(request: HttpRequest, volume_id: int) -> HttpResponse:
    volume = _volume(request, volume_id)
    if not volume.info and volume.pool.state == "active":
        try:
            volume = services.volume_details(volume)
        except ServiceError as exc:
            messages.warning(request, exc.message)
    context = {
        "volume": volume,
        "can": privileges_on(request.user, volume),
        "is_admin": is_admin(request.user),
        "formats": services.FORMATS,
        "pools": restrict(
            StoragePool.objects.filter(host=volume.pool.host, state="active"), request.user
        ),
        "used_by": services.vms_using(volume.pool.host, [volume.path]),
        "projects": Project.objects.order_by("name") if is_admin(request.user) else [],
        "job": Job.objects.filter(target=f"volume:{volume.pk}").order_by("-created").first(),
    }
    return render(request, "storage/volume_detail.html", context)


def upload_page(request: HttpRequest, pool_id: int) -> HttpResponse:
    """Upload a file into a pool from the browser: the page creates the volume through the API,
    then streams the file into it, with a progress bar."""
    pool = _pool(request, pool_id)
    return render(
        request,
        "storage/upload.html",
        {
            "pool": pool,
            "projects": _creatable_projects(request.user),
            "formats": services.FORMATS,
            "api_volumes": reverse("volume-list"),
        },
    )
