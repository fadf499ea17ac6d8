"""Login throttling: after N failures for one username from one address, wait.

Counted in the shared cache (Redis), so every web server process sees the
same count. Used by the login page and the API token endpoint. While Redis is
away, each process counts in its own memory instead: logins keep working and
stay throttled, per process, until Redis is back.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache
from redis import RedisError

log = logging.getLogger(__name__)
_fallback = LocMemCache("login-throttle-fallback", {})


def _get(key: str) -> dict | None:
    try:
        return cache.get(key)
    except RedisError as exc:
        log.warning("login throttle: Redis unreachable (%s); counting in this process", exc)
        return _fallback.get(key)


def _set(key: str, value: dict, timeout: int) -> None:
    try:
        cache.set(key, value, timeout)
    except RedisError:
        _fallback.set(key, value, timeout)


def _delete(key: str) -> None:
    try:
        cache.delete(key)
    except RedisError:
        pass
    _fallback.delete(key)


def _key(username: str, ip: str | None) -> str:
    raw = f"{username.strip().lower()}|{ip or '-'}".encode()
    return "login-failures:" + hashlib.sha256(raw).hexdigest()[:32]


def blocked_for(username: str, ip: str | None) -> int:
    """Seconds until this username may try again from this address (0: not blocked)."""
    entry = _get(_key(username, ip))
    if not entry or entry["count"] < settings.PANEL_LOGIN_FAILURES:
        return 0
    return max(0, math.ceil(entry["until"] - time.time()))


def record_failure(username: str, ip: str | None) -> None:
    key = _key(username, ip)
    window = settings.PANEL_LOGIN_WINDOW_SECONDS
    entry = _get(key) or {"count": 0, "until": 0}
    entry = {"count": entry["count"] + 1, "until": time.time() + window}
    _set(key, entry, window)


def reset(username: str, ip: str | None) -> None:
    _delete(_key(username, ip))


def message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return (
        f"Too many failed logins for this user from your address. Try again in {minutes} "
        f"minute{'s' if minutes != 1 else ''}, or ask an admin to reset your password."
    )
