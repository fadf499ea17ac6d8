"""websockify's token plugin: a console ticket maps to one VNC endpoint, once.

Django stores `panel:console:<ticket>` -> "host:port" in Redis with a short
expiry after checking the user's right to that VM; websockify calls lookup()
for each new connection and the ticket is deleted as it is read, so it works
once. Anything else (an unknown, used or expired ticket) reaches nothing.
"""

from __future__ import annotations

import redis

KEY_PREFIX = "panel:console:"


class TicketTokens:
    """Loaded by websockify with --token-plugin panel.console_tokens.TicketTokens --token-source REDIS_URL."""

    def __init__(self, src: str) -> None:
        self._redis = redis.Redis.from_url(src or "redis://127.0.0.1:6379/0")

    def lookup(self, token: str) -> tuple[str, str] | None:
        value = self._redis.getdel(KEY_PREFIX + token)
        if not value:
            return None
        host, _, port = value.decode().rpartition(":")
        if not host or not port.isdigit():
            return None
        return host, port
