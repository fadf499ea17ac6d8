"""Writing audit events: every service calls record() inside its transaction."""

from __future__ import annotations

from typing import Any

from .choices import AuditResult
from .models import AuditEvent


def record(
    actor: Any,
    action: str,
    target: object = "",
    *,
    result: str = AuditResult.SUCCESS,
    detail: str = "",
    source_ip: str | None = None,
) -> AuditEvent:
    """Write one audit row: who did what to which object, and how it ended."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEvent.objects.create(
        user=user,
        username=getattr(user, "username", "") or "",
        action=action,
        target=str(target)[:300],
        result=result,
        detail=detail,
        source_ip=source_ip,
    )


def client_ip(request: Any) -> str | None:
    """The address the request came from (the proxy's, unless trusted otherwise)."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None
