"""Open websockets follow their user's access, not only the check made when they opened.

Every websocket consumer of the panel mixes in ``AccessWatch`` and calls
``watch_access()`` once it has let the user in. From then on the socket is closed
when its user is logged out (the session the socket came with is gone, expired,
or no longer valid after a password change), is disabled, or loses the right to
what the socket shows (membership removed, or a role that may no longer see or
use it: ``still_allowed``). Two ways bring that about within seconds:

- an ``access.changed`` event on the user's group (panel.events.access_changed),
  sent by the services that change members, roles, accounts and passwords, and on
  logout: the socket checks at once (or, for a logout of its own session, closes);
- a check every PANEL_WS_RECHECK_SECONDS, for what changes without an event (a
  session that expires, a change made in Django's admin or the database, an event
  lost while Redis was away).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Coroutine
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.signals import user_logged_out
from django.db import DatabaseError
from django.dispatch import receiver
from django.utils.crypto import constant_time_compare

from . import events
from .identity.policy import expired
from .permissions import forget

log = logging.getLogger(__name__)

CLOSE_LOGGED_OUT = 4401  # consumers close with 4404 (no longer visible), 4403 (not allowed)
LOGGED_OUT = (
    CLOSE_LOGGED_OUT,
    "You were logged out, or your account was disabled: log in again to go on.",
)


def background(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """A consumer's background task that ends quietly once its client is gone (a send then
    raises OSError) instead of leaving an exception nobody retrieves."""

    async def run() -> None:
        try:
            await coro
        except OSError as exc:
            log.debug("a websocket's background task ended: the client is gone (%r)", exc)

    return asyncio.create_task(run())


def close_reason(text: str) -> str:
    """text cut to what a websocket close frame carries (123 bytes of UTF-8)."""
    return text.encode()[:123].decode(errors="ignore")


def session_tag(session_key: str) -> str:
    """A stand-in for a session key in events: sessions are never sent as they are."""
    return hashlib.sha256(f"panel.session:{session_key}".encode()).hexdigest()[:32]


def current_user(user_id: int, session_key: str | None) -> Any | None:
    """The user if their socket may stay open: still active and, for a socket opened
    with a session, still logged in through that very session: not logged out, not
    revoked, not expired (idle or past its lifetime: panel.identity.policy), and password
    unchanged since (the checks of django.contrib.auth.get_user, read only: this never
    changes the session)."""
    user = auth.get_user_model()._default_manager.filter(pk=user_id, is_active=True).first()
    if user is None or session_key is None:
        return user
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key).load()
    if str(session.get(auth.SESSION_KEY)) != str(user_id) or expired(session):
        return None
    if session.get(auth.BACKEND_SESSION_KEY) not in settings.AUTHENTICATION_BACKENDS:
        return None
    stored = session.get(auth.HASH_SESSION_KEY) or ""
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    if not any(constant_time_compare(stored, h) for h in hashes):
        return None
    return user


@receiver(user_logged_out, dispatch_uid="panel.socket_access.logged_out")
def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and session_key:
        events.access_changed(user.pk, ended_session=session_tag(session_key))


class AccessWatch:
    """Mixin for websocket consumers: closes the socket once its user loses access.

    Subclasses implement still_allowed() (sync, in a thread: it may query the
    database) and may override access_lost() to tell the user in their own format.
    """

    _access_user_id: int | None = None
    _access_session: str | None = None
    _access_task: asyncio.Task[None] | None = None
    _access_closed = False

    def still_allowed(self, user: Any) -> tuple[int, str] | None:  # pragma: no cover
        """None while user may keep the socket; else (close code, what to tell them)."""
        raise NotImplementedError

    async def access_lost(self, code: int, message: str) -> None:
        await self.close(code=code, reason=close_reason(message))  # type: ignore[attr-defined]

    async def watch_access(self, user_id: int) -> None:
        """Start following the access of user_id (the user the socket was opened for)."""
        self._access_user_id = user_id
        scope = self.scope  # type: ignore[attr-defined]
        scope_user = scope.get("user")
        session = scope.get("session")
        # A socket that came with the user's login session lives only as long as that
        # session; one opened with a console ticket alone (an API client) lives as long
        # as the account and its rights.
        if getattr(scope_user, "is_authenticated", False) and scope_user.pk == user_id:
            self._access_session = getattr(session, "session_key", None)
        await self.channel_layer.group_add(events.user_group(user_id), self.channel_name)  # type: ignore[attr-defined]
        self._access_task = background(self._recheck_every())

    async def stop_watching(self) -> None:
        """In disconnect(): stop the checks and leave the user's group."""
        task, self._access_task = self._access_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if self._access_user_id is not None:
            with contextlib.suppress(Exception):  # Redis away: the group entry expires
                await self.channel_layer.group_discard(  # type: ignore[attr-defined]
                    events.user_group(self._access_user_id),
                    self.channel_name,  # type: ignore[attr-defined]
                )

    async def access_changed(self, event: events.AccessChanged) -> None:
        """Handler of the user group's event."""
        if self._access_session is not None and event.get("ended_session") == session_tag(
            self._access_session
        ):
            await self._lose(*LOGGED_OUT)
            return
        await self.recheck_access()

    async def recheck_access(self) -> bool:
        """Check now; close the socket and return False if its user lost access."""
        if self._access_closed or self._access_user_id is None:
            return not self._access_closed
        try:
            verdict = await database_sync_to_async(self._verdict)()
        except DatabaseError as exc:
            # Not a verdict: the next check tries again.
            log.warning("could not check the access of a websocket's user: %s", exc)
            return True
        except Exception:
            # An access that cannot be vouched for ends the socket.
            log.exception("checking the access of a websocket's user failed")
            await self._lose(1011, "The panel could not check your access: open the page again.")
            return False
        if verdict is None:
            return True
        await self._lose(*verdict)
        return False

    def _verdict(self) -> tuple[int, str] | None:
        assert self._access_user_id is not None
        user = current_user(self._access_user_id, self._access_session)
        if user is None:
            return LOGGED_OUT
        return self.still_allowed(forget(user))

    async def _lose(self, code: int, message: str) -> None:
        if self._access_closed:
            return
        self._access_closed = True
        with contextlib.suppress(OSError):  # the client is gone already
            await self.access_lost(code, message)

    async def _recheck_every(self) -> None:
        while not self._access_closed:
            await asyncio.sleep(settings.PANEL_WS_RECHECK_SECONDS)
            if not await self.recheck_access():
                return
