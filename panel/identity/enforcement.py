"""A user who must have a second factor and has none can only set one up: pages send them
to the set-up page, the API answers 403 (sessions here, API tokens in SecondFactorSetUp)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import Resolver404, resolve
from rest_framework.permissions import BasePermission

from . import factors

CLOSE_SET_UP_FIRST = 4403

SET_UP_FIRST = (
    "A second factor is required for your account. Set up an authenticator app or a "
    "security key on the Two factors page in the browser (/account/two-factor/) first."
)

# The pages such a user may still open: the set-up itself, and the way out.
OPEN = {
    "two_factor",
    "totp_start",
    "totp_confirm",
    "webauthn_register_options",
    "webauthn_register",
    "logout",
    "login",
    "login_second",
    "login_second_key_options",
    "login_second_key",
    "favicon",
}


def _url_name(path: str) -> str:
    try:
        return resolve(path).url_name or ""
    except Resolver404:
        return ""


class SecondFactorRequiredMiddleware:
    """Keeps a user who must set up a second factor on the set-up page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and _url_name(request.path_info) not in OPEN
            and factors.needs_set_up(user)
        ):
            if request.path_info.startswith("/api/"):
                return JsonResponse({"detail": SET_UP_FIRST}, status=403)
            if request.headers.get("HX-Request"):
                return HttpResponse(SET_UP_FIRST, status=403, content_type="text/plain")
            messages.warning(request, SET_UP_FIRST)
            return redirect("two_factor")
        return self.get_response(request)


class SecondFactorSetUp(BasePermission):
    """API: refuses a token of a user who must set up a second factor first."""

    message = SET_UP_FIRST

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        return not (user and user.is_authenticated and factors.needs_set_up(user))


class SecondFactorSocketGuard:
    """Websockets: a user who must set up a second factor is closed at once (4403)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        user = scope.get("user")
        if getattr(user, "is_authenticated", False) and await database_sync_to_async(
            factors.needs_set_up
        )(user):
            await receive()  # the handshake's websocket.connect
            # Accepted, then closed: a refused handshake would not tell the browser why.
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": CLOSE_SET_UP_FIRST})
            return None
        return await self.inner(scope, receive, send)
