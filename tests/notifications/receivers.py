"""Real receivers on 127.0.0.1 for the notification tests: an SMTP server (aiosmtpd)
and a webhook receiver (http.server) that can answer errors before it accepts."""

from __future__ import annotations

import contextlib
import email
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Mailbox:
    """What the SMTP server received: (envelope recipients, parsed message)."""

    messages: list[tuple[list[str], Any]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(
            (list(envelope.rcpt_tos), email.message_from_bytes(envelope.original_content))
        )
        return "250 Message accepted for delivery"


@contextlib.contextmanager
def smtp_server(port: int) -> Iterator[Mailbox]:
    """An SMTP server on 127.0.0.1:port for the block."""
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@dataclass
class Receiver:
    """A webhook receiver: its URL, the calls it got, and the statuses it answers in
    turn (the last one from then on)."""

    url: str = ""
    answers: list[int] = field(default_factory=lambda: [200])
    calls: list[dict[str, Any]] = field(default_factory=list)

    def answer(self) -> int:
        index = min(len(self.calls), len(self.answers)) - 1
        return self.answers[index]


@contextlib.contextmanager
def webhook_receiver(*answers: int) -> Iterator[Receiver]:
    """A receiver on 127.0.0.1 (a free port) answering the given statuses in turn."""
    receiver = Receiver(answers=list(answers) or [200])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.calls.append(
                {"headers": dict(self.headers), "body": body, "json": json.loads(body or b"{}")}
            )
            status = receiver.answer()
            text = b"accepted" if status < 300 else b"receiver not ready"
            self.send_response(status)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
