"""What each user holds: their privileges per project and per VM, read in one query from
their memberships and from the grants to them and their groups (panel/permissions.py
asks it, once per request)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db.models import BooleanField, CharField, JSONField, Q, UUIDField, Value

from panel.models import Grant, Membership
from panel.privileges import BUILTIN_ROLES, CONSOLE, PROJECT_PRIVILEGES, VIEW

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# Seeing and watching reach the whole project, whatever a role's own-only says.
PROJECT_WIDE = frozenset({VIEW, CONSOLE})


@dataclass
class Held:
    """What a user holds: per project, each privilege and whether it is own-only; per VM
    granted alone, its privileges; and the built-in role of each membership."""

    projects: dict[int, dict[str, bool]] = field(default_factory=dict)
    vms: dict[Any, set[str]] = field(default_factory=dict)
    roles: dict[int, str] = field(default_factory=dict)

    def add(self, project: int, privileges: frozenset[str] | set[str], own_only: bool) -> None:
        held = self.projects.setdefault(project, {VIEW: False})
        for name in privileges & PROJECT_PRIVILEGES:
            mine_only = own_only and name not in PROJECT_WIDE
            held[name] = held.get(name, True) and mine_only


def _rows(user: User) -> Any:
    """One query: the user's memberships, and the grants to them or their groups."""
    grants = (
        Grant.objects.filter(Q(user=user) | Q(group__user=user))
        .order_by()
        .values_list(
            "project_id",
            "builtin",
            "vm_id",
            "role__privileges",
            "role__own_only",
            Value("g", output_field=CharField()),
        )
    )
    members = (
        Membership.objects.filter(user=user)
        .order_by()
        .values_list(
            "project_id",
            "role",
            Value(None, output_field=UUIDField()),
            Value(None, output_field=JSONField()),
            Value(False, output_field=BooleanField()),
            Value("m", output_field=CharField()),
        )
    )
    return grants.union(members, all=True)


def held_by(user: User) -> Held:
    """What a signed-in user holds (see Held); read once per request (a cache on the user)."""
    cached: Held | None = getattr(user, "_panel_held", None)
    if cached is None:
        cached = Held()
        for pid, builtin, vm, privileges, own_only, kind in _rows(user):
            if kind == "m":
                cached.roles[pid] = builtin
            if builtin:
                privileges, own_only = BUILTIN_ROLES.get(builtin, (frozenset(), True))
            names = set(privileges or ()) & PROJECT_PRIVILEGES
            if vm is not None:
                cached.vms.setdefault(vm, set()).update(names | {VIEW})
            else:
                cached.add(pid, names, bool(own_only))
        setattr(user, "_panel_held", cached)  # noqa: B010 (a cache on the user object)
    return cached
