"""Who may do what: the one module every view, API viewset and consumer asks.

Privileges and roles
--------------------
A role is a set of privileges (panel/privileges.py names them, with what each allows).
admin     A global flag (``is_superuser``): holds ADMINISTER, sees and does
          everything: hosts, pools, networks, every project, users, the whole
          audit log, roles and groups.
operator  Every project privilege, on every VM and volume of the project.
member    Every project privilege but AUDIT and MANAGE_PROJECT, own-only: acts
          on the VMs and volumes they created (or that an operator granted
          them); creates VMs from templates only, within the project's quota.
viewer    VIEW and CONSOLE: looks at the project's objects, consoles view-only.
custom    Roles administrators define (panel.models.Role): any set of project
          privileges, own-only or not. An own-only role creates VMs from
          templates only, as members do.

What a user holds comes from their memberships (one built-in role per project),
their grants (panel.models.Grant: a role in a project, for them or one of their
groups) and the grants on single VMs: a VM grant lets its holder see that VM
and use the granted privileges on it alone. Every project role sees the whole
project (VIEW); own-only limits acting (every privilege but VIEW and CONSOLE)
to the VMs and volumes the holder owns or was granted. Where several sources
give one privilege, the widest wins. Shared images (ISOs, cloud images admins
publish) are seen by all who have a project.

Hosts, pools and networks are infrastructure: admins change them; other users
see those their projects may use (a project with no list may use them all);
USE_NETWORK lets a VM be connected to a network of the project.

An API token may carry a ceiling (``user._panel_ceiling``, a set of privilege
names): the user then holds no privilege beyond it, and is no admin unless it
has ADMINISTER.

Scope rule, the same in pages, API and websockets: an object outside the
user's scope does not exist for them (404); an object in scope that they may
not act on is refused (403).

Actions are privilege names: restrict(), allowed() and get_object_for_user()
take VIEW or any name of the catalogue.

API tokens: a token with a privilege subset (its ceiling, panel.identity.tokens) never
does more than the subset allows, nor more than its user may (ceiling_allows below).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, Q, QuerySet
from django.http import Http404

from .identity.held import Held, held_by
from .models import AuditEvent, Host, Job, Project
from .privileges import (
    ADMINISTER,
    ALLOCATE,
    ALLOCATE_SPACE,
    AUDIT,
    BACKUP,
    CATALOGUE,
    CONFIG_CPU_MEMORY,
    CONFIG_DISKS,
    CONFIG_NETWORK,
    CONSOLE,
    CONSOLE_INPUT,
    MANAGE_PROJECT,
    MIGRATE,
    POWER,
    SNAPSHOT,
    USE_NETWORK,
    VIEW,
    VOLUME_READ,
)

__all__ = [
    "ADMINISTER",
    "ALLOCATE",
    "ALLOCATE_SPACE",
    "AUDIT",
    "BACKUP",
    "CONFIG_CPU_MEMORY",
    "CONFIG_DISKS",
    "CONFIG_NETWORK",
    "CONSOLE",
    "CONSOLE_INPUT",
    "MANAGE_PROJECT",
    "MIGRATE",
    "POWER",
    "SNAPSHOT",
    "USE_NETWORK",
    "VIEW",
    "VOLUME_READ",
]

ACTIONS = frozenset(CATALOGUE)

M = TypeVar("M", bound=Model)

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

    Person = User | AnonymousUser | None


def signed_in(user: Person) -> TypeGuard[User]:
    """Whether user is a signed-in, active account (not anonymous, not disabled)."""
    return user is not None and user.is_authenticated and user.is_active


def ceiling_allows(user: Person, action: str) -> bool:
    """Whether the user's token ceiling (if any) lets them use action; VIEW always."""
    ceiling = getattr(user, "_panel_ceiling", None)
    return ceiling is None or action == VIEW or action in ceiling


def is_admin(user: Person) -> bool:
    """Admins manage the whole panel: hosts, all projects, users."""
    return signed_in(user) and user.is_superuser and ceiling_allows(user, ADMINISTER)


def held(user: Person) -> Held:
    """What the user holds (panel/identity/held.py): nothing unless signed in."""
    return held_by(user) if signed_in(user) else Held()


def roles(user: Person) -> dict[int, str]:
    """The user's built-in role in each project they are a member of; cached per request."""
    return held(user).roles


def forget(user: Person) -> Any:
    """Drop the cached privileges and answers: long-lived holders of a user (websockets)
    re-read them."""
    for cached in ("_panel_held", "_panel_allowed"):
        if hasattr(user, cached):
            delattr(user, cached)
    return user


def project_ids(user: Person, *privileges: str, wide: bool = False) -> list[int]:
    """Ids of the projects the user sees, or of those where they hold one of privileges
    (wide: on every object of the project, not only their own)."""
    found = []
    for pid, names in held(user).projects.items():
        if not privileges:
            found.append(pid)
            continue
        kept = [names[p] for p in privileges if p in names and ceiling_allows(user, p)]
        if kept and (not wide or not all(kept)):
            found.append(pid)
    return found


def holds(user: Person, project: Project | int | None, privilege: str) -> str | None:
    """How the user holds privilege in project: "all" (admins too), "own" (own-only), or None."""
    if is_admin(user):
        return "all"
    if project is None or not ceiling_allows(user, privilege):
        return None
    pid = project if isinstance(project, int) else project.pk
    own_only = held(user).projects.get(pid, {}).get(privilege)
    return None if own_only is None else ("own" if own_only else "all")


def role_in(user: Person, project: Project | int | None) -> str | None:
    """The user's built-in role in that project ("admin" for admins), or None."""
    if is_admin(user):
        return "admin"
    if project is None:
        return None
    pid = project if isinstance(project, int) else project.pk
    return roles(user).get(pid)


# --- rules: each returns a Q the queryset is filtered by (None: no filter) ---

_ALL = None
_NOTHING = Q(pk__in=[])


Rule = Callable[["User", str, type[Model]], Q | None]


def _infrastructure(field_name: str, use: str | None = None) -> Rule:
    """Hosts, pools, networks: admins change them; others see what their projects may use
    (and use a network where they hold USE_NETWORK)."""

    def rule(user: User, action: str, model: type[Model]) -> Q | None:
        if action not in (VIEW, use):
            return _NOTHING
        pids = project_ids(user) if action == VIEW else project_ids(user, action)
        if not pids:
            return _NOTHING
        unrestricted = Project.objects.filter(pk__in=pids).filter(**{f"{field_name}__isnull": True})
        if unrestricted.exists():
            return _ALL
        # A subquery, not a join: the outer query never needs DISTINCT.
        return Q(pk__in=model._default_manager.filter(projects_allowed__in=pids).values("pk"))

    return rule


def _owned(user: User, action: str, model: type[Model]) -> Q:
    """VMs and volumes: seen by the project; acted on by those who hold the privilege, on
    every object of the project or (own-only) on those they own or were granted; a VM
    also by the holders of a grant on it alone."""
    mine_only = Q(owner=user)
    if hasattr(model, "granted_users"):
        mine_only |= Q(pk__in=model._default_manager.filter(granted_users=user).values("pk"))
    everything: list[int] = []
    own: list[int] = []
    for pid, names in held(user).projects.items():
        if action in names:
            (own if names[action] else everything).append(pid)
    q = Q(project__in=everything)
    if own:
        q |= Q(project__in=own) & mine_only
    if model._meta.label_lower == "vms.virtualmachine":
        single = [vm for vm, names in held(user).vms.items() if action in names]
        if single:
            q |= Q(pk__in=single)
    return q


def vm_projects_seen(user: Person) -> frozenset[int | None] | None:
    """The projects whose VMs user sees (None: every VM, as an admin does), so that a
    websocket can tell from a VM's project alone whether to pass its change on. It is the
    VIEW rule of _owned: a VM is seen by those who hold a role in its project."""
    if not signed_in(user):
        return frozenset()
    if is_admin(user):
        return None
    return frozenset(project_ids(user))


def vms_granted(user: Person) -> frozenset[str]:
    """The ids of the VMs user was granted alone (a grant on one VM), as pushes name them."""
    return frozenset(str(vm) for vm in held(user).vms)


def sees_vm(
    projects: frozenset[int | None] | None,
    vm: dict[str, Any],
    granted: frozenset[str] = frozenset(),
) -> bool | None:
    """Whether a VM's change (as pushed, with its project) is for a user who sees the
    projects given, or was granted that VM alone; None when the push does not say the
    VM's project."""
    if projects is None or str(vm.get("id", "")) in granted:
        return True
    if "project" not in vm:
        return None
    return vm["project"] in projects


def _volume(user: User, action: str, model: type[Model]) -> Q | None:
    """Volumes as VMs, plus the shared images admins publish: everyone with a project sees those."""
    q = _owned(user, action, model)
    if action == VIEW and project_ids(user):
        q = q | Q(shared=True)
    return q


def _template(user: User, action: str, model: type[Model]) -> Q | None:
    """VM templates: admins manage them; members of a project they are offered to use them."""
    if action != VIEW:
        return _NOTHING
    return Q(pk__in=model._default_manager.filter(projects__in=project_ids(user)).values("pk"))


def _library_image(user: User, action: str, model: type[Model]) -> Q | None:
    """The image library: admins publish; members see the public images and those shared
    with one of their projects."""
    pids = project_ids(user)
    if action != VIEW or not pids:
        return _NOTHING
    shared = model._default_manager.filter(projects__in=pids).values("pk")
    return Q(public=True) | Q(pk__in=shared)


def _job(user: User, action: str, model: type[Model]) -> Q | None:
    """Jobs: seen by the project and their starter; cancelled by their starter and by
    those who hold AUDIT (oversee every job of the project)."""
    if action == VIEW:
        return Q(project__in=project_ids(user)) | Q(user=user)
    return Q(project__in=project_ids(user, AUDIT)) | Q(user=user)


def _audit(user: User, action: str, model: type[Model]) -> Q | None:
    """The audit log: one's own events, and the project's for those who hold AUDIT."""
    if action not in (VIEW, AUDIT):
        return _NOTHING
    return Q(project__in=project_ids(user, AUDIT)) | Q(user=user)


def _project(user: User, action: str, model: type[Model]) -> Q | None:
    """Projects: seen by those who hold a role in them; a privilege, by its holders."""
    if action == VIEW:
        return Q(pk__in=project_ids(user))
    return Q(pk__in=project_ids(user, action))


def _project_part(user: User, action: str, model: type[Model]) -> Q | None:
    """Objects of a project that steer its VMs (affinity groups): seen by those who hold a
    role in it, changed by those who hold ALLOCATE on every VM of it (operators)."""
    if action == VIEW:
        return Q(project__in=project_ids(user))
    return Q(project__in=project_ids(user, ALLOCATE, wide=True))


def _user(user: User, action: str, model: type[Model]) -> Q | None:
    # Non-admins see only themselves in user lists; admins see everyone.
    return Q(pk=user.pk) if action == VIEW else _NOTHING


RULES: dict[str, Rule] = {
    "panel.host": _infrastructure("allowed_hosts"),
    "panel.job": _job,
    "panel.auditevent": _audit,
    "panel.project": _project,
    "auth.user": _user,
    "vms.virtualmachine": _owned,
    "vms.template": _template,
    "vms.affinitygroup": _project_part,
    "storage.volume": _volume,
    "storage.storagepool": _infrastructure("allowed_pools"),
    "storage.libraryimage": _library_image,
    "networking.network": _infrastructure("allowed_networks", USE_NETWORK),
}


def restrict(queryset: QuerySet[M], user: Person, action: str = VIEW) -> QuerySet[M]:
    """The part of queryset that user may perform action (a privilege) on."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if not signed_in(user) or not ceiling_allows(user, action):
        return queryset.none()
    if is_admin(user):
        return queryset
    label = queryset.model._meta.label_lower
    rule = RULES.get(label)
    if rule is None:
        raise LookupError(f"no permission rule for {label}")
    q = rule(user, action, queryset.model)
    if q is None:
        return queryset
    # Rules use subqueries for many-to-many relations, so no row comes out twice.
    return queryset.filter(q)


def personal(queryset: QuerySet[M], user: Person) -> QuerySet[M]:
    """Objects that belong to one user (subscriptions, notifications): their owner's
    alone, an admin's included; deliveries through their subscription."""
    if not signed_in(user):
        return queryset.none()
    owner = "subscription__user" if queryset.model._meta.model_name == "delivery" else "user"
    return queryset.filter(**{owner: user})


def clean_pk(model: type[Model], pk: Any) -> Any:
    """pk as the model's primary key holds it, or a 404 when it cannot be one (`abc`, `1e99`)."""
    field = model._meta.pk
    try:
        value = field.to_python(pk)
    except (ValidationError, TypeError, ValueError):
        raise Http404("Not found.") from None
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise Http404("Not found.")
    return value


def get_own(queryset: QuerySet[M], user: Person, pk: Any) -> M:
    """One of the user's personal objects (see personal()): 404 for anyone else's."""
    found = personal(queryset, user).filter(pk=clean_pk(queryset.model, pk)).first()
    if found is None:
        raise Http404("Not found.")
    return found


def get_object_for_user(queryset: QuerySet[M], user: Person, pk: Any, action: str = VIEW) -> M:
    """The object, if user may act on it: 404 outside their scope, 403 in scope but not allowed."""
    pk = clean_pk(queryset.model, pk)
    obj = restrict(queryset, user, VIEW).filter(pk=pk).first()
    if obj is None:
        raise Http404("Not found.")
    if action != VIEW and not restrict(queryset, user, action).filter(pk=pk).exists():
        whose = (
            "This API token's privileges do"
            if not ceiling_allows(user, action)
            else "Your role does"
        )
        raise PermissionDenied(
            f"{whose} not allow '{action.replace('_', ' ')}' on this {queryset.model._meta.verbose_name}."
        )
    return obj


def allowed(user: Person, obj: Model, action: str) -> bool:
    """Whether user may perform action on obj (for buttons and serializers); asked once per
    object and action for the user at hand (a request's, or a websocket's until forget())."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if not ceiling_allows(user, action):
        return False
    if is_admin(user):
        return True  # restrict() leaves an admin's querysets whole
    model = type(obj)
    key = (model._meta.label_lower, obj.pk, action)
    answers: dict[tuple[str, Any, str], bool] | None = getattr(user, "_panel_allowed", None)
    if answers is None:
        answers = {}
        if signed_in(user):
            setattr(user, "_panel_allowed", answers)  # noqa: B010 (a cache on the user object)
    if key not in answers:
        answers[key] = (
            restrict(model._default_manager.all(), user, action).filter(pk=obj.pk).exists()
        )
    return answers[key]


def privileges_on(user: Person, obj: Model) -> dict[str, bool]:
    """Each privilege name: whether user holds it on obj (a VM or a volume), for a page's
    buttons; at most one query (whether an own-only holder was granted obj)."""
    names: set[str] = set()
    if is_admin(user):
        names = set(CATALOGUE)
    elif signed_in(user):
        pid = getattr(obj, "project_id", None)
        project = held(user).projects.get(pid, {}) if pid is not None else {}
        names = {name for name, own_only in project.items() if not own_only}
        own = {name for name, own_only in project.items() if own_only}
        if own and _is_mine(user, obj):
            names |= own
        if obj._meta.label_lower == "vms.virtualmachine":
            names |= held(user).vms.get(obj.pk, set())
    return {name: name in names and ceiling_allows(user, name) for name in CATALOGUE}


def _is_mine(user: User, obj: Model) -> bool:
    """Whether user owns obj or was granted it (the reach of an own-only role)."""
    if getattr(obj, "owner_id", None) == user.pk:
        return True
    granted = getattr(obj, "granted_users", None)
    return granted is not None and granted.filter(pk=user.pk).exists()


# --- shortcuts used across the apps ---


def require_admin(user: Person, what: str, because: str = "") -> None:
    """PermissionDenied (403) naming what only administrators may do, and why if given."""
    if not is_admin(user):
        raise PermissionDenied(
            f"Only administrators can {what}{f': {because}' if because else ''}."
        )


def can_manage_hosts(user: Person) -> bool:
    return is_admin(user)


def visible_hosts(user: Person) -> QuerySet[Host]:
    return restrict(Host.objects.all(), user, VIEW)


def visible_jobs(user: Person) -> QuerySet[Job]:
    return restrict(Job.objects.select_related("user", "host"), user, VIEW)


def visible_audit_events(user: Person) -> QuerySet[AuditEvent]:
    return restrict(AuditEvent.objects.select_related("project"), user, VIEW)


def can_see_audit_log(user: Person) -> bool:
    """The audit page: admins, and those who hold AUDIT for their projects."""
    return is_admin(user) or bool(project_ids(user, AUDIT))
