"""Who asks for a change: the user, the address the request came from and the way in.

Every service that changes something takes an ``Actor``; its audit row records all three.
Views build one from their request, websocket consumers from their scope, the scheduler
from the schedule's owner.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import TYPE_CHECKING, Any

from .choices import Via

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


@dataclasses.dataclass(frozen=True)
class Actor:
    """user: None when the panel acts on its own (a clean-up, a bootstrap)."""

    user: User | AnonymousUser | None
    address: str | None = None
    via: Via = Via.PANEL

    @classmethod
    def of(cls, request: Any) -> Actor:
        """The user of a page's or an API's request, from the address it came from."""
        via = Via.API if request.path_info.startswith("/api/") else Via.PAGE
        return cls(request.user, client_ip(request), via)

    @classmethod
    def of_scope(cls, scope: dict[str, Any], user: Any = None) -> Actor:
        """The user of a websocket (or user, read afresh), from the address it connected
        from."""
        client = scope.get("client") or [None]
        return cls(user or scope.get("user"), _address(client[0]), Via.SOCKET)

    @classmethod
    def scheduled(cls, user: User | None) -> Actor:
        """A schedule acting for the user who made it."""
        return cls(user, None, Via.SCHEDULE)

    @classmethod
    def of_job(cls, job: Any) -> Actor:
        """A job's worker finishing what the job's user asked for."""
        return cls(job.user, None, Via.JOB)

    @property
    def username(self) -> str:
        """The user's name, or "the panel"."""
        return getattr(self.user, "username", "") or "the panel"

    @property
    def person(self) -> User | None:
        """The signed-in user behind the action (None for the panel or an anonymous one)."""
        user = self.user
        return user if user is not None and user.is_authenticated else None


def client_ip(request: Any) -> str | None:
    """The address the request came from: the connection's, or behind a proxy listed in
    PANEL_TRUSTED_PROXIES the client's that the proxy forwarded (panel.asgi)."""
    if request is None:
        return None
    return _address(request.META.get("REMOTE_ADDR"))


def _address(text: Any) -> str | None:
    try:
        return str(ipaddress.ip_address(text or ""))
    except ValueError:
        return None  # not an address (a unix socket's name, a proxy's garbage)
