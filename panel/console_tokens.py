"""websockify's token plugin: a console ticket maps to one VNC endpoint, once.

Django stores `panel:console:<ticket>` (JSON: type, user, vm, host, port) in
Redis with a short expiry after checking the user's right to that VM;
websockify calls lookup() for each new connection and the ticket is deleted
as it is read, so it works once. Anything else (unknown, used, expired, or a
serial ticket) reaches nothing.
"""

from __future__ import annotations

import json

import redis

KEY_PREFIX = "panel:console:"


class TicketTokens:
    """Loaded by websockify: --token-plugin panel.console_tokens.TicketTokens --token-source REDIS_URL."""

    def __init__(self, src: str) -> None:
        self._redis = redis.Redis.from_url(src or "redis://127.0.0.1:6379/0")

    def lookup(self, token: str) -> tuple[str, str] | None:
        if not token or len(token) > 100:
            return None
        raw = self._redis.getdel(KEY_PREFIX + token)
        if not raw:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        if data.get("type") != "vnc" or not data.get("host") or not data.get("port"):
            return None
        if data.get("view_only"):
            return None  # viewers use the panel's input-filtering proxy only
        return str(data["host"]), str(int(data["port"]))
