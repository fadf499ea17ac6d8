"""Projects, their members and quotas; users (admins)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from panel import quotas, services
from panel.actors import Actor
from panel.exceptions import ServiceError
from panel.forms import MemberForm, PasswordResetForm, ProjectEditForm, ProjectForm, UserCreateForm
from panel.identity.reauth import ensure_recent
from panel.models import Membership, Project, SecurityPolicy
from panel.permissions import MANAGE_PROJECT, VIEW, get_object_for_user, is_admin, restrict
from panel.views.access import grant_context
from panel.views.common import add_service_error, render_form

User = get_user_model()


def _admin_only(request: HttpRequest, what: str) -> None:
    if not is_admin(request.user):
        raise PermissionDenied(f"Only administrators can {what}.")


def project_list(request: HttpRequest) -> HttpResponse:
    projects = restrict(Project.objects.prefetch_related("memberships"), request.user, VIEW)
    rows = [(p, quotas.usage(p), quotas.limits(p)) for p in projects]
    return render(
        request, "panel/project_list.html", {"rows": rows, "can_create": is_admin(request.user)}
    )


def project_add(request: HttpRequest) -> HttpResponse:
    _admin_only(request, "create projects")
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = services.create_project(
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                quota=form.quota(),
                actor=Actor.of(request),
            )
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, f"Project {project.name} created.")
            return redirect("project_detail", project_id=project.pk)
    return render_form(request, "panel/project_form.html", {}, form)


def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_object_for_user(Project.objects.all(), request.user, project_id)
    can_manage = restrict(
        Project.objects.filter(pk=project.pk), request.user, MANAGE_PROJECT
    ).exists()
    usage = quotas.usage(project)
    limits = quotas.limits(project)
    bars = []
    for field in quotas.FIELDS:
        used, limit = getattr(usage, field), limits[field]
        percent = min(100, round(100 * used / limit)) if limit else 0
        bars.append(
            {"label": quotas.LABELS[field], "used": used, "limit": limit, "percent": percent}
        )
    context = {
        "project": project,
        "bars": bars,
        "members": Membership.objects.filter(project=project).select_related("user"),
        "can_manage": can_manage,
        "member_form": MemberForm(),
        "vms": restrict(project.vms.select_related("host"), request.user)[:100],
        **grant_context(request, project),
    }
    return render(request, "panel/project_detail.html", context)


def project_edit(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_object_for_user(Project.objects.all(), request.user, project_id)
    _admin_only(request, "change projects")
    form = ProjectEditForm(request.POST or None, initial=ProjectEditForm.initial_for(project))
    if request.method == "POST" and form.is_valid():
        try:
            services.update_project(project, **form.changes(), actor=Actor.of(request))
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, f"Project {project.name} saved.")
            return redirect("project_detail", project_id=project.pk)
    return render_form(request, "panel/project_form.html", {"project": project}, form)


@require_POST
def project_member_add(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_object_for_user(Project.objects.all(), request.user, project_id, MANAGE_PROJECT)
    form = MemberForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for e in errors:
                messages.error(request, str(e))
        return redirect("project_detail", project_id=project.pk)
    try:
        services.add_member(
            project,
            user=form.cleaned_data["username"],
            role=form.cleaned_data["role"],
            actor=Actor.of(request),
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"{form.cleaned_data['username']} is now {form.cleaned_data['role']}."
        )
    return redirect("project_detail", project_id=project.pk)


@require_POST
def project_member_remove(request: HttpRequest, project_id: int, user_id: int) -> HttpResponse:
    project = get_object_for_user(Project.objects.all(), request.user, project_id, MANAGE_PROJECT)
    membership = (
        Membership.objects.filter(project=project, user_id=user_id).select_related("user").first()
    )
    member = membership.user if membership else None
    if member is None:
        messages.error(request, "No such member.")
        return redirect("project_detail", project_id=project.pk)
    try:
        services.remove_member(project, user=member, actor=Actor.of(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("project_detail", project_id=project.pk)


def user_list(request: HttpRequest) -> HttpResponse:
    _admin_only(request, "manage users")
    if request.method == "POST":
        ensure_recent(request)
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.create_user(**form.cleaned_data, actor=Actor.of(request))
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, f"User {user.username} created.")
            return redirect("user_list")
    users = User.objects.order_by("username").prefetch_related("memberships__project")
    context = {"users": users, "policy": SecurityPolicy.current()}
    return render_form(request, "panel/user_list.html", context, form)


@require_POST
def user_set_active(request: HttpRequest, user_id: int) -> HttpResponse:
    _admin_only(request, "disable users")
    user = get_object_for_user(User.objects.all(), request.user, user_id)
    ensure_recent(request, reverse("user_list"))
    try:
        services.set_user_active(
            user,
            active=request.POST.get("active") == "1",
            actor=Actor.of(request),
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"User {user.username} {'enabled' if user.is_active else 'disabled'}."
        )
    return redirect("user_list")


def user_reset_password(request: HttpRequest, user_id: int) -> HttpResponse:
    _admin_only(request, "reset passwords")
    user = get_object_for_user(User.objects.all(), request.user, user_id)
    ensure_recent(request)
    form = PasswordResetForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.set_password(
                user,
                password=form.cleaned_data["password"],
                actor=Actor.of(request),
            )
        except ServiceError as exc:
            form.add_error("password", exc.message)
        else:
            messages.success(request, f"New password set for {user.username}.")
            return redirect("user_list")
    return render_form(request, "panel/user_password.html", {"target": user}, form)
