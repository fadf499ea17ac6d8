"""Projects, members and users (API tokens: panel.identity.tokens). Each action checks
permission and writes its audit row in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from rest_framework.authtoken.models import Token

from panel import audit, events, rows
from panel.actors import Actor
from panel.choices import ProjectRole
from panel.exceptions import ConflictError, GoneError, ServiceError
from panel.identity import sessions, tokens
from panel.models import DirectoryAccount, Membership, Project, Quota
from panel.permissions import MANAGE_PROJECT, require_admin, restrict
from panel.quotas import FIELDS

User = get_user_model()


def _clean_quota(quota: dict[str, Any] | None) -> dict[str, int | None]:
    cleaned: dict[str, int | None] = {}
    for field, value in (quota or {}).items():
        if field not in FIELDS:
            raise ServiceError(f"Unknown quota '{field}': use {', '.join(FIELDS)}.", field="quota")
        if value in (None, ""):
            cleaned[field] = None
            continue
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ServiceError(f"Quota '{field}' must be a whole number.", field="quota") from None
        if number < 0:
            raise ServiceError(f"Quota '{field}' cannot be negative.", field="quota")
        cleaned[field] = number
    return cleaned


def create_project(
    *,
    name: str,
    actor: Actor,
    description: str = "",
    quota: dict[str, Any] | None = None,
) -> Project:
    """A new project with its quota (blank limits: unlimited)."""
    name = (name or "").strip()
    with audit.refusals_recorded(actor, "project.create", name):
        require_admin(actor.user, "create projects")
        if not name:
            raise ServiceError("Give the project a name.", field="name")
        limits = _clean_quota(quota)
        with transaction.atomic():
            if Project.objects.filter(name=name).exists():
                raise ServiceError(f"A project named '{name}' already exists.", field="name")
            project = Project.objects.create(name=name, description=description)
            Quota.objects.create(project=project, **limits)
            audit.record(actor, "project.create", project, detail=f"quota {limits}")
    return project


def update_project(
    project: Project,
    *,
    actor: Actor,
    name: str | None = None,
    description: str | None = None,
    quota: dict[str, Any] | None = None,
    allowed_hosts: list[Any] | None = None,
    allowed_pools: list[Any] | None = None,
    allowed_networks: list[Any] | None = None,
    require_second_factor: bool | None = None,
) -> Project:
    """Rename, describe, change the quota, what the project may use or whether its
    members need a second factor (admins)."""
    with audit.refusals_recorded(actor, "project.update", project, project=project):
        require_admin(actor.user, "change projects")
        limits = _clean_quota(quota)
        with transaction.atomic():
            changes = []
            if name is not None and name.strip() != project.name:
                name = name.strip()
                if not name:
                    raise ServiceError("The project name cannot be empty.", field="name")
                if Project.objects.filter(name=name).exclude(pk=project.pk).exists():
                    raise ServiceError(f"A project named '{name}' already exists.", field="name")
                changes.append(f"name {project.name} -> {name}")
                project.name = name
            if description is not None:
                project.description = description
            if require_second_factor is not None:
                if require_second_factor != project.require_second_factor:
                    changes.append(f"require_second_factor {require_second_factor}")
                project.require_second_factor = require_second_factor
            fields = ["name", "description", "require_second_factor"]
            if not rows.save_if_present(project, fields):
                raise GoneError(f"Project {project.name} was deleted meanwhile.")
            if limits:
                Quota.objects.update_or_create(project=project, defaults=limits)
                changes.append(f"quota {limits}")
            for field, value in (
                ("allowed_hosts", allowed_hosts),
                ("allowed_pools", allowed_pools),
                ("allowed_networks", allowed_networks),
            ):
                if value is not None:
                    getattr(project, field).set(value)
                    changes.append(f"{field} {[str(v) for v in value] or 'all'}")
            audit.record(actor, "project.update", project, detail="; ".join(changes))
    return project


def _can_manage_members(actor: Actor, project: Project) -> bool:
    return restrict(Project.objects.filter(pk=project.pk), actor.user, MANAGE_PROJECT).exists()


def add_member(project: Project, *, user: Any, role: str, actor: Actor) -> Membership:
    """Give user a role in project (or change it); admins and the project's operators."""
    target = f"{user} in {project}"
    with audit.refusals_recorded(actor, "member.add", target, project=project):
        if not _can_manage_members(actor, project):
            raise PermissionDenied(
                "Only admins and the project's operators can change its members."
            )
        if role not in ProjectRole.values:
            raise ServiceError(
                f"Unknown role '{role}': use operator, member or viewer.", field="role"
            )
        if not user.is_active:
            raise ServiceError(f"User {user} is disabled: enable them first.", field="user")
        with transaction.atomic():
            membership, created = Membership.objects.update_or_create(
                user=user, project=project, defaults={"role": role}
            )
            if not created:
                events.access_changed(user.pk)  # open websockets check the new role
            audit.record(
                actor,
                "member.add" if created else "member.change",
                target,
                detail=f"role {role}",
                project=project,
            )
    return membership


def remove_member(project: Project, *, user: Any, actor: Actor) -> None:
    """Take user out of project."""
    target = f"{user} in {project}"
    with audit.refusals_recorded(actor, "member.remove", target, project=project):
        if not _can_manage_members(actor, project):
            raise PermissionDenied(
                "Only admins and the project's operators can change its members."
            )
        with transaction.atomic():
            deleted, _ = Membership.objects.filter(user=user, project=project).delete()
            if not deleted:
                raise ServiceError(f"{user} is not a member of {project}.", field="user")
            events.access_changed(user.pk)  # open websockets of the project's objects close
            audit.record(actor, "member.remove", target, project=project)


def _validate_password(password: str, user: Any) -> None:
    try:
        password_validation.validate_password(password, user)
    except ValidationError as exc:
        raise ServiceError(" ".join(exc.messages), field="password") from exc


def create_user(
    *,
    username: str,
    password: str,
    actor: Actor,
    email: str = "",
    is_admin: bool = False,
) -> Any:
    """A new login; its password must pass the password validators."""
    username = (username or "").strip()
    with audit.refusals_recorded(actor, "user.create", username):
        require_admin(actor.user, "create users")
        if not username:
            raise ServiceError("Give the user a username.", field="username")
        if User.objects.filter(username__iexact=username).exists():
            raise ServiceError(f"The username '{username}' is taken.", field="username")
        _validate_password(password, User(username=username, email=email))
        with transaction.atomic():
            try:
                user = User.objects.create_user(
                    username, email, password, is_superuser=is_admin, is_staff=is_admin
                )
            except IntegrityError:
                raise ServiceError(
                    f"The username '{username}' is taken.", field="username"
                ) from None
            audit.record(
                actor,
                "user.create",
                username,
                detail="admin" if is_admin else "",
            )
    return user


def set_user_active(user: Any, *, active: bool, actor: Actor) -> Any:
    """Disable (or enable again) a login; a disabled user's sessions and token stop working."""
    action = "user.enable" if active else "user.disable"
    with audit.refusals_recorded(actor, action, user.username):
        require_admin(actor.user, "disable users")
        if user.pk == getattr(actor.user, "pk", None) and not active:
            raise ConflictError("You cannot disable your own account.")
        with transaction.atomic():
            user.is_active = active
            if not rows.save_if_present(user, ["is_active"]):
                raise GoneError(f"User {user.username} was deleted meanwhile.")
            if not active:
                Token.objects.filter(user=user).delete()
                tokens.revoke_all(user)
                sessions.end_all(user)  # signed out everywhere at once
                events.access_changed(user.pk)  # open websockets close
            audit.record(actor, action, user.username)
    return user


def set_password(user: Any, *, password: str, actor: Actor) -> None:
    """Set a new password: admins for anyone, users for themselves (the form checks the old one)."""
    action = (
        "user.password" if user.pk == getattr(actor.user, "pk", None) else "user.reset_password"
    )
    with audit.refusals_recorded(actor, action, user.username):
        if user.pk != getattr(actor.user, "pk", None):
            require_admin(actor.user, "reset other users' passwords")
        account = DirectoryAccount.objects.filter(user=user).first()
        if account is not None:
            # A local password would let them in without the directory's say.
            raise ServiceError(
                f"{user.username} signs in through {account.get_source_display()}: their "
                "password is changed there, not here.",
                field="password",
            )
        _validate_password(password, user)
        with transaction.atomic():
            user.set_password(password)
            if not rows.save_if_present(user, ["password"]):
                raise GoneError(f"User {user.username} was deleted meanwhile.")
            if action == "user.reset_password":
                # Sessions logged in with the old password end, and their websockets with
                # them. (Changing one's own, the view keeps the current session logged in;
                # the periodic check closes the websockets of the others.)
                events.access_changed(user.pk)
            audit.record(actor, action, user.username)
