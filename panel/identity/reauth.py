"""Re-authentication: sensitive actions want a recent proof of who the user is.

Deleting a VM with its storage and administering users ask for the password again when
the user last signed in or confirmed it more than PANEL_REAUTH_SECONDS ago (a fresh
login counts). Pages send the user to /account/reauth/?next=... (``ensure_recent`` in a
view, after its permission checks, or the ``recent_auth_required`` decorator); the API
refuses with a 403 that says what to send (``require_recent_auth``).

An API client proves it with the ``X-Panel-Password`` header (the user's password) on
the sensitive request itself, whether it signed in with a token or a session; a browser
session that re-authenticated within the window needs nothing more.

``confirm`` is the one check of a proof, throttled with the login's counters and
audited ("reauth", "reauth.failed"): a password, or a second factor's code once one
is set up (``_code_ok``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import auth
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from panel import audit, throttle
from panel.actors import Actor, client_ip
from panel.choices import AuditResult, Via
from panel.identity import factors
from panel.identity.policy import AUTH_AT

PASSWORD_HEADER = "X-Panel-Password"
CODE_HEADER = "X-Panel-Code"
API_REFUSAL = (
    "This action needs you to confirm who you are: send your password in the "
    f"{PASSWORD_HEADER} header with this request (or, in the browser, confirm your "
    "password at /account/reauth/ and try again)."
)


class ReauthRequired(Exception):
    """Raised by a page view: the middleware sends the user to the reauth page."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def _django_request(request: Any) -> HttpRequest:
    return getattr(request, "_request", request)  # a DRF request wraps Django's


def is_recent(request: Any) -> bool:
    """Whether the request's login session proved its user within the window."""
    session = getattr(_django_request(request), "session", None)
    at = session.get(AUTH_AT) if session is not None else None
    return at is not None and time.time() - at <= settings.PANEL_REAUTH_SECONDS


def mark_recent(request: Any) -> None:
    """The user just proved who they are: their login session counts as recent."""
    django_request = _django_request(request)
    session = getattr(django_request, "session", None)
    user = getattr(django_request, "user", None)
    if session is not None and str(session.get(auth.SESSION_KEY)) == str(getattr(user, "pk", "")):
        session[AUTH_AT] = time.time()


def safe_next(request: HttpRequest, url: str | None, default: str = "/") -> str:
    """url if it leads back into this panel, else default (no open redirect)."""
    if url and url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return url
    return default


def reauth_url(next_url: str) -> str:
    return f"{reverse('reauth')}?{urlencode({'next': next_url})}"


def ensure_recent(request: HttpRequest, back: str | None = None) -> None:
    """In a page view, after its permission checks: go on only with a recent proof, else
    to the reauth page, then back to back (default: this page)."""
    if not is_recent(request):
        raise ReauthRequired(reauth_url(back or request.get_full_path()))


def recent_auth_required(
    view: Callable[..., HttpResponse] | None = None,
    *,
    when: Callable[[HttpRequest], bool] | None = None,
    back: str | None = None,
) -> Any:
    """A page view's decorator: the view runs only with a recent proof (when given: only
    for requests when(request) picks, a POST say)."""

    def decorate(func: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(func)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if when is None or when(request):
                ensure_recent(request, back)
            return func(request, *args, **kwargs)

        return wrapped

    return decorate(view) if view is not None else decorate


def require_recent_auth(request: Any) -> None:
    """In an API view: go on with a recent browser session or a proof sent with the
    request (X-Panel-Password), else a 403 saying what to send."""
    password = request.headers.get(PASSWORD_HEADER)
    code = request.headers.get(CODE_HEADER)
    if password or code:
        refusal = confirm(_django_request(request), password=password, code=code)
        if refusal:
            raise PermissionDenied(refusal)
        return
    if getattr(request, "auth", None) is None and is_recent(request):
        return  # a browser's session, not a token
    raise PermissionDenied(API_REFUSAL)


def _code_ok(user: Any, code: str) -> bool:
    """A second factor's code: the authenticator app's (never twice) or a recovery code
    (used up)."""
    return factors.verify_code(user, code)


def _proof_ok(request: HttpRequest, user: Any, password: str | None, code: str | None) -> bool:
    if password:
        # Through the login's backends, so a directory's password counts as it does there.
        again = auth.authenticate(request, username=user.get_username(), password=password)
        return again is not None and again.pk == user.pk
    return bool(code) and _code_ok(user, code or "")


def confirm(request: HttpRequest, password: str | None = None, code: str | None = None) -> str:
    """Check the request's user's proof; "" when it holds (the session counts as recent
    from now), else why not. Throttled and audited like a login."""
    user = request.user
    ip = client_ip(request)
    actor = Actor(user, ip, Via.API if request.path_info.startswith("/api/") else Via.PAGE)
    username = user.get_username()
    refused = throttle.attempt(username, ip)
    if refused:
        audit.record(
            actor, "reauth.failed", username, result=AuditResult.DENIED, detail="throttled"
        )
        return refused.message
    if not _proof_ok(request, user, password, code):
        what = "password" if password else "code"
        audit.record(actor, "reauth.failed", username, result=AuditResult.DENIED, detail=what)
        return f"That {what} is not right: try again."
    throttle.succeeded(username, ip)
    mark_recent(request)
    audit.record(actor, "reauth", username, detail="password" if password else "code")
    return ""
