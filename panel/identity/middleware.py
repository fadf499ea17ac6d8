"""Sessions past their limits end at the next request, or refuse their websockets; a
page that wants a recent password sends the user to confirm it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async
from django.contrib import auth, messages
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from panel.identity import sessions
from panel.identity.policy import expired
from panel.identity.reauth import ReauthRequired


class SessionPolicyMiddleware:
    """After the authentication and messages middleware: a login session past its idle or
    absolute limit is logged out (the login page says why); a live one notes the request
    (at most once a minute). A session whose key changed (a new login, a password
    change) keeps its row."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = request.session
        key = session.session_key
        if key and auth.SESSION_KEY in session and request.user.is_authenticated:
            self._check(request)
        response = self.get_response(request)
        if key and session.session_key != key:
            sessions.rekeyed(key, session.session_key)
        return response

    def _check(self, request: HttpRequest) -> None:
        user = request.user
        now = time.time()
        why = expired(request.session, now)
        if why is None:
            sessions.touch(request, user, now)
            return
        sessions.end_expired(request, user, why)
        if not request.path_info.startswith("/api/"):
            messages.info(request, why.message)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if isinstance(exc, ReauthRequired):
            messages.info(
                request,
                "Confirm who you are to go on: your password, or a code of your second factor.",
            )
            return redirect(exc.url)
        return None


class SocketSessionPolicy:
    """Channels middleware inside AuthMiddlewareStack: a websocket that comes with an
    expired login session is anonymous (so refused, 4401)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        session = scope.get("session")
        if session is not None and await database_sync_to_async(expired)(session):
            scope = dict(scope, user=AnonymousUser())
        return await self.app(scope, receive, send)
