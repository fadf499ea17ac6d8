"""Login throttling: a username from one address, and one address across usernames.

Two counters per client address, in the shared Redis so every web server process
sees the same counts: failures for one username from that address
(PANEL_LOGIN_FAILURES) and failures from that address whatever the username
(PANEL_LOGIN_ADDRESS_FAILURES), each forgotten PANEL_LOGIN_WINDOW_SECONDS after
its last failure. Used by the login page and the API token endpoint.

An attempt takes its place in both counters in one atomic step (a Lua script)
before the password is checked, so concurrent guesses cannot all read the same
count and slip under the limit; a login that succeeds gives its place back and
clears the username's count. The address is the one the web server reports: behind
a reverse proxy, set PANEL_TRUSTED_PROXIES (panel.asgi) so it is the client's.

While Redis is away each process counts in its own memory instead: logins keep
working and stay throttled, per process, until Redis is back.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.core.cache import cache
from redis import RedisError

from panel import redis_client

log = logging.getLogger(__name__)

# KEYS: the username+address counter, the address counter.
# ARGV: window seconds, username limit, address limit.
# Returns {0, 0} when the attempt may go on (and is counted), else {1 for the username or
# 2 for the address, seconds until that counter is forgotten}.
_ATTEMPT = """
local window = tonumber(ARGV[1])
local limits = {tonumber(ARGV[2]), tonumber(ARGV[3])}
for i = 1, 2 do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= limits[i] then
    local ttl = redis.call('TTL', KEYS[i])
    if ttl < 0 then
      redis.call('EXPIRE', KEYS[i], window)
      ttl = window
    end
    return {i, ttl}
  end
end
for i = 1, 2 do
  redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], window)
end
return {0, 0}
"""

# KEYS: the username+address counter, the address counter: the login succeeded.
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
  redis.call('DECR', KEYS[2])
end
return 0
"""


@dataclass(frozen=True)
class Throttled:
    """Why a login attempt is refused, and for how long."""

    seconds: int
    per_address: bool

    @property
    def message(self) -> str:
        minutes = max(1, math.ceil(self.seconds / 60))
        wait = f"Try again in {minutes} minute{'s' if minutes != 1 else ''}"
        if self.per_address:
            return (
                f"Too many failed logins from your address. {wait}, or ask an admin "
                "if you share this address with others."
            )
        return (
            f"Too many failed logins for this user from your address. {wait}, "
            "or ask an admin to reset your password."
        )


class _LocalCounts:
    """The counters in this process's memory, for while Redis cannot be reached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, float]] = {}

    def _get(self, key: str, now: float) -> tuple[int, float]:
        count, until = self._counts.get(key, (0, 0.0))
        return (count, until) if until > now else (0, 0.0)

    def attempt(self, keys: tuple[str, str], window: int, limits: tuple[int, int]) -> list[int]:
        with self._lock:
            now = time.time()
            for i, (key, limit) in enumerate(zip(keys, limits, strict=True), start=1):
                count, until = self._get(key, now)
                if count >= limit:
                    return [i, math.ceil(until - now)]
            for key in keys:
                count, _ = self._get(key, now)
                self._counts[key] = (count + 1, now + window)
            return [0, 0]

    def succeeded(self, keys: tuple[str, str]) -> None:
        with self._lock:
            now = time.time()
            self._counts.pop(keys[0], None)
            count, until = self._get(keys[1], now)
            if count > 0:
                self._counts[keys[1]] = (count - 1, until)

    def forget(self, keys: tuple[str, ...]) -> None:
        with self._lock:
            for key in keys:
                self._counts.pop(key, None)


_local = _LocalCounts()


def _redis() -> redis.Redis:
    # Short timeouts: a Redis that hangs must not hang the login page.
    return redis_client.client(timeout=3)


def _keys(username: str, ip: str | None) -> tuple[str, str]:
    """The username+address counter's key and the address counter's, under the cache's
    prefix (each test run and each panel has its own)."""
    address = ip or "-"
    user = hashlib.sha256(f"{username.strip().lower()}|{address}".encode()).hexdigest()[:32]
    where = hashlib.sha256(address.encode()).hexdigest()[:32]
    return cache.make_key(f"login-failures:{user}"), cache.make_key(f"login-address:{where}")


def attempt(username: str, ip: str | None) -> Throttled | None:
    """Count a login attempt for username from ip before its password is checked; None to
    go on, else why it is refused (and then it is not counted)."""
    keys = _keys(username, ip)
    window = settings.PANEL_LOGIN_WINDOW_SECONDS
    limits = (settings.PANEL_LOGIN_FAILURES, settings.PANEL_LOGIN_ADDRESS_FAILURES)
    try:
        which, seconds = _redis().eval(_ATTEMPT, 2, *keys, window, *limits)
    except RedisError as exc:
        log.warning("login throttle: Redis unreachable (%s); counting in this process", exc)
        which, seconds = _local.attempt(keys, window, limits)
    if not which:
        return None
    return Throttled(seconds=max(1, int(seconds)), per_address=int(which) == 2)


def succeeded(username: str, ip: str | None) -> None:
    """The attempt logged in: clear the username's failures, give the address its place back."""
    keys = _keys(username, ip)
    try:
        _redis().eval(_SUCCEEDED, 2, *keys)
    except RedisError:
        _local.succeeded(keys)


def reset(username: str, ip: str | None) -> None:
    """Forget the failures counted for username from ip, and for ip as a whole."""
    keys = _keys(username, ip)
    try:
        _redis().delete(*keys)
    except RedisError:
        pass
    _local.forget(keys)
