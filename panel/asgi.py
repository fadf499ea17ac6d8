"""ASGI entry point: HTTP through Django, websockets through Channels."""

import contextlib
import logging
import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

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


class _RedisLost:
    """A websocket whose channel layer (Redis) cannot be reached ends with close code 1011
    and one warning line, not an unhandled exception: the page says it lost live updates
    and reconnects once Redis is back."""

    def __init__(self, app):  # type: ignore[no-untyped-def]
        self.app = app

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        import redis.exceptions

        try:
            await self.app(scope, receive, send)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("websocket %s ended: Redis cannot be reached (%s)", scope["path"], exc)
            with contextlib.suppress(Exception):  # the socket may be closed already
                await send({"type": "websocket.close", "code": 1011})


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": _RedisLost(
            AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)

if settings.PANEL_TRUSTED_PROXIES:
    # Behind a reverse proxy every client arrives from the proxy's address: the client's
    # own (for the login throttle, the audit log and the pages) is the last address in
    # X-Forwarded-For that is not a trusted proxy. uvicorn's middleware reads it, for
    # HTTP and websockets alike, and only when the connection comes from a trusted proxy.
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware  # noqa: E402

    application = ProxyHeadersMiddleware(  # type: ignore[assignment]
        application, trusted_hosts=settings.PANEL_TRUSTED_PROXIES
    )
