"""Roles and groups (admins), and the grants of a project (its managers)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.identity import access
from panel.models import Grant, Project, Role
from panel.permissions import (
    MANAGE_PROJECT,
    VIEW,
    clean_pk,
    get_object_for_user,
    require_admin,
    restrict,
)
from panel.privileges import CATALOGUE, PROJECT_PRIVILEGES

User = get_user_model()
VirtualMachine: Any = Grant._meta.get_field("vm").related_model


def _catalogue() -> list[tuple[str, str]]:
    return [(name, text) for name, text in CATALOGUE.items() if name in PROJECT_PRIVILEGES]


def role_list(request: HttpRequest) -> HttpResponse:
    """Every custom role; POST defines one."""
    require_admin(request.user, "manage roles")
    if request.method == "POST":
        try:
            role = access.create_role(actor=Actor.of(request), **_role_fields(request))
        except ServiceError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Role {role.name} defined.")
            return redirect("role_list")
    roles = Role.objects.annotate(grant_count=Count("grants"))
    context = {"roles": roles, "catalogue": _catalogue()}
    return render(request, "panel/role_list.html", context)


def _role_fields(request: HttpRequest) -> dict[str, Any]:
    return {
        "name": request.POST.get("name", ""),
        "description": request.POST.get("description", ""),
        "privileges": request.POST.getlist("privileges"),
        "own_only": request.POST.get("own_only") == "1",
    }


def role_edit(request: HttpRequest, role_id: int) -> HttpResponse:
    require_admin(request.user, "manage roles")
    role = Role.objects.filter(pk=clean_pk(Role, role_id)).first()
    if role is None:
        raise Http404("Not found.")
    if request.method == "POST":
        try:
            access.update_role(role, actor=Actor.of(request), **_role_fields(request))
        except ServiceError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Role {role.name} saved.")
            return redirect("role_list")
    context = {"role": role, "catalogue": _catalogue()}
    return render(request, "panel/role_form.html", context)


@require_POST
def role_delete(request: HttpRequest, role_id: int) -> HttpResponse:
    require_admin(request.user, "delete roles")
    role = Role.objects.filter(pk=clean_pk(Role, role_id)).first()
    if role is None:
        raise Http404("Not found.")
    try:
        access.delete_role(role, actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Role {role.name} deleted.")
    return redirect("role_list")


def group_list(request: HttpRequest) -> HttpResponse:
    """Every group with its members; POST creates one (members by username)."""
    require_admin(request.user, "manage groups")
    if request.method == "POST":
        return _save_group(request, None)
    groups = Group.objects.prefetch_related("user_set").order_by("name")
    return render(request, "panel/group_list.html", {"groups": groups})


def _save_group(request: HttpRequest, group: Group | None) -> HttpResponse:
    names = request.POST.get("members", "").replace(",", " ").split()
    members = list(User.objects.filter(username__in=names))
    unknown = sorted(set(names) - {user.username for user in members})
    try:
        if unknown:
            raise ServiceError(f"No user named {', '.join(unknown)}.", field="members")
        group = access.save_group(
            group, name=request.POST.get("name", ""), members=members, actor=Actor.of(request)
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Group {group.name} saved.")
    return redirect("group_list")


@require_POST
def group_edit(request: HttpRequest, group_id: int) -> HttpResponse:
    require_admin(request.user, "manage groups")
    group = Group.objects.filter(pk=clean_pk(Group, group_id)).first()
    if group is None:
        raise Http404("Not found.")
    if request.POST.get("delete") == "1":
        access.delete_group(group, actor=Actor.of(request))
        messages.success(request, f"Group {group.name} deleted.")
        return redirect("group_list")
    return _save_group(request, group)


def grant_context(request: HttpRequest, project: Project) -> dict[str, Any]:
    """What the project page shows of its grants, and what the add form offers."""
    grants = Grant.objects.filter(project=project).select_related("user", "group", "role", "vm")
    return {
        "grants": grants,
        "grant_roles": [
            "operator",
            "member",
            "viewer",
            *Role.objects.values_list("name", flat=True),
        ],
        "grant_groups": Group.objects.order_by("name"),
    }


@require_POST
def project_grant_add(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_object_for_user(Project.objects.all(), request.user, project_id, MANAGE_PROJECT)
    post = request.POST
    try:
        access.add_grant(
            project,
            role=post.get("role", ""),
            user=_by(User.objects.all(), "username", post.get("username"), "user"),
            group=_by(Group.objects.all(), "name", post.get("group"), "group"),
            vm=_by(
                restrict(VirtualMachine.objects.all(), request.user, VIEW),
                "pk",
                post.get("vm"),
                "vm",
            ),
            actor=Actor.of(request),
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Grant added.")
    return redirect("project_detail", project_id=project.pk)


def _by(queryset: Any, field: str, value: str | None, what: str) -> Any:
    """The object a form names (None when blank); a ServiceError when there is none."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        found = queryset.filter(
            **{field: clean_pk(queryset.model, value) if field == "pk" else value}
        ).first()
    except Http404:
        found = None
    if found is None:
        raise ServiceError(f"No {what} '{value}' that you can use.", field=what)
    return found


@require_POST
def project_grant_remove(request: HttpRequest, project_id: int, grant_id: int) -> HttpResponse:
    project = get_object_for_user(Project.objects.all(), request.user, project_id, MANAGE_PROJECT)
    grant = Grant.objects.filter(project=project, pk=clean_pk(Grant, grant_id)).first()
    if grant is None:
        raise Http404("Not found.")
    try:
        access.remove_grant(grant, actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Grant removed.")
    return redirect("project_detail", project_id=project.pk)
