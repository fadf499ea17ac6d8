"""Without a login, nothing: every URL the resolver knows, GET and POST, sends a page
visitor to the login page and an API client a 401; every websocket route refuses.

The URLs come from the resolver itself, so an endpoint added later is covered (or makes
the sweep fail until its parameters can be filled)."""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from panel.routing import websocket_urlpatterns

from .conftest import objects_of
from .routes import fill, http_routes, ws_routes

# The only URLs an anonymous visitor may use, and what they answer.
PUBLIC = {
    # Where everyone logs in: the form (GET) and a failed attempt (POST, form shown again).
    "login": {"GET": 200, "POST": 200},
    # Signing in with OpenID Connect: the way out to the provider and the way back. Where
    # no provider is set up (as here) both are 404; they only ever answer GET.
    "oidc_login": {"GET": 404, "POST": 405},
    "oidc_callback": {"GET": 404, "POST": 405},
    # Logging out without a session just lands on the login page.
    "logout": {"GET": 302, "POST": 302},
    # The login's second step: with no password step done, back to the login page;
    # the security key's requests say the login no longer waits (POST only).
    "login_second": {"GET": 302, "POST": 302},
    "login_second_key_options": {"GET": 405, "POST": 400},
    "login_second_key": {"GET": 405, "POST": 400},
    # How API clients log in: username and password in the body, nothing else.
    "api_token": {"GET": 405, "POST": 400},
    # Prometheus' endpoint has its own auth (admin session, admin API token or the
    # scrape token): 401 like the API, not the login page; it only ever reads.
    "metrics": {"GET": 401, "POST": 405},
    # The icon browsers ask for by name: a redirect to the static file, which shows nothing.
    "favicon": {"GET": 301, "POST": 405},
}


def test_it_turns_away_an_anonymous_visitor_at_every_url(everything, new_client):
    client = new_client()
    objects = objects_of(everything, "alpha")
    failures = []
    swept = 0
    for route in http_routes():
        for path in fill(route, objects):
            for method in ("GET", "POST"):
                response = client.generic(method, path)
                swept += 1
                status = response.status_code
                if route.name in PUBLIC:
                    if status != PUBLIC[route.name][method]:
                        failures.append(f"{method} {path}: {status}")
                elif route.api:
                    if status != 401:
                        failures.append(f"{method} {path}: {status}, not 401")
                elif status != 302 or not response["Location"].startswith("/login/?next="):
                    failures.append(f"{method} {path}: {status} {response.get('Location')}")
    assert failures == [], "\n".join(failures)
    assert swept > 300  # every pattern, every action value, both methods


def test_it_lists_only_urls_that_exist_as_public():
    names = {route.name for route in http_routes()}

    assert set(PUBLIC) <= names


def _run(coroutine):  # type: ignore[no-untyped-def]
    """asyncio.run on a thread of its own: a browser test earlier in the session may have
    left an event loop running in this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _close_code(path: str) -> str:
    app = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
    communicator = WebsocketCommunicator(app, path)
    connected, code = await communicator.connect(timeout=5)
    try:
        if connected:
            message = await communicator.receive_output(timeout=5)
            if message["type"] == "websocket.close":
                return f"close {message.get('code')}"
            return f"accepted and sent {message}"
        return f"refused {code}"
    finally:
        await communicator.disconnect()


# How each websocket route turns an anonymous visitor away: (without a ticket, with a
# made-up one). 4401: log in first; 4403: the ticket is refused. The upload socket lives on
# its ticket alone, so it answers 4403 either way.
WS_REFUSALS = {
    "ws/jobs/<int:job_id>/": ("close 4401", "close 4401"),
    "ws/notifications/": ("close 4401", "close 4401"),
    "ws/hosts/<int:host_id>/": ("close 4401", "close 4401"),
    "ws/vms/<uuid:vm_id>/": ("close 4401", "close 4401"),
    "ws/vm-rows/": ("close 4401", "close 4401"),
    "ws/vms/<uuid:vm_id>/serial/": ("close 4401", "close 4403"),
    "ws/vms/<uuid:vm_id>/vnc-view/": ("close 4401", "close 4403"),
    "ws/volumes/<int:volume_id>/upload/": ("close 4403", "close 4403"),
}


@pytest.mark.django_db(transaction=True)
def test_it_refuses_every_websocket_to_an_anonymous_visitor(everything):
    objects = objects_of(everything, "alpha")
    outcomes = {}
    for route in ws_routes():
        [path] = fill(route, objects)
        # A made-up console ticket does not stand in for a login.
        outcomes[route.pattern] = (
            _run(_close_code(path)),
            _run(_close_code(path + "?ticket=made-up")),
        )

    assert outcomes == WS_REFUSALS
    assert len(outcomes) == len(websocket_urlpatterns)
