"""ASGI entry point: HTTP through Django, websockets through Channels."""

import contextlib
import logging
import os
import socket
import sys

import redis.exceptions
from django.conf import settings
from django.core.asgi import get_asgi_application
from uvicorn.protocols.utils import ClientDisconnected

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from panel.identity.enforcement import SecondFactorSocketGuard  # noqa: E402
from panel.identity.middleware import SocketSessionPolicy  # noqa: E402
from panel.routing import websocket_urlpatterns  # noqa: E402


class _NoQueryStrings(logging.Filter):
    """The web server logs requests and websockets with their URL; query strings carry
    console tickets, so its lines keep only the path."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                a.split("?", 1)[0] if isinstance(a, str) and a.startswith("/") else a
                for a in record.args
            )
        return True


for _name in ("uvicorn.access", "uvicorn.error"):
    logging.getLogger(_name).addFilter(_NoQueryStrings())

log = logging.getLogger("panel.asgi")


def _passed_fd(argv: list[str]) -> int | None:
    """The socket uvicorn was handed (`--fd N` or `--fd=N`), if any."""
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--fd" and i + 1 < len(argv) else None
        if arg.startswith("--fd="):
            value = arg.removeprefix("--fd=")
        if value is not None and value.isdigit():
            return int(value)
    return None


def no_delay_on_passed_socket(argv: list[str]) -> bool:
    """TCP_NODELAY on the listening socket supervisord hands the web server (fd 0).

    uvicorn wraps a socket given with --fd as a Unix socket, so neither uvloop nor asyncio
    turn Nagle's algorithm off on the connections it accepts; an answer written in two
    parts (headers, then body) then waits for the client's delayed ACK, 40 ms on Linux.
    Set on the listening socket, the option is inherited by every accepted connection.
    Whether it was set (False: no --fd, or not a TCP socket)."""
    fd = _passed_fd(argv)
    if fd is None:
        return False
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                return False
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        return False
    return True


no_delay_on_passed_socket(sys.argv)


class _RedisLost:
    """A websocket whose channel layer (Redis) cannot be reached ends with close code 1011
    and one warning line, not an unhandled exception: the page says it lost live updates
    and reconnects once Redis is back."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        try:
            await self.app(scope, receive, send)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("websocket %s ended: Redis cannot be reached (%s)", scope["path"], exc)
            with contextlib.suppress(Exception):  # the socket may be closed already
                await send({"type": "websocket.close", "code": 1011})


class LeftDuringHandshake:
    """A browser that leaves while its websocket is being accepted (it navigated away)
    ends the socket quietly. uvicorn drops an accept that comes once the connection is
    closing, then refuses the next message with a RuntimeError, which would end as an
    unhandled error in the log: that refusal is turned into the disconnection it stands
    for, which uvicorn ends silently."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        accepted = False

        async def send_while_there(message):
            nonlocal accepted
            try:
                await send(message)
            except RuntimeError as exc:
                if accepted and "'websocket.accept'" in str(exc):
                    raise ClientDisconnected() from exc
                raise
            accepted = accepted or message["type"] == "websocket.accept"

        await self.app(scope, receive, send_while_there)


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": LeftDuringHandshake(
            _RedisLost(
                AllowedHostsOriginValidator(
                    AuthMiddlewareStack(
                        SocketSessionPolicy(
                            SecondFactorSocketGuard(URLRouter(websocket_urlpatterns))
                        )
                    )
                )
            )
        ),
    }
)

if settings.PANEL_TRUSTED_PROXIES:
    # Behind a reverse proxy every client arrives from the proxy's address: the client's
    # own (for the login throttle, the audit log and the pages) is the last address in
    # X-Forwarded-For that is not a trusted proxy. uvicorn's middleware reads it, for
    # HTTP and websockets alike, and only when the connection comes from a trusted proxy.
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware  # noqa: E402

    application = ProxyHeadersMiddleware(application, trusted_hosts=settings.PANEL_TRUSTED_PROXIES)
