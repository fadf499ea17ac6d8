"""Busy pages kept rendered in Redis until anything they show changes.

The VM list, the VM API list and the dashboard are what many people keep open
and reload. Each is stored per user and URL under the current *generation*, a
counter that every change bumps: a row of the panel's models saved or deleted,
and every live event except stats samples (the events are how open pages learn
of changes, so whatever they report also ends a cached page). A cached page is
therefore never older than the last change. The usage figures these pages show
come from the stats collector without an event: entries expire after one
collection interval, so those figures are at most one interval older than the
page would render them.

Pages embed the request's CSRF token. It is swapped for a placeholder when a
page is stored and for the current request's token when it is served, so one
rendering serves every session of that user.

Redis being down only means no caching: every failure falls back to rendering.
One Redis connection pool serves the whole process (Django's cache would open a
connection per request under ASGI).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import _unmask_cipher_token, get_token

log = logging.getLogger(__name__)

GENERATION_KEY = "generation"
FILL_WAIT = 0.25  # seconds a request waits for another one rendering the same page
CSRF_PLACEHOLDER = b"\x00csrf\x00"
# Rows whose writes never show on the cached pages: sessions, Celery's bookkeeping.
QUIET_APPS = {"sessions", "django_celery_results", "django_celery_beat", "contenttypes", "admin"}
# Columns no cached page shows (a login writes the user's last_login).
QUIET_FIELDS = {"last_login"}
TOKEN = re.compile(rb"\b[A-Za-z0-9]{64}\b")


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


def connect_signals() -> None:
    post_save.connect(_on_write, dispatch_uid="pagecache-save")
    post_delete.connect(_on_write, dispatch_uid="pagecache-delete")
    m2m_changed.connect(_on_write, dispatch_uid="pagecache-m2m")


def _page_key(request: HttpRequest, gen: int) -> str:
    variant = "|".join(request.headers.get(h, "") for h in ("Accept", "HX-Request", "HX-Target"))
    raw = f"{request.user.pk}|{request.get_full_path()}|{variant}|{gen}"
    return _key("page:" + hashlib.sha256(raw.encode()).hexdigest())


def _has_messages(request: HttpRequest) -> bool:
    if "messages" in request.COOKIES:
        return True
    session = getattr(request, "session", None)
    return bool(session is not None and session.get("_messages"))


def _cacheable(request: HttpRequest) -> bool:
    return request.method == "GET" and request.user.is_authenticated and not _has_messages(request)


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


def _serve(request: HttpRequest, entry: tuple[bytes, str]) -> HttpResponse:
    content, content_type = entry
    if CSRF_PLACEHOLDER in content:
        content = content.replace(CSRF_PLACEHOLDER, get_token(request).encode())
    return HttpResponse(content, content_type=content_type)


def _get(key: str) -> Any:
    try:
        raw = _redis().get(key)
    except redis.RedisError:
        return None
    return pickle.loads(raw) if raw is not None else None  # noqa: S301 - written by _put only


def _put(key: str, value: Any, path: str) -> None:
    try:
        _redis().set(key, pickle.dumps(value), ex=ttl())
    except redis.RedisError:
        log.warning("page cache: could not store %s", path)


def cached_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Serve view's 200 answers from the cache while nothing changed (see the module doc)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        gen = generation() if _cacheable(request) else None
        if gen is None:
            return view(request, *args, **kwargs)
        key = _page_key(request, gen)
        if (entry := _get(key)) is not None:
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
        response = view(request, *args, **kwargs)
        if (
            response.status_code == 200
            and not response.streaming
            and not response.cookies
            and generation() == gen
        ):
            content = _strip_token(request, response.content)
            if content is not None:
                _put(key, (content, response["Content-Type"]), request.path)
        return response

    return wrapper


def cached_data(request: Any, build: Callable[[], Any]) -> Any:
    """An API list's data for request (a DRF request) from the cache, or build() it."""
    gen = generation() if request.method == "GET" and request.user.is_authenticated else None
    if gen is None:
        return build()
    raw = f"{request.user.pk}|{request._request.get_full_path()}|{gen}"
    key = _key("data:" + hashlib.sha256(raw.encode()).hexdigest())
    if (data := _get(key)) is not None:
        return data
    data = build()
    if generation() == gen:
        _put(key, data, request.path)
    return data
