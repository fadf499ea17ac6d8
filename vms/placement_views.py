"""Pages of maintenance and placement: a host's drain plan and its start (admins), its
return to active, and a project's affinity groups (operators change them)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.models import Host, Project
from panel.permissions import (
    ALLOCATE,
    VIEW,
    get_object_for_user,
    holds,
    require_admin,
    restrict,
)

from .models import AffinityGroup, VirtualMachine
from .services import affinity, drain


def _admin_host(request: HttpRequest, host_id: int) -> Host:
    host = get_object_for_user(Host.objects.all(), request.user, host_id, VIEW)
    require_admin(request.user, "drain hosts or end their maintenance")
    return host


@require_http_methods(["GET", "POST"])
def host_drain(request: HttpRequest, host_id: int) -> HttpResponse:
    """GET: the drain plan; POST: maintenance on, and the drain job started."""
    host = _admin_host(request, host_id)
    actor = Actor.of(request)
    if request.method != "POST":
        steps = drain.plan(host, actor=actor)
        return render(request, "vms/host_drain.html", {"host": host, "steps": steps})
    try:
        job = drain.drain_host(host, actor=actor)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("host_detail", host_id=host.pk)
    messages.info(request, f"{host.name} is in maintenance; draining it (job #{job.pk}).")
    return redirect("job_detail", job_id=job.pk)


@require_POST
def host_activate(request: HttpRequest, host_id: int) -> HttpResponse:
    host = _admin_host(request, host_id)
    try:
        drain.activate_host(host, actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{host.name} is active: it takes new VMs again.")
    return redirect("host_detail", host_id=host.pk)


def affinity_groups(request: HttpRequest, project_id: int) -> HttpResponse:
    """A project's affinity groups, their VMs, and the forms that change them."""
    project = get_object_for_user(Project.objects.all(), request.user, project_id, VIEW)
    groups = AffinityGroup.objects.filter(project=project).prefetch_related("vms")
    vms = restrict(VirtualMachine.objects.filter(project=project), request.user, VIEW)
    context = {
        "project": project,
        "groups": groups,
        "vms": vms.order_by("name"),
        "can_change": holds(request.user, project, ALLOCATE) == "all",
    }
    return render(request, "vms/affinity_groups.html", context)


@require_POST
def affinity_group_add(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_object_for_user(Project.objects.all(), request.user, project_id, VIEW)
    name, kind = request.POST.get("name", ""), request.POST.get("kind", "")
    try:
        affinity.create_group(project, name.strip(), kind, actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("affinity_groups", project_id=project.pk)


def _group(request: HttpRequest, affinity_id: int) -> AffinityGroup:
    return get_object_for_user(
        AffinityGroup.objects.select_related("project"), request.user, affinity_id, VIEW
    )


@require_POST
def affinity_group_delete(request: HttpRequest, affinity_id: int) -> HttpResponse:
    group = _group(request, affinity_id)
    affinity.delete_group(group, actor=Actor.of(request))
    messages.success(request, f"Group {group.name} removed; its VMs stay where they are.")
    return redirect("affinity_groups", project_id=group.project_id)


def _member(request: HttpRequest, affinity_id: int, member: bool) -> HttpResponse:
    group = _group(request, affinity_id)
    actor = Actor.of(request)
    affinity.require_operator(actor, group.project)
    try:
        vm = affinity.vm_of(group, request.POST.get("vm"), actor)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        affinity.set_member(group, vm, member, actor=actor)
    return redirect("affinity_groups", project_id=group.project_id)


@require_POST
def affinity_group_add_vm(request: HttpRequest, affinity_id: int) -> HttpResponse:
    return _member(request, affinity_id, True)


@require_POST
def affinity_group_remove_vm(request: HttpRequest, affinity_id: int) -> HttpResponse:
    return _member(request, affinity_id, False)
