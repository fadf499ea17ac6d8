"""Custom roles, groups and grants. Admins define roles and groups; those who hold
MANAGE_PROJECT in a project give and take its grants, never more than they hold there
themselves. Each change is checked, audited in the same transaction, and tells the open
websockets of the people it concerns to check their access again."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import transaction

from panel import audit, events
from panel.actors import Actor
from panel.exceptions import ConflictError, ServiceError
from panel.models import Grant, Project, Role
from panel.permissions import MANAGE_PROJECT, held, is_admin, require_admin
from panel.privileges import ADMINISTER, BUILTIN_ROLES, PROJECT_PRIVILEGES, VIEW

User = get_user_model()


def clean_privileges(privileges: Iterable[Any]) -> list[str]:
    """The privilege names of a role, VIEW always among them; a ServiceError naming any
    unknown one (or ADMINISTER, which no role grants)."""
    names = {str(name).strip() for name in privileges or ()}
    if ADMINISTER in names:
        raise ServiceError(
            "No role grants 'administer': make the user an administrator instead.",
            field="privileges",
        )
    unknown = sorted(names - PROJECT_PRIVILEGES)
    if unknown:
        raise ServiceError(
            f"Unknown privilege(s) {', '.join(unknown)}: use {', '.join(sorted(PROJECT_PRIVILEGES))}.",
            field="privileges",
        )
    return sorted(names | {VIEW})


def _clean_name(name: str, role: Role | None = None) -> str:
    name = (name or "").strip()
    if not name:
        raise ServiceError("Give the role a name.", field="name")
    if name.lower() in BUILTIN_ROLES or name.lower() == "admin":
        raise ServiceError(f"'{name}' is a built-in role: choose another name.", field="name")
    others = Role.objects.filter(name__iexact=name)
    if role is not None:
        others = others.exclude(pk=role.pk)
    if others.exists():
        raise ServiceError(f"A role named '{name}' already exists.", field="name")
    return name


def _holders(grants: Iterable[Grant]) -> set[int]:
    """The ids of the users a set of grants reaches (directly or through a group)."""
    users: set[int] = set()
    for grant in grants:
        if grant.user_id:
            users.add(grant.user_id)
        elif grant.group_id:
            users.update(User.objects.filter(groups=grant.group_id).values_list("pk", flat=True))
    return users


def _tell(user_ids: Iterable[int]) -> None:
    for user_id in user_ids:
        events.access_changed(user_id)  # open websockets check the new privileges


def create_role(
    *,
    name: str,
    privileges: Iterable[Any],
    actor: Actor,
    description: str = "",
    own_only: bool = False,
) -> Role:
    """A new custom role (admins)."""
    with audit.refusals_recorded(actor, "role.created", name):
        require_admin(actor.user, "define roles")
        with transaction.atomic():
            role = Role.objects.create(
                name=_clean_name(name),
                description=(description or "").strip(),
                privileges=clean_privileges(privileges),
                own_only=bool(own_only),
            )
            audit.record(actor, "role.created", role, detail=_describe(role))
    return role


def update_role(role: Role, *, actor: Actor, **changes: Any) -> Role:
    """Change a custom role's name, description, privileges or reach (admins); its holders
    hold the new set at once."""
    with audit.refusals_recorded(actor, "role.updated", role):
        require_admin(actor.user, "change roles")
        with transaction.atomic():
            if changes.get("name") is not None:
                role.name = _clean_name(changes["name"], role)
            if changes.get("description") is not None:
                role.description = str(changes["description"]).strip()
            if changes.get("privileges") is not None:
                role.privileges = clean_privileges(changes["privileges"])
            if changes.get("own_only") is not None:
                role.own_only = bool(changes["own_only"])
            role.save()
            audit.record(actor, "role.updated", role, detail=_describe(role))
            transaction.on_commit(lambda: _tell(_holders(role.grants.all())))
    return role


def delete_role(role: Role, *, actor: Actor) -> None:
    """Remove a custom role no grant uses (admins)."""
    with audit.refusals_recorded(actor, "role.deleted", role):
        require_admin(actor.user, "delete roles")
        with transaction.atomic():
            used = role.grants.count()
            if used:
                raise ConflictError(
                    f"Role {role.name} is used by {used} grant(s): remove them first."
                )
            audit.record(actor, "role.deleted", role.name)
            role.delete()


def _describe(role: Role) -> str:
    reach = "own objects only" if role.own_only else "every object"
    return f"privileges {', '.join(role.privileges)}; {reach}"


def save_group(
    group: Group | None, *, name: str, members: Iterable[Any] | None, actor: Actor
) -> Group:
    """Create a group (group None) or rename it and set its members (admins)."""
    action = "group.created" if group is None else "group.updated"
    name = (name or "").strip()
    with audit.refusals_recorded(actor, action, name):
        require_admin(actor.user, "manage groups")
        if not name:
            raise ServiceError("Give the group a name.", field="name")
        taken = Group.objects.filter(name__iexact=name)
        if group is not None:
            taken = taken.exclude(pk=group.pk)
        if taken.exists():
            raise ServiceError(f"A group named '{name}' already exists.", field="name")
        with transaction.atomic():
            before: set[int] = set()
            if group is None:
                group = Group.objects.create(name=name)
            else:
                before = set(group.user_set.values_list("pk", flat=True))
                group.name = name
                group.save()
            if members is not None:
                group.user_set.set(list(members))
            after = set(group.user_set.values_list("pk", flat=True))
            names = sorted(group.user_set.values_list("username", flat=True))
            audit.record(actor, action, group, detail=f"members {', '.join(names) or 'none'}")
            transaction.on_commit(lambda: _tell(before ^ after))
    return group


def delete_group(group: Group, *, actor: Actor) -> None:
    """Remove a group and the grants it had (admins)."""
    with audit.refusals_recorded(actor, "group.deleted", group):
        require_admin(actor.user, "delete groups")
        with transaction.atomic():
            members = set(group.user_set.values_list("pk", flat=True))
            audit.record(actor, "group.deleted", group.name)
            group.delete()
            transaction.on_commit(lambda: _tell(members))


def resolve_role(name: str) -> tuple[str, Role | None]:
    """A role by name: ("operator", None) for a built-in one, ("", role) for a custom one."""
    name = (name or "").strip()
    if not name:
        raise ServiceError("Choose the role to grant.", field="role")
    if name in BUILTIN_ROLES:
        return name, None
    role = Role.objects.filter(name=name).first()
    if role is None:
        custom = ", ".join(Role.objects.values_list("name", flat=True))
        raise ServiceError(
            f"Unknown role '{name}': use operator, member, viewer"
            f"{', ' + custom if custom else ''}.",
            field="role",
        )
    return "", role


def _granted(builtin: str, role: Role | None) -> tuple[set[str], bool]:
    if role is None:
        privileges, own_only = BUILTIN_ROLES[builtin]
        return set(privileges), own_only
    return set(role.privileges), role.own_only


def _may_give(actor: Actor, project: Project, builtin: str, role: Role | None) -> None:
    """PermissionDenied unless actor may give (or take) that role in project: admins any;
    holders of MANAGE_PROJECT only privileges they hold there on every object."""
    if is_admin(actor.user):
        return
    mine = held(actor.user).projects.get(project.pk, {})
    if mine.get(MANAGE_PROJECT) is not False:
        raise PermissionDenied("Only admins and the project's operators can change its grants.")
    privileges, _ = _granted(builtin, role)
    missing = sorted(p for p in privileges if mine.get(p) is not False)
    if missing:
        raise PermissionDenied(
            f"You may grant only privileges you hold on the whole project: "
            f"{', '.join(missing)} is not yours to give."
        )


def add_grant(
    project: Project,
    *,
    role: str,
    actor: Actor,
    user: Any = None,
    group: Group | None = None,
    vm: Any = None,
) -> Grant:
    """Give a role in project to a user or a group, on the whole project or on one VM."""
    who = user or group
    target = f"{who} in {project}{f' on {vm.name}' if vm is not None else ''}"
    with audit.refusals_recorded(actor, "grant.added", target, project=project):
        if (user is None) == (group is None):
            raise ServiceError(
                "Grant the role to a user or to a group (one of them).", field="user"
            )
        builtin, custom = resolve_role(role)
        _may_give(actor, project, builtin, custom)
        if user is not None and not user.is_active:
            raise ServiceError(f"User {user} is disabled: enable them first.", field="user")
        if vm is not None and vm.project_id != project.pk:
            raise ServiceError(f"VM {vm.name} is not in {project.name}.", field="vm")
        with transaction.atomic():
            same = Grant.objects.filter(
                project=project, user=user, group=group, vm=vm, builtin=builtin, role=custom
            )
            if same.exists():
                raise ServiceError(f"{who} already has that grant.", field="role")
            grant = Grant.objects.create(
                project=project, user=user, group=group, vm=vm, builtin=builtin, role=custom
            )
            audit.record(
                actor, "grant.added", target, detail=f"role {grant.role_name}", project=project
            )
            transaction.on_commit(lambda: _tell(_holders([grant])))
    return grant


def remove_grant(grant: Grant, *, actor: Actor) -> None:
    """Take a grant back (as giving it: admins, or who could have given it)."""
    project = grant.project
    target = str(grant)
    with audit.refusals_recorded(actor, "grant.removed", target, project=project):
        _may_give(actor, project, grant.builtin, grant.role)
        with transaction.atomic():
            holders = _holders([grant])
            grant.delete()
            audit.record(actor, "grant.removed", target, project=project)
            transaction.on_commit(lambda: _tell(holders))
