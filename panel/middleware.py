import secrets
from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware as _LoginRequired
from django.core.exceptions import DisallowedHost
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

DATABASE_BUSY = (
    "The database is busy (another change holds it) and nothing was changed. Try again in a moment."
)
DATABASE_FULL = (
    "The database takes no more connections right now (too many requests at once), and "
    "nothing was changed. Try again in a moment."
)


def is_database_full(exc: BaseException) -> bool:
    """PostgreSQL refused a new connection: every slot, or the database's limit, is taken."""
    text = str(exc).lower()
    return isinstance(exc, OperationalError) and any(
        words in text
        for words in (
            "too many clients",
            "too many connections",
            "remaining connection slots",
            "couldn't get a connection",  # the web server's pool: every one in use
        )
    )


def is_database_busy(exc: BaseException) -> bool:
    """A write that waited for the database's lock past its timeout (SQLite), a lock or
    statement timeout (PostgreSQL), or no free connection: the request changed nothing
    and may be retried."""
    if not isinstance(exc, OperationalError):
        return False
    if is_database_full(exc):
        return True
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

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def style_nonce(request: HttpRequest) -> str:
    """A nonce that lets this page's own scripts add <style> elements (xterm.js builds its
    theme that way); the policy names it only for responses that asked for one."""
    if not hasattr(request, "_csp_style_nonce"):
        request._csp_style_nonce = secrets.token_urlsafe(18)  # type: ignore[attr-defined]
    return request._csp_style_nonce  # type: ignore[attr-defined]


def content_security_policy(request: HttpRequest) -> str:
    """The policy: our own static files only; websockets to this host and to websockify."""
    connect = ["'self'"]
    try:
        host = request.get_host()
    except DisallowedHost:
        host = ""  # the 400 answer for a foreign Host header names no origin of it
    if host:
        connect += [f"ws://{host}", f"wss://{host}"]
    if websockify := _origin(settings.PANEL_WEBSOCKIFY_URL):
        connect.append(websockify)
    directives = {
        **settings.PANEL_CSP,
        "connect-src": " ".join(connect),
    }
    if nonce := getattr(request, "_csp_style_nonce", None):
        directives["style-src"] = f"{directives['style-src']} 'nonce-{nonce}'"
    return "; ".join(f"{name} {value}" for name, value in directives.items())


class ContentSecurityPolicyMiddleware:
    """Adds the Content-Security-Policy header to every response, errors and static files
    included (WhiteNoise answers those before Django's clickjacking middleware runs, so
    X-Frame-Options is set here too)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = content_security_policy(request)
        response.headers.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
        return response


def busy_response(
    request: HttpRequest, exc: BaseException, *, bare: bool = False
) -> HttpResponse | None:
    """The 503 for a database that is busy or takes no more connections (None for any
    other error): JSON for the API, text for htmx, else a page. bare: written without the
    database (the error came before any view ran, loading the session, say)."""
    if not is_database_busy(exc):
        return None
    detail = DATABASE_FULL if is_database_full(exc) else DATABASE_BUSY
    response: HttpResponse
    if request.path_info.startswith("/api/"):
        response = JsonResponse({"detail": detail}, status=503)
    elif request.headers.get("HX-Request"):
        response = HttpResponse(detail, status=503, content_type="text/plain")
    elif bare:
        response = HttpResponse(render_to_string("503_bare.html", {"detail": detail}), status=503)
    else:
        body = render_to_string("503.html", {"detail": detail}, request=request)
        response = HttpResponse(body, status=503)
    response["Retry-After"] = "5"
    return response


class DatabaseBusyMiddleware:
    """A locked database answers 503 with what to do, not a server error (views; what
    fails before a view is answered by panel.views.errors.server_error the same way)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        return busy_response(request, exc)
