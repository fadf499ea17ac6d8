"""A browser that leaves while its websocket is being accepted (it navigated away) must
end the socket quietly, not as an unhandled error in the web server's log.

uvicorn (0.54, websockets-sansio) drops an accept that comes once the connection is
closing and refuses the next message with a RuntimeError; the server below does the
same, and panel.asgi's wrapper must turn that refusal into the disconnection uvicorn
ends silently (ClientDisconnected)."""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest
from uvicorn.protocols.utils import ClientDisconnected

from panel.asgi import LeftDuringHandshake


class ClosingServer:
    """The server's side of a websocket whose client already left: accept is dropped,
    and any later message is refused as uvicorn refuses it."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message: dict) -> None:
        if message["type"] != "websocket.accept":
            raise RuntimeError(
                "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                f"'websocket.http.response.start' but got '{message['type']}'."
            )
        self.sent.append(message["type"])


async def consumer(scope, receive, send) -> None:
    """What the panel's sockets do on connect: accept, then send their first state."""
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "{}"})


async def receive() -> dict:
    return {"type": "websocket.connect"}


def serve(app, send) -> None:
    """Run the wrapped app as the server would, on an event loop of its own."""
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        call = LeftDuringHandshake(app)({"type": "websocket"}, receive, send)
        thread.submit(asyncio.run, call).result()


def test_a_browser_gone_during_the_handshake_ends_as_a_disconnection():
    server = ClosingServer()

    with pytest.raises(ClientDisconnected):
        serve(consumer, server.send)
    assert server.sent == ["websocket.accept"]


def test_a_message_refused_before_any_accept_is_still_an_error():
    async def sends_first(scope, receive, send) -> None:
        await send({"type": "websocket.send", "text": "{}"})

    with pytest.raises(RuntimeError, match="websocket.accept"):
        serve(sends_first, ClosingServer().send)
