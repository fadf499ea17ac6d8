"""Login sessions: idle and absolute expiry, the list of a user's sessions, revocation.

A login session lives in Django's session store; a ``UserSession`` row beside it says
whose it is, when it started, when it was last used and from where, so a user can see
their sessions and end any of them. The session itself carries three times (seconds
since the epoch): the login, the last request (written at most once a minute, to keep
requests cheap) and the last time the user proved who they are (the login or a
re-authentication, panel.identity.reauth).

A session ends:
- at logout (Django's signal), or when revoked here: its row and its stored session
  go at once, so the cookie stops working, and its open websockets close (an
  ``access.changed`` event naming the session, panel.socket_access);
- after PANEL_SESSION_IDLE_SECONDS without a request, or PANEL_SESSION_MAX_SECONDS
  after the login: the next request finds it expired (panel.identity.middleware) and
  the websockets' periodic check closes them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone

from panel import audit, events
from panel.actors import Actor, client_ip
from panel.choices import Via
from panel.identity.policy import AUTH_AT, LOGIN_AT, SEEN_AT, Expired
from panel.models import UserSession
from panel.socket_access import current_user, session_tag

TOUCH_SECONDS = 60  # the last request's time is written at most this often


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _actor(request: HttpRequest, user: Any) -> Actor:
    via = Via.API if request.path_info.startswith("/api/") else Via.PAGE
    return Actor(user, client_ip(request), via)


def _store(session_key: str) -> Any:
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key)


def _record(request: HttpRequest, user: Any, now: float) -> None:
    """The session's row, made or brought up to date."""
    agent = request.META.get("HTTP_USER_AGENT", "")
    UserSession.objects.update_or_create(
        session_key=request.session.session_key,
        defaults={
            "user": user,
            "created": _when(request.session.get(LOGIN_AT, now)),
            "last_seen": _when(now),
            "address": client_ip(request),
            "user_agent": str(agent)[:300],
        },
    )


@receiver(user_logged_in, dispatch_uid="panel.identity.sessions.logged_in")
def _logged_in(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    now = time.time()
    request.session[LOGIN_AT] = request.session[SEEN_AT] = request.session[AUTH_AT] = now
    if request.session.session_key is None:
        request.session.save()
    _record(request, user, now)
    # How, when it was not the password form (single sign-on sets it on the user).
    via = getattr(user, "panel_login_via", "")
    audit.record(_actor(request, user), "login", user.username, detail=via)


@receiver(user_logged_out, dispatch_uid="panel.identity.sessions.logged_out")
def _logged_out(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    key = getattr(getattr(request, "session", None), "session_key", None)
    if key:
        UserSession.objects.filter(session_key=key).delete()
    if user is not None and not getattr(request, "_panel_session_ended", False):
        audit.record(_actor(request, user), "logout", user.username)


def touch(request: HttpRequest, user: Any, now: float) -> None:
    """A request of a live session: note it (at most once a minute). A session from
    before these times were kept starts counting now."""
    session = request.session
    if session.get(LOGIN_AT) is None:
        session[LOGIN_AT] = session[SEEN_AT] = now
        _record(request, user, now)
        return
    if now - session.get(SEEN_AT, 0) < TOUCH_SECONDS:
        return
    session[SEEN_AT] = now
    if not UserSession.objects.filter(session_key=session.session_key).update(last_seen=_when(now)):
        _record(request, user, now)


def end_expired(request: HttpRequest, user: Any, why: Expired) -> None:
    """Log out a request's session that expired, saying why on the login page."""
    request._panel_session_ended = True  # type: ignore[attr-defined]
    audit.record(_actor(request, user), "session.expired", user.username, detail=why.reason)
    auth.logout(request)  # its row goes, its websockets close (panel.socket_access)


def rekeyed(old_key: str, new_key: str | None) -> None:
    """The session got a new key (a password change cycles it): its row follows."""
    if not new_key:
        return
    if UserSession.objects.filter(session_key=new_key).exists():
        # A new login in the same browser: the row of the session it replaced goes.
        UserSession.objects.filter(session_key=old_key).delete()
    else:
        UserSession.objects.filter(session_key=old_key).update(session_key=new_key)


def purge_expired(user: Any = None) -> int:
    """End the sessions (of user, or everyone's) past their idle or absolute limit; how
    many. The last request's time is kept to the minute, hence the slack."""
    now = timezone.now()
    idle = timedelta(seconds=settings.PANEL_SESSION_IDLE_SECONDS + TOUCH_SECONDS)
    lifetime = timedelta(seconds=settings.PANEL_SESSION_MAX_SECONDS)
    rows = UserSession.objects.filter(last_seen__lt=now - idle) | UserSession.objects.filter(
        created__lt=now - lifetime
    )
    if user is not None:
        rows = rows.filter(user=user)
    ended = 0
    for row in rows:
        _end(row)
        ended += 1
    return ended


def sessions_of(user: Any) -> list[UserSession]:
    """The user's live sessions, the last used first; rows whose session no longer
    works (expired, or logged in with a password changed since) go."""
    live = []
    for row in UserSession.objects.filter(user=user):
        if current_user(row.user_id, row.session_key) is None:
            _end(row)
        else:
            live.append(row)
    return live


def _end(row: UserSession) -> None:
    """Delete one session from the store and its row, and close its websockets."""
    _store(row.session_key).delete()
    UserSession.objects.filter(pk=row.pk).delete()
    events.access_changed(row.user_id, ended_session=session_tag(row.session_key))


def revoke(row: UserSession, *, actor: Actor) -> None:
    """End one session at once: its cookie stops working and its websockets close."""
    with transaction.atomic():
        _end(row)
        audit.record(
            actor,
            "session.revoked",
            row.user.username,
            detail=f"session #{row.pk} from {row.address or 'an unknown address'}",
        )


def revoke_all(user: Any, *, actor: Actor, keep: str | None = None) -> int:
    """End every session of user but the one whose key is keep; how many ended."""
    with transaction.atomic():
        rows = list(UserSession.objects.filter(user=user).exclude(session_key=keep or ""))
        for row in rows:
            _end(row)
        audit.record(
            actor,
            "sessions.revoked_all",
            user.username,
            detail=f"{len(rows)} session{'s' if len(rows) != 1 else ''}"
            + (", this one kept" if keep else ""),
        )
    return len(rows)


def end_all(user: Any) -> int:
    """End every session of user, quietly (the change that calls it is audited itself:
    disabling the account); how many there were."""
    rows = list(UserSession.objects.filter(user=user))
    for row in rows:
        _end(row)
    return len(rows)


_BROWSERS = (
    ("Edge", "Edg/"),
    ("Opera", "OPR/"),
    ("Firefox", "Firefox/"),
    ("Chrome", "Chrome/"),
    ("Safari", "Version/"),
    ("curl", "curl/"),
    ("Python", "python-requests/"),
)
_SYSTEMS = (
    ("Windows", "Windows"),
    ("Android", "Android"),
    ("iOS", "iPhone"),
    ("iPadOS", "iPad"),
    ("macOS", "Mac OS X"),
    ("Linux", "Linux"),
)


def short_agent(agent: str) -> str:
    """A browser's user agent cut to what a person recognises: "Firefox 133 on Linux"."""
    for name, token in _BROWSERS:
        if token in agent:
            version = agent.split(token, 1)[1].split(" ", 1)[0].split(".", 1)[0]
            system = next((s for s, t in _SYSTEMS if t in agent), "")
            return f"{name} {version}" + (f" on {system}" if system else "")
    return agent[:60] or "unknown"
