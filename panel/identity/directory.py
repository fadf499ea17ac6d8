"""Directory groups to project roles, shared by LDAP and OpenID Connect sign-on.

An admin maps a group of a source (an LDAP group's DN, an OIDC groups-claim value) to a
role in a project. At each login and sync, ``apply_groups`` gives the user the memberships
their groups map to, the strongest role when several groups map to one project
(operator > member > viewer), changes the roles that moved and removes those whose group
they left. Only memberships a mapping gave are ever changed or removed: one an admin gave
by hand stays as it is, and one whose role an admin changed by hand becomes theirs.

``deprovision`` ends the access of a user the directory removed or disabled: the account
is disabled, its sessions and API token end, its open websockets close, and the
memberships the directory gave go.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import ldap.dn
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from panel import audit, events
from panel.actors import Actor
from panel.choices import ProjectRole
from panel.exceptions import ServiceError
from panel.identity import sessions as login_sessions
from panel.identity import tokens
from panel.models import (
    DirectoryAccount,
    DirectoryGrant,
    DirectoryMapping,
    DirectorySource,
    Membership,
    Project,
)
from panel.permissions import require_admin

User = get_user_model()

# The stronger role wins when several of a user's groups map to one project.
STRENGTH = {ProjectRole.VIEWER: 1, ProjectRole.MEMBER: 2, ProjectRole.OPERATOR: 3}
PANEL = Actor(None)


def _check_source(source: str) -> None:
    if source not in DirectorySource.values:
        raise ServiceError(
            f"Unknown source '{source}': use {' or '.join(DirectorySource.values)}.",
            field="source",
        )


def wanted_roles(source: str, groups: Iterable[str]) -> dict[int, tuple[str, str]]:
    """project id -> (role, the group that gives it) for a member of groups."""
    wanted: dict[int, tuple[str, str]] = {}
    mappings = DirectoryMapping.objects.filter(source=source, group__in=set(groups))
    for mapping in mappings.order_by("group"):
        best = wanted.get(mapping.project_id)
        if best is None or STRENGTH[ProjectRole(mapping.role)] > STRENGTH[ProjectRole(best[0])]:
            wanted[mapping.project_id] = (mapping.role, mapping.group)
    return wanted


def apply_groups(user: Any, source: str, groups: Iterable[str], *, actor: Actor = PANEL) -> None:
    """Make user's mapping-given memberships those their groups (in source) map to."""
    _check_source(source)
    groups = sorted(set(groups))
    changed = False
    with transaction.atomic():
        wanted = wanted_roles(source, groups)
        grants = DirectoryGrant.objects.select_related("membership__project").filter(
            membership__user=user, source=source
        )
        for grant in grants.select_for_update(of=("self",)):
            membership = grant.membership
            wanted_now = wanted.pop(membership.project_id, None)
            if membership.role != grant.role:
                grant.delete()  # an admin changed the role by hand: the membership is theirs
            elif wanted_now is None:
                membership.delete()
                _record(actor, "sso.membership_removed", user, membership, grant.role, grant.group)
                changed = True
            elif wanted_now[0] != membership.role:
                membership.role = grant.role = wanted_now[0]
                grant.group = wanted_now[1]
                membership.save(update_fields=["role"])
                grant.save(update_fields=["role", "group"])
                _record(actor, "sso.membership_changed", user, membership, *wanted_now)
                changed = True
        changed = _add_memberships(user, source, wanted, actor) or changed
        if changed:
            events.access_changed(user.pk)  # open websockets check the user's new roles


def _add_memberships(
    user: Any, source: str, wanted: dict[int, tuple[str, str]], actor: Actor
) -> bool:
    added = False
    taken = set(
        Membership.objects.filter(user=user, project_id__in=wanted).values_list(
            "project_id", flat=True
        )
    )
    for project_id, (role, group) in sorted(wanted.items()):
        if project_id in taken:
            continue  # given by hand (or by another source): never touched
        try:
            with transaction.atomic():
                membership = Membership.objects.create(user=user, project_id=project_id, role=role)
        except IntegrityError:
            continue  # given by hand meanwhile
        DirectoryGrant.objects.create(membership=membership, source=source, role=role, group=group)
        _record(actor, "sso.membership_added", user, membership, role, group)
        added = True
    return added


def _record(
    actor: Actor, action: str, user: Any, membership: Membership, role: str, group: str
) -> None:
    project = Project.objects.filter(pk=membership.project_id).first()
    audit.record(
        actor,
        action,
        f"{user} in {project}",
        detail=f"role {role} from group {group}",
        project=project,
    )


def deprovision(user: Any, source: str, reason: str = "", *, actor: Actor = PANEL) -> None:
    """The directory removed or disabled user: disable the account, end its sessions and
    token, close its websockets and take away what the directory gave."""
    _check_source(source)
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(is_active=False)
        user.is_active = False
        Token.objects.filter(user=user).delete()
        tokens.revoke_all(user)
        # Its tracked sessions end here; one never used since sessions were tracked
        # stops too, as the account is disabled (Django's backend refuses it).
        sessions = login_sessions.end_all(user)
        apply_groups(user, source, [], actor=actor)
        DirectoryAccount.objects.filter(user=user).update(synced=timezone.now())
        events.access_changed(user.pk)  # open websockets close: the user is disabled
        audit.record(
            actor,
            "sso.deprovisioned",
            user.username,
            detail=f"{source}: {reason or 'removed from the directory'}; {sessions} session(s) ended",
        )


# --- The admins' mappings ------------------------------------------------------------


def add_mapping(
    *, source: str, group: str, project: Project, role: str, actor: Actor
) -> DirectoryMapping:
    """Members of group (in source) get role in project, from their next login or sync."""
    group = (group or "").strip()
    target = f"{source} group {group} -> {project}"
    with audit.refusals_recorded(actor, "sso.mapping_added", target, project=project):
        require_admin(actor.user, "map directory groups to projects")
        _check_source(source)
        if not group:
            raise ServiceError(
                "Name the group: an LDAP group's DN, or an OpenID groups-claim value.",
                field="group",
            )
        if source == DirectorySource.LDAP and not ldap.dn.is_dn(group):
            raise ServiceError(
                f"'{group}' is not a DN: give the LDAP group's full DN, "
                "e.g. cn=ops,ou=groups,dc=example,dc=org.",
                field="group",
            )
        if role not in ProjectRole.values:
            raise ServiceError(
                f"Unknown role '{role}': use operator, member or viewer.", field="role"
            )
        with transaction.atomic():
            if DirectoryMapping.objects.filter(
                source=source, group=group, project=project
            ).exists():
                raise ServiceError(
                    f"Group {group} is mapped to {project} already: remove that mapping first.",
                    field="group",
                )
            mapping = DirectoryMapping.objects.create(
                source=source, group=group, project=project, role=role
            )
            audit.record(actor, "sso.mapping_added", target, detail=f"role {role}", project=project)
    return mapping


def remove_mapping(mapping: DirectoryMapping, *, actor: Actor) -> None:
    """Remove a mapping; its members lose what it gave at their next login or sync."""
    project = mapping.project
    target = f"{mapping.source} group {mapping.group} -> {project}"
    with audit.refusals_recorded(actor, "sso.mapping_removed", target, project=project):
        require_admin(actor.user, "map directory groups to projects")
        with transaction.atomic():
            DirectoryMapping.objects.filter(pk=mapping.pk).delete()
            audit.record(
                actor, "sso.mapping_removed", target, detail=f"role {mapping.role}", project=project
            )
