"""The panel's one way to reach its Redis for its own keys: console tickets, login
counters and the usage series.

Django's cache, the channel layer and Celery reach the same server through their own
settings (CACHES, CHANNEL_LAYERS, the broker URL). Here each process keeps one client
per timeout setting; a client's connection pool is shared by the process's threads, and
redis-py opens new connections in a forked child (Celery's prefork workers) instead of
sharing the parent's.
"""

from __future__ import annotations

import threading

import redis
from django.conf import settings

_clients: dict[float | None, redis.Redis] = {}
_lock = threading.Lock()


def client(timeout: float | None = None) -> redis.Redis:
    """This process's client of settings.REDIS_URL; with timeout, one whose connects and
    commands give up after that many seconds (for pages that must not hang on Redis)."""
    found = _clients.get(timeout)
    if found is not None:
        return found
    with _lock:
        if timeout not in _clients:
            options = (
                {}
                if timeout is None
                else {
                    "socket_connect_timeout": timeout,
                    "socket_timeout": timeout,
                }
            )
            _clients[timeout] = redis.Redis.from_url(settings.REDIS_URL, **options)
        return _clients[timeout]
