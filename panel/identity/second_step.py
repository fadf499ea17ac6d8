"""The login's second step: between a right password and login() the session only holds
who is half-way in (for PANEL_SECOND_STEP_SECONDS), and the request stays anonymous."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model, login

from panel import audit
from panel.actors import Actor, client_ip
from panel.choices import AuditResult, Via

PENDING = "panel_second_step"


def begin(request: Any, user: Any, next_url: str) -> None:
    """The password was right: wait for the second factor before logging the user in."""
    request.session[PENDING] = {
        "user": user.pk,
        "backend": user.backend,
        "at": time.time(),
        "next": next_url,
    }


def pending_user(request: Any) -> Any:
    """The user whose password was right and whose second factor is awaited (else None)."""
    pending = request.session.get(PENDING)
    if not isinstance(pending, dict):
        return None
    if time.time() - float(pending.get("at", 0)) > settings.PANEL_SECOND_STEP_SECONDS:
        request.session.pop(PENDING, None)
        return None
    user: Any = get_user_model().objects.filter(pk=int(pending["user"]), is_active=True).first()
    if user is not None:
        user.backend = pending["backend"]
    return user


def next_url(request: Any) -> str:
    """Where the login goes once the second step is done."""
    pending = request.session.get(PENDING) or {}
    return str(pending.get("next") or settings.LOGIN_REDIRECT_URL)


def finish(request: Any, user: Any, how: str) -> str:
    """The second factor was right: log the user in; where to go next."""
    target = next_url(request)
    request.session.pop(PENDING, None)
    login(request, user, backend=user.backend)
    audit.record(Actor(user, client_ip(request), Via.PAGE), "login.second_factor", user, detail=how)
    return target


def failed(request: Any, user: Any, how: str) -> None:
    """A wrong second factor, audited."""
    actor = Actor(None, client_ip(request), Via.PAGE)
    audit.record(
        actor,
        "login.second_factor_failed",
        user.get_username(),
        result=AuditResult.DENIED,
        detail=how,
    )
