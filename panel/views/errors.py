"""Error pages. A refusal (403) is written to the audit log here, once for every page."""

from __future__ import annotations

import sys

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import defaults

from panel import audit
from panel.actors import Actor
from panel.choices import AuditResult
from panel.middleware import busy_response


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    message = str(exception) if exception and str(exception) else "You may not do that."
    audit.record(
        Actor.of(request),
        f"{request.method} {request.path}"[:100],
        request.path,
        result=AuditResult.DENIED,
        detail=message,
    )
    if _is_api(request):
        return JsonResponse({"detail": message}, status=403)
    return render(request, "403.html", {"message": message}, status=403)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    """An unexpected error is a 500. A database that is busy or takes no more connections,
    met before any view ran (loading the session, say), is a 503 that says to try again:
    the page is written without the database, which cannot be counted on here."""
    exc = sys.exc_info()[1]
    busy = busy_response(request, exc, bare=True) if exc is not None else None
    return busy or defaults.server_error(request)


def _is_api(request: HttpRequest) -> bool:
    """API clients get the API's JSON errors, even for paths no API view matched."""
    return request.path.startswith("/api/")
