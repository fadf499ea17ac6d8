"""Websockets of a user who must set up a second factor close at once (4403), through the
panel's whole websocket stack (origin check, session, the guard, the routes)."""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from panel.asgi import application
from panel.identity.enforcement import CLOSE_SET_UP_FIRST
from panel.models import SecurityPolicy

pytestmark = pytest.mark.timeout(60)


async def _first(sessionid: str) -> dict:
    headers = [(b"origin", b"http://localhost"), (b"cookie", f"sessionid={sessionid}".encode())]
    communicator = WebsocketCommunicator(application, "/ws/notifications/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    try:
        return await communicator.receive_output(timeout=5) if connected else {}
    finally:
        await communicator.disconnect()


def first_message(user) -> dict:
    client = Client()
    client.force_login(user)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _first(client.cookies["sessionid"].value)).result()


def test_it_closes_the_websockets_of_a_user_who_must_set_one_up(transactional_db, tessa):
    assert first_message(tessa)["type"] == "websocket.send"  # the unread count
    SecurityPolicy.objects.create(pk=1, require_second_factor=True)
    assert first_message(tessa) == {"type": "websocket.close", "code": CLOSE_SET_UP_FIRST}
