"""Single sign-on pages: the way out to the OpenID provider and the way back."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET

from panel.identity import factors, oidc, second_step

# Where the user wanted to go, kept in the session while they are at the provider.
NEXT_KEY = "oidc_next"
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def _safe_next(request: HttpRequest, url: str) -> str:
    """url if it stays on this site (a path here), else ""."""
    allowed = url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return url if url and allowed else ""


def _callback_url(request: HttpRequest) -> str:
    path = reverse("oidc_callback")
    if settings.PANEL_PUBLIC_URL:
        return settings.PANEL_PUBLIC_URL.rstrip("/") + path
    return request.build_absolute_uri(path)


@login_not_required
@require_GET
def oidc_login(request: HttpRequest) -> HttpResponse:
    if not oidc.configured():
        raise Http404("Single sign-on is not set up on this panel.")
    request.session[NEXT_KEY] = _safe_next(request, request.GET.get("next", ""))
    try:
        return oidc.authorization_redirect(request, _callback_url(request))
    except oidc.SignInRefused as exc:
        messages.error(request, exc.message)
        return redirect("login")


@login_not_required
@require_GET
def oidc_callback(request: HttpRequest) -> HttpResponse:
    if not oidc.configured():
        raise Http404("Single sign-on is not set up on this panel.")
    try:
        user = oidc.complete(request)
    except oidc.SignInRefused as exc:
        messages.error(request, exc.message)
        return redirect("login")
    next_url = _safe_next(request, request.session.pop(NEXT_KEY, "")) or settings.LOGIN_REDIRECT_URL
    setattr(user, "backend", MODEL_BACKEND)  # noqa: B010 (what login() reads)
    setattr(user, "panel_login_via", "OIDC")  # noqa: B010 (the login audit row's detail)
    if factors.has_second_factor(user):
        # The provider vouched for the password; the panel's own second factor still asks.
        second_step.begin(request, user, next_url)
        return redirect("login_second")
    login(request, user, backend=MODEL_BACKEND)
    return redirect(next_url)
