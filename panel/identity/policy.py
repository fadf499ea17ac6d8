"""The times a login session carries, and when it is too old to use.

Three times, in seconds since the epoch: the login, the last request (written at most
once a minute) and the last time the user proved who they are (the login or a
re-authentication). Read by the page middleware, the websockets' checks and
re-authentication alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

LOGIN_AT = "panel.login_at"
SEEN_AT = "panel.seen_at"
AUTH_AT = "panel.auth_at"


@dataclass(frozen=True)
class Expired:
    """Why a session ended on its own: "idle" or "absolute"."""

    reason: str

    @property
    def message(self) -> str:
        if self.reason == "idle":
            minutes = max(1, settings.PANEL_SESSION_IDLE_SECONDS // 60)
            return (
                f"Your session expired after {minutes} minute{'s' if minutes != 1 else ''} "
                "without activity; sign in again."
            )
        hours = settings.PANEL_SESSION_MAX_SECONDS / 3600
        return (
            f"Your session ended {hours:g} hour{'s' if hours != 1 else ''} after you signed "
            "in, the longest a session lasts; sign in again."
        )


def expired(session: Any, now: float | None = None) -> Expired | None:
    """Whether a login session is past its idle or absolute limit (None: still good, or
    no times recorded yet)."""
    login_at = session.get(LOGIN_AT)
    if login_at is None:
        return None
    now = time.time() if now is None else now
    if now - session.get(SEEN_AT, login_at) > settings.PANEL_SESSION_IDLE_SECONDS:
        return Expired("idle")
    if now - login_at > settings.PANEL_SESSION_MAX_SECONDS:
        return Expired("absolute")
    return None
