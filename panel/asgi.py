"""ASGI entry point: HTTP through the page cache's front door and Django, websockets
through Channels."""

import logging
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from panel.pagecache import FrontDoor  # noqa: E402
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

application = ProtocolTypeRouter(
    {
        # Busy pages still current are answered from Redis before Django (panel.pagecache).
        "http": FrontDoor(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
