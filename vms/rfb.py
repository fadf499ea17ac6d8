"""A filter for the client-to-server half of an RFB (VNC) session: view-only.

It follows the client's bytes through the handshake and then message by
message, passing on what a viewer needs (pixel format, encodings, update
requests) and dropping input (keys, pointer, clipboard). Anything it does not
understand ends the session rather than pass through unchecked.
"""

from __future__ import annotations

import struct

# Client messages a viewer may send, with their fixed sizes in bytes.
SET_PIXEL_FORMAT, SET_ENCODINGS, UPDATE_REQUEST = 0, 2, 3
KEY_EVENT, POINTER_EVENT, CLIENT_CUT_TEXT = 4, 5, 6
ENABLE_CONTINUOUS_UPDATES, FENCE, QEMU = 150, 248, 255


class ProtocolError(Exception):
    """The client sent something the filter cannot vouch for."""


class ViewOnlyFilter:
    """Feed client bytes in; get back the bytes safe to forward to the VNC server."""

    def __init__(self) -> None:
        self.buffer = b""
        self.stage = "version"
        self.dropped = 0

    def _take(self, n: int) -> bytes | None:
        if len(self.buffer) < n:
            return None
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        out = b""
        while True:
            chunk = self._step()
            if chunk is None:
                return out
            out += chunk

    def _step(self) -> bytes | None:  # noqa: C901 - one branch per RFB stage and message
        if self.stage == "version":
            chunk = self._take(12)
            if chunk is not None:
                if not chunk.startswith(b"RFB "):
                    raise ProtocolError("not an RFB client")
                self.stage = "security"
            return chunk
        if self.stage == "security":
            chunk = self._take(1)
            if chunk is not None:
                self.stage = "vnc-auth" if chunk[0] == 2 else "client-init"
            return chunk
        if self.stage == "vnc-auth":
            chunk = self._take(16)
            if chunk is not None:
                self.stage = "client-init"
            return chunk
        if self.stage == "client-init":
            chunk = self._take(1)
            if chunk is not None:
                self.stage = "messages"
            return chunk
        if not self.buffer:
            return None
        kind = self.buffer[0]
        if kind == SET_PIXEL_FORMAT:
            return self._take(20)
        if kind == SET_ENCODINGS:
            if len(self.buffer) < 4:
                return None
            count = struct.unpack(">H", self.buffer[2:4])[0]
            return self._take(4 + 4 * count)
        if kind == UPDATE_REQUEST:
            return self._take(10)
        if kind == ENABLE_CONTINUOUS_UPDATES:
            return self._take(10)
        if kind == FENCE:
            if len(self.buffer) < 9:
                return None
            return self._take(9 + self.buffer[8])
        if kind in (KEY_EVENT, POINTER_EVENT, CLIENT_CUT_TEXT, QEMU):
            size = self._input_size(kind)
            if size is None or self._take(size) is None:
                return None  # wait for the rest of the message
            self.dropped += 1
            return b""
        raise ProtocolError(f"client message type {kind} is not allowed for a viewer")

    def _input_size(self, kind: int) -> int | None:
        if kind == KEY_EVENT:
            return 8
        if kind == POINTER_EVENT:
            return 6
        if kind == CLIENT_CUT_TEXT:
            if len(self.buffer) < 8:
                return None
            return 8 + abs(struct.unpack(">i", self.buffer[4:8])[0])
        # QEMU extensions: 0 extended key event (12 bytes); audio (1) is refused.
        if len(self.buffer) < 2:
            return None
        if self.buffer[1] == 0:
            return 12
        raise ProtocolError("QEMU client message not allowed for a viewer")
