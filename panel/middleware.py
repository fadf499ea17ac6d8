from django.contrib.auth.middleware import LoginRequiredMiddleware as _LoginRequired
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

DATABASE_BUSY = (
    "The database is busy (another change holds it) and nothing was changed. Try again in a moment."
)


def is_database_busy(exc: BaseException) -> bool:
    """A write that waited for the database's lock past its timeout (SQLite), or a lock or
    statement timeout (PostgreSQL): the request changed nothing and may be retried."""
    if not isinstance(exc, OperationalError):
        return False
    text = str(exc).lower()
    return any(
        words in text
        for words in (
            "database is locked",
            "database table is locked",
            "lock timeout",
            "statement timeout",
        )
    )


class LoginRequiredMiddleware(_LoginRequired):
    """Every page needs a login; the API answers 401 itself instead of redirecting."""

    def process_view(self, request, view_func, view_args, view_kwargs):  # type: ignore[no-untyped-def]
        if request.path_info.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class DatabaseBusyMiddleware:
    """A locked database answers 503 with what to do, not a server error."""

    def __init__(self, get_response):  # type: ignore[no-untyped-def]
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not is_database_busy(exc):
            return None
        response: HttpResponse
        if request.path_info.startswith("/api/"):
            response = JsonResponse({"detail": DATABASE_BUSY}, status=503)
        elif request.headers.get("HX-Request"):
            response = HttpResponse(DATABASE_BUSY, status=503, content_type="text/plain")
        else:
            body = render_to_string("503.html", {"detail": DATABASE_BUSY}, request=request)
            response = HttpResponse(body, status=503)
        response["Retry-After"] = "5"
        return response
