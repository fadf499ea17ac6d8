"""Service errors become the API's status codes and {"detail"} / field error bodies."""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from panel.exceptions import ServiceError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        if exc.field and exc.status_code == 400:
            return Response({exc.field: [exc.message]}, status=400)
        return Response({"detail": exc.message}, status=exc.status_code)
    return drf_exception_handler(exc, context)
