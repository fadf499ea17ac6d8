"""Console tickets as Redis holds them, and websockify's token plugin.

Django stores `panel:console:<ticket>` in Redis with a short expiry after checking
the user's right to that VM. The value is signed with the panel's secret key
(django.core.signing, with the ticket itself inside), so Redis carries the data but
not the authority: a value written there by anyone else, or moved to another key,
is refused. Whoever takes a ticket deletes it as they read it (GETDEL), so it works
once: the serial and view-only VNC websockets through vms.consoles.take_ticket,
websockify through TicketTokens.lookup for each new connection. Anything else
(unknown, used, expired, unsigned, or a serial or view-only ticket) reaches nothing.

websockify runs this module in its own process with the panel's settings (the
same secret key); DJANGO_SETTINGS_MODULE defaults to panel.settings.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import redis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.settings")

from django.core import signing  # noqa: E402 - after the settings module is named

KEY_PREFIX = "panel:console:"
TICKET_SECONDS = 30
_SALT = "panel.console-ticket"

log = logging.getLogger(__name__)


def sign_ticket(ticket: str, data: dict[str, Any]) -> str:
    """The value stored in Redis for ticket: its data, bound to it, signed."""
    return signing.dumps({**data, "ticket": ticket}, salt=_SALT)


def verify_ticket(ticket: str, raw: bytes | str | None) -> dict[str, Any] | None:
    """The data of a value read from Redis for ticket, or None unless the panel signed
    it for this very ticket within TICKET_SECONDS."""
    if not raw:
        return None
    value = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    try:
        data = signing.loads(value, salt=_SALT, max_age=TICKET_SECONDS)
    except signing.BadSignature:
        # Not the panel's: someone with access to Redis wrote it.
        log.warning("refused a console ticket the panel did not sign")
        return None
    if not isinstance(data, dict) or data.get("ticket") != ticket:
        log.warning("refused a console ticket signed for another ticket")
        return None
    return data


class TicketTokens:
    """Loaded by websockify: --token-plugin panel.console_tokens.TicketTokens
    --token-source env:REDIS_URL (or the Redis URL itself)."""

    def __init__(self, src: str) -> None:
        # "env:REDIS_URL": the URL from that environment variable, so the Redis password
        # it carries is not on websockify's command line for `ps` to show.
        if src.startswith("env:"):
            src = os.environ.get(src.removeprefix("env:"), "")
        self._redis = redis.Redis.from_url(src or "redis://127.0.0.1:6379/0")

    def lookup(self, token: str) -> tuple[str, str] | None:
        if not token or len(token) > 100:
            return None
        data = verify_ticket(token, self._redis.getdel(KEY_PREFIX + token))
        if data is None:
            return None
        if data.get("type") != "vnc" or not data.get("host") or not data.get("port"):
            return None
        if data.get("view_only"):
            return None  # viewers use the panel's view-only proxy only
        return str(data["host"]), str(int(data["port"]))
