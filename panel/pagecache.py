"""Busy pages kept rendered in Redis until anything they show changes.

The VM list, the VM API list and the dashboard are what many people keep open
and reload. Each is stored per user and URL under the current *generation*, a
counter that every change bumps: a row of the panel's models saved or deleted
(sessions included: a login or logout ends what its session was served), and
every live event except stats samples (the events are how open pages learn of
changes, so whatever they report also ends a cached page). A cached page is
therefore never older than the last change. The usage figures these pages show
come from the stats collector without an event: entries expire after one
collection interval, so those figures are at most one interval older than the
page would render them.

An entry is the whole answer as it left the server (body and headers, after
every middleware), stored by `PageCacheMiddleware`. Pages embed the request's
CSRF token. It is swapped for a placeholder when a page is stored and for a
fresh mask of the asking browser's CSRF secret when it is served, so one
rendering serves every session of that user.

Answers are served from two places. `FrontDoor`, in front of Django in the
ASGI application, answers a GET for a stored page without entering Django at
all: it knows the asker from a Redis note, written when Django itself last
served that session or API token a cached page in the current generation (so
Django checked the login, the session's expiry and the password hash then), and
gone with the next change, sessions' own included. Anything it cannot tell for
sure (another URL, no such note, flash messages waiting, no CSRF cookie, a
duplicate header, Redis away) goes on to Django, where `cached_page` and
`cached_response` serve the same entries from inside the view. Two things it does
not do as Django would: a session that reaches its expiry date is answered for at
most one more entry's life (notes live that long), and the CSRF cookie's expiry is
not renewed (Django renews it on the next page it renders).

Redis being down only means no caching: every failure falls back to rendering.
One Redis connection pool serves the whole process (Django's cache would open a
connection per request under ASGI).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import pickle
import re
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import redis
import redis.asyncio
from django.conf import settings
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.http import HttpRequest, HttpResponse
from django.http.cookie import parse_cookie
from django.middleware.csrf import (
    CSRF_ALLOWED_CHARS,
    CSRF_SECRET_LENGTH,
    _mask_cipher_secret,
    _unmask_cipher_token,
    get_token,
)

log = logging.getLogger(__name__)

GENERATION_KEY = "generation"
FILL_WAIT = 0.25  # seconds a request waits for another one rendering the same page
CSRF_PLACEHOLDER = b"\x00csrf\x00"
# Rows whose writes never show on the cached pages: sessions (their writes end only their
# own FrontDoor note, see _on_session_write), Celery's bookkeeping.
QUIET_APPS = {"sessions", "django_celery_results", "django_celery_beat", "contenttypes", "admin"}
GONE = b"gone"  # a FrontDoor note that no note may replace until it expires
# Columns no cached page shows (a login writes the user's last_login).
QUIET_FIELDS = {"last_login"}
TOKEN = re.compile(rb"\b[A-Za-z0-9]{64}\b")
# Request headers an answer may depend on besides the URL and the asker: part of the key.
VARIANT_HEADERS = ("host", "accept", "hx-request", "hx-target")
# The URL paths FrontDoor looks up: those this process stored or served (bounded).
MAX_PATHS = 1000
_paths: set[str] = set()

Asker = tuple[str, str | None]  # ("session" or "token", its secret when known)

_client: redis.Redis | None = None
_client_lock = threading.Lock()


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                _client = redis.Redis.from_url(
                    settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=1
                )
    return _client


def _key(name: str) -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', 'panel')}:pagecache:{name}"


def ttl() -> int:
    """Seconds an entry lives: one stats collection interval (PANEL_STATS_INTERVAL)."""
    return int(getattr(settings, "PANEL_STATS_INTERVAL", os.environ.get("PANEL_STATS_INTERVAL", 5)))


def generation() -> int | None:
    """The current generation, or None when Redis cannot be reached."""
    try:
        value = _redis().get(_key(GENERATION_KEY))
        if value is None:
            # Never set, or lost with Redis: start from the clock, past any old entry.
            _redis().set(_key(GENERATION_KEY), int(time.time()), nx=True)
            value = _redis().get(_key(GENERATION_KEY))
        return int(value) if value is not None else None
    except redis.RedisError:  # no Redis, no caching
        return None


def bump() -> None:
    """Make every cached page stale."""
    try:
        _redis().incr(_key(GENERATION_KEY))
    except redis.RedisError:  # Redis down: nothing can be served from it either
        log.warning("page cache: could not bump the generation")


def _on_write(sender: type, update_fields: Any = None, **kwargs: Any) -> None:
    if update_fields is not None and set(update_fields) <= QUIET_FIELDS:
        return
    # Now, for whoever reads next in this transaction, and again after the commit: a
    # page rendered from the old rows meanwhile is not stored (the generation moved
    # during its rendering), and one rendered later sees the new rows.
    if sender._meta.app_label not in QUIET_APPS:
        bump()
        transaction.on_commit(bump)


def _end_note(session_key: str) -> None:
    try:
        _redis().set(_note_key("session", session_key), GONE, ex=ttl())
    except redis.RedisError:
        log.warning("page cache: could not end a session's note")


def _on_session_write(sender: type, instance: Any, **kwargs: Any) -> None:
    """A session logged out, logged in anew or given a flash message: FrontDoor stops
    answering it at once and takes no new note of it for one entry's life, so a page
    rendered before the change cannot note it again (Django answers it meanwhile)."""
    _end_note(instance.session_key)
    transaction.on_commit(lambda: _end_note(instance.session_key))


def connect_signals() -> None:
    from django.contrib.sessions.models import Session

    post_save.connect(_on_write, dispatch_uid="pagecache-save")
    post_delete.connect(_on_write, dispatch_uid="pagecache-delete")
    m2m_changed.connect(_on_write, dispatch_uid="pagecache-m2m")
    post_save.connect(_on_session_write, sender=Session, dispatch_uid="pagecache-session-save")
    post_delete.connect(_on_session_write, sender=Session, dispatch_uid="pagecache-session-del")


# --- keys: the same from a Django request and from an ASGI scope --------------------------


def _where(scheme: str, path: str, query: str, variant: list[str]) -> str:
    """A digest of what the answer depends on besides the asker: URL and variant headers."""
    raw = json.dumps([scheme, path, query, *variant])
    return hashlib.sha256(raw.encode()).hexdigest()


def _page_key(kind: str, user_pk: object, gen: object, where: str) -> str:
    return _key(f"page:{kind}:{user_pk}:{gen}:{where}")


def _note_key(kind: str, secret: str) -> str:
    return _key("who:" + hashlib.sha256(f"{kind}\x00{secret}".encode()).hexdigest())


def _request_where(request: HttpRequest) -> str:
    meta = request.META
    variant = [meta.get("HTTP_" + h.upper().replace("-", "_"), "") for h in VARIANT_HEADERS]
    return _where(request.scheme, request.path, meta.get("QUERY_STRING", ""), variant)


def _asker(request: HttpRequest, api_auth: Any) -> Asker:
    """How the request logged in, and the secret it showed: an API token (DRF's
    TokenAuthentication gives its row as request.auth), else the session cookie."""
    if api_auth is not None:
        key = getattr(api_auth, "key", None)
        return ("token", key if isinstance(key, str) else None)
    cookie = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    session = getattr(request, "session", None)
    same = cookie and session is not None and session.session_key == cookie
    return ("session", cookie if same else None)


# --- serving from inside Django --------------------------------------------------------


def _has_messages(request: HttpRequest) -> bool:
    if "messages" in request.COOKIES:
        return True
    session = getattr(request, "session", None)
    return bool(session is not None and session.get("_messages"))


def _strip_token(request: HttpRequest, content: bytes) -> bytes | None:
    """content with this request's CSRF tokens replaced by the placeholder; None if unsure."""
    secret = request.META.get("CSRF_COOKIE")  # set by the rendering if it used a token
    if CSRF_PLACEHOLDER in content:
        return None
    if not secret:
        return content

    def swap(match: re.Match[bytes]) -> bytes:
        token = match.group(0)
        return CSRF_PLACEHOLDER if _unmask_cipher_token(token.decode()) == secret else token

    return TOKEN.sub(swap, content)


def _headers_of(headers: list[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def _serve(request: HttpRequest, entry: tuple[bytes, list[tuple[str, str]]]) -> HttpResponse:
    content, headers = entry
    if CSRF_PLACEHOLDER in content:
        content = content.replace(CSRF_PLACEHOLDER, get_token(request).encode())
    return HttpResponse(content, content_type=_headers_of(headers).get("content-type"))


def _get(key: str) -> Any:
    try:
        raw = _redis().get(key)
    except redis.RedisError:
        return None
    return pickle.loads(raw) if raw is not None else None  # noqa: S301 - written by _store only


def _write_if_current(gen: int, values: list[tuple[str, bytes | str, int]]) -> None:
    """Set each (key, value, seconds) while the generation is still gen, except notes that
    ended: a change after the page was rendered (a logout included) keeps them out."""
    if not values:
        return
    keys = [_key(GENERATION_KEY), *(key for key, _value, _seconds in values)]
    try:
        with _redis().pipeline() as pipe:
            pipe.watch(*keys)
            current = pipe.mget(keys)
            if current[0] != str(gen).encode():
                return
            pipe.multi()
            for (key, value, seconds), now in zip(values, current[1:], strict=True):
                if now != GONE:
                    pipe.set(key, value, ex=max(1, seconds))
            pipe.execute()
    except redis.WatchError:
        return
    except redis.RedisError:
        log.warning("page cache: could not store an entry")


def _note(asker: Asker, user_pk: object, gen: int) -> list[tuple[str, bytes | str, int]]:
    """The FrontDoor's note that asker is user_pk in generation gen (Django has just
    checked that login), or nothing when the asker's secret is unknown."""
    kind, secret = asker
    if not secret:
        return []
    return [(_note_key(kind, secret), f"{gen}:{user_pk}", ttl())]


def _known_path(path: str) -> None:
    if len(_paths) < MAX_PATHS:
        _paths.add(path)


def _cached(
    request: HttpRequest, user: Any, asker: Asker, build: Callable[[], HttpResponse]
) -> HttpResponse:
    if request.method != "GET" or not user.is_authenticated or _has_messages(request):
        return build()
    gen = generation()
    if gen is None:
        return build()
    key = _page_key(asker[0], user.pk, gen, _request_where(request))
    if (entry := _get(key)) is not None:
        _write_if_current(gen, _note(asker, user.pk, gen))
        _known_path(request.path)
        return _serve(request, entry)
    # One request renders; the others asking for the same page at that moment
    # wait briefly for it instead of all rendering it at once.
    try:
        filling = not _redis().set(key + ":fill", 1, nx=True, ex=5)
    except redis.RedisError:
        filling = False
    if filling:
        deadline = time.monotonic() + FILL_WAIT
        while time.monotonic() < deadline:
            time.sleep(0.01)
            if (entry := _get(key)) is not None:
                return _serve(request, entry)
    response = build()
    # Stored by PageCacheMiddleware once every middleware has added its headers.
    response._pagecache = (key, gen, _note(asker, user.pk, gen))  # type: ignore[attr-defined]
    return response


def cached_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Serve view's 200 answers from the cache while nothing changed (see the module doc)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _cached(
            request, request.user, _asker(request, None), lambda: view(request, *args, **kwargs)
        )

    return wrapper


def cached_response(request: Any, build: Callable[[], HttpResponse]) -> HttpResponse:
    """An API list's answer for request (a DRF request) from the cache, or build() it."""
    return _cached(request._request, request.user, _asker(request._request, request.auth), build)


def _store(request: HttpRequest, response: HttpResponse) -> None:
    key, gen, note = response._pagecache  # type: ignore[attr-defined]
    if (
        response.status_code != 200
        or response.streaming
        # A cookie of its own (session, messages) makes an answer this request's only;
        # a new CSRF cookie does not, its tokens are swapped.
        or set(response.cookies) - {settings.CSRF_COOKIE_NAME}
        # A style nonce is for one answer only.
        or getattr(request, "_csp_style_nonce", None)
    ):
        return
    content = _strip_token(request, response.content)
    if content is None:
        return
    headers = [(k, v) for k, v in response.items() if k.lower() != "content-length"]
    _write_if_current(gen, [(key, pickle.dumps((content, headers)), ttl()), *note])
    _known_path(request.path)


class PageCacheMiddleware:
    """Stores the answers cached_page and cached_response asked for, as they leave: body
    and headers after every other middleware (so first in MIDDLEWARE)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if hasattr(response, "_pagecache"):
            _store(request, response)
        return response


# --- serving in front of Django --------------------------------------------------------

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class FrontDoor:
    """ASGI middleware: answers a GET for a stored page from Redis, without Django, when
    it can tell for sure who asks and that Django would answer the same (module doc);
    everything else goes on to app."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis]
        self._clients = weakref.WeakKeyDictionary()
        scheme_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
        self._proxy_scheme: tuple[str, str] | None = None
        if scheme_header:
            name, value = scheme_header
            self._proxy_scheme = (name.removeprefix("HTTP_").lower().replace("_", "-"), value)
        self._watched = {
            "cookie",
            "authorization",
            *VARIANT_HEADERS,
            *([self._proxy_scheme[0]] if self._proxy_scheme else []),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"] in _paths
            and not scope.get("root_path")
            and not settings.CSRF_USE_SESSIONS
        ):
            answer = await self._answer(scope)
            if answer is not None:
                content, headers = answer
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            *((k.encode("latin1"), v.encode("latin1")) for k, v in headers),
                            (b"content-length", str(len(content)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": content})
                return
        await self.app(scope, receive, send)

    def _redis(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = redis.asyncio.Redis.from_url(
                settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1
            )
            self._clients[loop] = client
        return client

    def _headers(self, scope: Scope) -> dict[str, str] | None:
        """The request headers the answer depends on, as Django would read them; None when
        one of them comes twice (Django would join them)."""
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin1").lower()
            if name in self._watched:
                if name in headers:
                    return None
                headers[name] = raw_value.decode("latin1")
        return headers

    def _scheme(self, scope: Scope, headers: dict[str, str]) -> str:
        if self._proxy_scheme is not None:
            name, secure = self._proxy_scheme
            if (value := headers.get(name)) is not None:
                return "https" if value.split(",", 1)[0].strip() == secure else "http"
        return scope.get("scheme") or "http"

    async def _answer(self, scope: Scope) -> tuple[bytes, list[tuple[str, str]]] | None:
        headers = self._headers(scope)
        if headers is None:
            return None
        cookies = parse_cookie(headers.get("cookie", ""))
        if "messages" in cookies:
            return None
        if (authorization := headers.get("authorization")) is not None:
            parts = authorization.encode("latin1").split()
            if len(parts) != 2 or parts[0].lower() != b"token":
                return None
            try:
                kind, secret = "token", parts[1].decode()
            except UnicodeDecodeError:
                return None
        elif sid := cookies.get(settings.SESSION_COOKIE_NAME):
            kind, secret = "session", sid
        else:
            return None
        try:
            query = scope.get("query_string", b"").decode()
        except UnicodeDecodeError:
            return None
        variant = [headers.get(h, "") for h in VARIANT_HEADERS]
        where = _where(self._scheme(scope, headers), scope["path"], query, variant)
        try:
            client = self._redis()
            gen, note = await client.mget(_key(GENERATION_KEY), _note_key(kind, secret))
            if gen is None or note is None:
                return None
            note_gen, _, user_pk = note.decode().partition(":")
            if note_gen != gen.decode():
                return None
            raw = await client.get(_page_key(kind, user_pk, note_gen, where))
        except (redis.RedisError, OSError):  # timeouts included
            return None
        if raw is None:
            return None
        content, stored = pickle.loads(raw)  # noqa: S301 - written by _store only
        if CSRF_PLACEHOLDER in content:
            secret = cookies.get(settings.CSRF_COOKIE_NAME, "")
            if len(secret) != CSRF_SECRET_LENGTH or set(secret) - set(CSRF_ALLOWED_CHARS):
                return None  # Django would set a new CSRF cookie
            content = content.replace(CSRF_PLACEHOLDER, _mask_cipher_secret(secret).encode())
        return content, stored
