"""Re-authentication for sensitive actions: a sign-in within PANEL_REAUTH_SECONDS.

The session keeps the time of its last password check ("panel_auth_at", set at login);
pages that want a recent one redirect to /account/reauth/, API views answer 403.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

SESSION_KEY = "panel_auth_at"
REAUTH_URL = "/account/reauth/"


@receiver(user_logged_in)
def _signed_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        request.session[SESSION_KEY] = time.time()


def is_recent(request: Any) -> bool:
    """Whether the request's session checked its user's password within the window."""
    session = getattr(request, "session", None)
    at = session.get(SESSION_KEY) if session is not None else None
    return isinstance(at, int | float) and time.time() - at <= settings.PANEL_REAUTH_SECONDS


def require_recent_auth(request: Any) -> None:
    """For API views: PermissionDenied (403) unless the session signed in recently."""
    if not is_recent(request):
        raise PermissionDenied(
            "This action needs a recent sign-in: enter your password again at "
            f"{REAUTH_URL} (within {settings.PANEL_REAUTH_SECONDS} seconds), then retry."
        )


def recent_auth_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """For pages: a stale session is sent to re-enter its password, then back here."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_recent(request):
            return HttpResponseRedirect(
                f"{REAUTH_URL}?{urlencode({'next': request.get_full_path()})}"
            )
        return view(request, *args, **kwargs)

    return wrapped
