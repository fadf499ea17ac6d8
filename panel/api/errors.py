"""Service errors become the API's status codes and {"detail"} / field error bodies.

A refusal (403) is written to the audit log here, as the pages' 403 handler does.
"""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from panel import audit
from panel.actors import Actor
from panel.choices import AuditResult
from panel.exceptions import ServiceError
from panel.middleware import DATABASE_BUSY, DATABASE_FULL, is_database_busy, is_database_full


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if is_database_busy(exc):
        detail = DATABASE_FULL if is_database_full(exc) else DATABASE_BUSY
        return Response({"detail": detail}, status=503, headers={"Retry-After": "5"})
    if isinstance(exc, ServiceError):
        if exc.field and exc.status_code == 400:
            return Response({exc.field: [exc.message]}, status=400)
        return Response({"detail": exc.message}, status=exc.status_code)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, list):
        # A refusal of no one field (a search term with a NUL in it, say) reads as the
        # others do: {"detail": ...}, never a bare list.
        response.data = {"detail": " ".join(str(message) for message in response.data)}
    request = context.get("request")
    if response is not None and response.status_code == 403 and request is not None:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
        audit.record(
            Actor.of(request),
            f"{request.method} {request.path}"[:100],
            request.path,
            result=AuditResult.DENIED,
            detail=str(detail),
        )
    return response
