"""Writing audit events: every service calls record() inside its transaction."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .actors import Actor
from .choices import AuditResult
from .exceptions import GoneError, ServiceError
from .models import AuditEvent, Project


def record(
    actor: Actor,
    action: str,
    target: object = "",
    *,
    result: str = AuditResult.SUCCESS,
    detail: str = "",
    project: Project | None = None,
) -> AuditEvent:
    """Write one audit row: who did what to which object, from where, and how it ended."""
    user = actor.person
    if project is None:
        project = _project_of(target)
    return AuditEvent.objects.create(
        user=user,
        username=getattr(user, "username", "") or "",
        project=project,
        action=action,
        target=_printable(str(target))[:300],
        result=result,
        detail=_printable(detail),
        source_ip=actor.address,
        via=actor.via,
    )


def _printable(text: str) -> str:
    # A refused name or path may hold a NUL, which PostgreSQL cannot store in text: the
    # row shows it escaped, as the refusal message describes it.
    return text.replace("\x00", "\\x00")


def _project_of(target: object) -> Project | None:
    project = target if isinstance(target, Project) else getattr(target, "project", None)
    return project if isinstance(project, Project) else None


@contextlib.contextmanager
def refusals_recorded(
    actor: Actor,
    action: str,
    target: object = "",
    *,
    project: Project | None = None,
) -> Iterator[None]:
    """Around a service's transaction: a refused or failed action (bad input, quota) is
    logged after the rollback. PermissionDenied is logged by the 403 handlers."""
    try:
        yield
    except ServiceError as exc:
        result = AuditResult.DENIED if exc.status_code == 403 else AuditResult.FAILURE
        if isinstance(exc, GoneError):
            # The target was deleted meanwhile, perhaps with its project: the row keeps
            # the target's name, and the project only while it exists.
            project = project or _project_of(target)
            if project is not None and not Project.objects.filter(pk=project.pk).exists():
                project = None
            target = str(target)
        record(
            actor,
            action,
            target,
            result=result,
            detail=exc.message,
            project=project,
        )
        raise
