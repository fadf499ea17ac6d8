"""The Prometheus endpoint (admins' sessions, an admin's API token or the scrape token)."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from rest_framework.exceptions import AuthenticationFailed

from panel.identity.token_auth import PanelTokenAuthentication
from panel.permissions import is_admin

from . import metrics as exposition

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _scraper_allowed(request: HttpRequest) -> bool | None:
    """True/False when the request carries credentials for /metrics; None when it has none."""
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() == "bearer" and credential:
        expected = getattr(settings, "PANEL_METRICS_TOKEN", "")
        return bool(expected) and hmac.compare_digest(credential, expected)
    if scheme.lower() == "token" and credential:
        try:
            user, _token = PanelTokenAuthentication().authenticate_credentials(credential)
        except AuthenticationFailed:
            return False
        return is_admin(user)  # not with a token whose ceiling lacks ADMINISTER
    if request.user.is_authenticated:
        return is_admin(request.user)
    return None


@login_not_required
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format; 401 without credentials, 403 with ones that are not allowed."""
    allowed = _scraper_allowed(request)
    if allowed is None:
        response = HttpResponse(
            "Log in as an admin, or send 'Authorization: Bearer <PANEL_METRICS_TOKEN>' "
            "or an admin's API token ('Authorization: Token <key>').\n",
            status=401,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = 'Bearer realm="panel metrics"'
        return response
    if not allowed:
        return HttpResponse(
            "These credentials may not read the metrics: use an admin's token or the "
            "PANEL_METRICS_TOKEN set on the server.\n",
            status=403,
            content_type="text/plain",
        )
    return HttpResponse(exposition.render(), content_type=CONTENT_TYPE)
