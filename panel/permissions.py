"""Who may do what: the one module every view, API viewset and consumer asks.

Roles
-----
admin     A global flag (``is_superuser``). Sees and does everything: hosts,
          pools, networks, every project, users, the whole audit log.
operator  Everything inside their projects: every VM and volume there, their
          jobs, the project's members, the project's audit log.
member    Self-service inside their projects: sees the project's VMs and
          volumes; acts only on the VMs and volumes they created (or that an
          operator granted them); creates within the project's quota.
          Shared images (ISOs, cloud images admins publish) are seen by all.
viewer    Looks at their projects' objects and opens consoles view-only.

Hosts, pools and networks are infrastructure: admins change them; other users
see those their projects may use (a project with no list may use them all).

Scope rule, the same in pages, API and websockets: an object outside the
user's scope does not exist for them (404); an object in scope that they may
not act on is refused (403).

API tokens: a token with a privilege subset (its ceiling, panel.identity.tokens) never
does more than the subset allows, nor more than its user may (ceiling_allows below).

Actions: ``view``, ``change`` (lifecycle, edit), ``delete``, ``console``
(watch a console), ``console_input`` (type into it), ``manage`` (members of a
project, infrastructure).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, Q, QuerySet
from django.http import Http404

from . import privileges
from .choices import ProjectRole
from .models import AuditEvent, Host, Job, Membership, Project

VIEW = "view"
CHANGE = "change"
DELETE = "delete"
CONSOLE = "console"
CONSOLE_INPUT = "console_input"
MANAGE = "manage"
ACTIONS = {VIEW, CHANGE, DELETE, CONSOLE, CONSOLE_INPUT, MANAGE}

M = TypeVar("M", bound=Model)

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

    Person = User | AnonymousUser | None


def signed_in(user: Person) -> TypeGuard[User]:
    """Whether user is a signed-in, active account (not anonymous, not disabled)."""
    return user is not None and user.is_authenticated and user.is_active


def is_admin(user: Person) -> bool:
    """Admins manage the whole panel: hosts, all projects, users (not with a token whose
    ceiling lacks ADMINISTER)."""
    return signed_in(user) and user.is_superuser and ceiling_allows(user, privileges.ADMINISTER)


# The coarse actions stand for several privileges: a token's ceiling admits one only when
# it holds them all (a ceiling narrows, never widens). Privilege names stand for themselves.
_ACTION_NEEDS: dict[str, frozenset[str]] = {
    CHANGE: frozenset(
        {
            privileges.POWER,
            privileges.CONFIG_CPU_MEMORY,
            privileges.CONFIG_DISKS,
            privileges.CONFIG_NETWORK,
            privileges.SNAPSHOT,
            privileges.BACKUP,
            privileges.MIGRATE,
            privileges.VOLUME_READ,
            privileges.ALLOCATE_SPACE,
            privileges.USE_NETWORK,
        }
    ),
    DELETE: frozenset({privileges.ALLOCATE, privileges.ALLOCATE_SPACE}),
    MANAGE: frozenset({privileges.MANAGE_PROJECT}),
}
_ROLE_ORDER = (ProjectRole.OPERATOR, ProjectRole.MEMBER, ProjectRole.VIEWER)


def ceiling_allows(user: Person, action: str) -> bool:
    """Whether the privilege ceiling of the request's API token (user._panel_ceiling, set by
    panel.identity.token_auth) admits action: True with no ceiling; VIEW always."""
    ceiling: frozenset[str] | None = getattr(user, "_panel_ceiling", None)
    if ceiling is None or action == VIEW:
        return True
    return _ACTION_NEEDS.get(action, frozenset({action})) <= ceiling


def _capped(user: Person, found: dict[int, str]) -> dict[int, str]:
    """The roles as a token's ceiling leaves them: none above the highest built-in role
    whose privileges the ceiling holds (viewer at least: VIEW is always allowed)."""
    ceiling: frozenset[str] | None = getattr(user, "_panel_ceiling", None)
    if ceiling is None:
        return found
    cap = next(
        (r for r in _ROLE_ORDER if privileges.BUILTIN_ROLES[r][0] <= ceiling), ProjectRole.VIEWER
    )
    lowest = _ROLE_ORDER.index(cap)
    return {pid: _ROLE_ORDER[max(_ROLE_ORDER.index(role), lowest)] for pid, role in found.items()}


def roles(user: Person) -> dict[int, str]:
    """The user's role in each of their projects, {project id: role}; cached per request."""
    if not signed_in(user):
        return {}
    cached: dict[int, str] | None = getattr(user, "_panel_roles", None)
    if cached is None:
        cached = _capped(
            user, dict(Membership.objects.filter(user=user).values_list("project_id", "role"))
        )
        setattr(user, "_panel_roles", cached)  # noqa: B010 (a cache on the user object)
    return cached


def forget(user: Person) -> Any:
    """Drop the cached roles and answers: long-lived holders of a user (websockets) re-read
    them."""
    for cached in ("_panel_roles", "_panel_allowed"):
        if hasattr(user, cached):
            delattr(user, cached)
    return user


def project_ids(user: Person, *allowed_roles: str) -> list[int]:
    """Ids of the user's projects, optionally only those where they hold one of allowed_roles."""
    return [pid for pid, role in roles(user).items() if not allowed_roles or role in allowed_roles]


def role_in(user: Person, project: Project | int | None) -> str | None:
    """The user's role in that project ("admin" for admins), or None."""
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


def _infrastructure(field: str) -> Rule:
    """Hosts, pools, networks: admins change them; others see what their projects may use."""

    def rule(user: User, action: str, model: type[Model]) -> Q | None:
        if action != VIEW:
            return _NOTHING
        pids = project_ids(user)
        if not pids:
            return _NOTHING
        unrestricted = Project.objects.filter(pk__in=pids).filter(**{f"{field}__isnull": True})
        if unrestricted.exists():
            return _ALL
        # A subquery, not a join: the outer query never needs DISTINCT.
        return Q(pk__in=model._default_manager.filter(projects_allowed__in=pids).values("pk"))

    return rule


def _owned(user: User, action: str, model: type[Model]) -> Q:
    """VMs and volumes: seen by the project; acted on by operators and their owners."""
    if action in (VIEW, CONSOLE):
        return Q(project__in=project_ids(user))
    operator = Q(project__in=project_ids(user, ProjectRole.OPERATOR))
    mine = Q(project__in=project_ids(user, ProjectRole.MEMBER)) & Q(owner=user)
    if hasattr(model, "granted_users"):
        granted = model._default_manager.filter(granted_users=user).values("pk")
        mine |= Q(project__in=project_ids(user, ProjectRole.MEMBER)) & Q(pk__in=granted)
    return operator | mine


def vm_projects_seen(user: Person) -> frozenset[int | None] | None:
    """The projects whose VMs user sees (None: every VM, as an admin does), so that a
    websocket can tell from a VM's project alone whether to pass its change on. It is the
    VIEW rule of _owned below: a VM is seen by the members of its project."""
    if not signed_in(user):
        return frozenset()
    if is_admin(user):
        return None
    return frozenset(project_ids(user))


def sees_vm(projects: frozenset[int | None] | None, vm: dict[str, Any]) -> bool | None:
    """Whether a VM's change (as pushed, with its project) is for a user who sees the
    projects given; None when the push does not say the VM's project."""
    if projects is None:
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
    if action == VIEW:
        return Q(project__in=project_ids(user)) | Q(user=user)
    return Q(project__in=project_ids(user, ProjectRole.OPERATOR)) | Q(user=user)


def _audit(user: User, action: str, model: type[Model]) -> Q | None:
    if action != VIEW:
        return _NOTHING
    return Q(project__in=project_ids(user, ProjectRole.OPERATOR)) | Q(user=user)


def _project(user: User, action: str, model: type[Model]) -> Q | None:
    if action == VIEW:
        return Q(pk__in=project_ids(user))
    if action == MANAGE:
        return Q(pk__in=project_ids(user, ProjectRole.OPERATOR))
    return _NOTHING


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
    "storage.volume": _volume,
    "storage.storagepool": _infrastructure("allowed_pools"),
    "storage.libraryimage": _library_image,
    "networking.network": _infrastructure("allowed_networks"),
}


def restrict(queryset: QuerySet[M], user: Person, action: str = VIEW) -> QuerySet[M]:
    """The part of queryset that user may perform action on."""
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
    """The audit page: admins, and operators for their projects."""
    return is_admin(user) or bool(project_ids(user, ProjectRole.OPERATOR))
