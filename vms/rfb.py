"""The view-only VNC proxy: the panel speaks RFB to both sides itself.

Towards the VNC server (qemu) the panel is the client: it negotiates the version
and the security type itself (None, or VNC authentication with the display's
password, which never leaves the panel) and asks for a shared session, so a
viewer never disconnects anyone. Towards the viewer's browser (noVNC) the panel
is the server: it offers one version (3.8; a 3.3 or 3.7 client is answered in
its own dialect) and one security type, None, since the console ticket already
authenticated the user. Then the server's messages go to the viewer as they are,
and of the viewer's messages only those a viewer needs reach the server: pixel
format, encodings and update requests. Keys, pointer and clipboard are read and
dropped; any other message type ends the session, since its length cannot be
known without guessing.

Because each side's handshake is the panel's own, a client cannot shift the byte
stream the server parses out of step with what the filter parsed (a 3.3 client
answering a 3.8 greeting used to do exactly that and type into the guest).
"""

from __future__ import annotations

import asyncio
import struct

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

VERSION = b"RFB 003.008\n"
# The versions a client may answer with, as RFC 6143 allows (3.3 and 3.7 are older).
CLIENT_VERSIONS = {b"RFB 003.003\n": 3, b"RFB 003.007\n": 7, b"RFB 003.008\n": 8}

SECURITY_NONE, SECURITY_VNC = 1, 2

# Client messages.
SET_PIXEL_FORMAT, SET_ENCODINGS, UPDATE_REQUEST = 0, 2, 3
KEY_EVENT, POINTER_EVENT, CLIENT_CUT_TEXT = 4, 5, 6

# Pseudo-encodings whose features need client messages a viewer may not send
# (QEMU key and audio messages, fences, continuous updates, XVP) or hand the
# guest's clipboard out (extended clipboard): they are taken out of the list
# the viewer announces, so the server never offers them.
WITHHELD_ENCODINGS = frozenset({-258, -259, -309, -312, -313, -1063131698})

MAX_CUT_TEXT = 1 << 20  # a viewer's clipboard (dropped anyway) longer than this ends it
MAX_NAME = 1 << 16  # a desktop name longer than this is not a VNC server's


class ProtocolError(Exception):
    """One side said something the proxy cannot vouch for; the session ends."""


# --- towards the VNC server ---------------------------------------------------------------


def vnc_auth_response(password: str, challenge: bytes) -> bytes:
    """The answer to a VNC authentication challenge: DES with the password as the key,
    each key byte's bits reversed (RFB's quirk), the password cut or padded to 8 bytes."""
    key = password.encode("latin-1", errors="replace")[:8].ljust(8, b"\0")
    key = bytes(int(f"{b:08b}"[::-1], 2) for b in key)
    # Triple DES with one key three times over is DES.
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()


async def _reason(reader: asyncio.StreamReader) -> str:
    (length,) = struct.unpack(">I", await reader.readexactly(4))
    return (await reader.readexactly(min(length, 1024))).decode(errors="replace")


async def open_server(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, password: str | None
) -> bytes:
    """Negotiate with the VNC server as its client; return its ServerInit message.

    The session asks to be shared, so other clients of the display stay connected.
    """
    greeting = await reader.readexactly(12)
    if not greeting.startswith(b"RFB 003.") or not greeting.endswith(b"\n"):
        raise ProtocolError(f"the VNC server did not greet in RFB 3.x: {greeting!r}")
    try:
        server_minor = int(greeting[8:11])
    except ValueError:
        raise ProtocolError(f"the VNC server sent a bad version: {greeting!r}") from None
    minor = 8 if server_minor >= 8 else 7 if server_minor == 7 else 3
    writer.write(b"RFB 003.%03d\n" % minor)
    if minor >= 7:
        (count,) = await reader.readexactly(1)
        if count == 0:
            raise ProtocolError(f"the VNC server refused the session: {await _reason(reader)}")
        offered = set(await reader.readexactly(count))
        if SECURITY_NONE in offered:
            security = SECURITY_NONE
        elif SECURITY_VNC in offered and password:
            security = SECURITY_VNC
        else:
            raise ProtocolError(
                f"the VNC server offers no security type the panel can use ({sorted(offered)})"
            )
        writer.write(bytes([security]))
    else:
        (security,) = struct.unpack(">I", await reader.readexactly(4))
        if security == 0:
            raise ProtocolError(f"the VNC server refused the session: {await _reason(reader)}")
        if security not in (SECURITY_NONE, SECURITY_VNC) or (
            security == SECURITY_VNC and not password
        ):
            raise ProtocolError(f"the VNC server asks for security type {security}")
    if security == SECURITY_VNC:
        assert password
        writer.write(vnc_auth_response(password, await reader.readexactly(16)))
    if security == SECURITY_VNC or minor >= 8:
        (result,) = struct.unpack(">I", await reader.readexactly(4))
        if result != 0:
            reason = await _reason(reader) if minor >= 8 else "no reason given"
            raise ProtocolError(f"the VNC server refused the panel's credentials: {reason}")
    writer.write(b"\x01")  # ClientInit: shared
    await writer.drain()
    head = await reader.readexactly(24)
    (name_length,) = struct.unpack(">I", head[20:24])
    if name_length > MAX_NAME:
        raise ProtocolError(f"the VNC server sent a {name_length}-byte desktop name")
    return head + await reader.readexactly(name_length)


# --- towards the viewer -------------------------------------------------------------------


class ViewerSide:
    """The server half of RFB for the viewer's client, and the filter of its messages.

    Send VERSION to the client first, then feed() it each chunk the client sends:
    it returns (bytes to send back to the client, bytes safe to forward to the VNC
    server). It raises ProtocolError on anything it cannot vouch for.
    """

    def __init__(self, server_init: bytes) -> None:
        self.server_init = server_init
        self.buffer = bytearray()
        self.stage = "version"
        self.minor = 0
        self.skip = 0  # bytes of a dropped message still to come
        self.dropped = 0

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        self.buffer += data
        to_client, to_server = bytearray(), bytearray()
        while True:
            if self.skip:
                n = min(self.skip, len(self.buffer))
                del self.buffer[:n]
                self.skip -= n
                if self.skip:
                    break
            step = self._step()
            if step is None:
                break
            to_client += step[0]
            to_server += step[1]
        return bytes(to_client), bytes(to_server)

    def _take(self, n: int) -> bytes | None:
        if len(self.buffer) < n:
            return None
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    def _step(self) -> tuple[bytes, bytes] | None:
        if self.stage == "version":
            version = self._take(12)
            if version is None:
                return None
            if version not in CLIENT_VERSIONS:
                raise ProtocolError(f"the client asked for {version!r}; 3.3, 3.7 or 3.8 only")
            self.minor = CLIENT_VERSIONS[version]
            if self.minor == 3:
                # 3.3: the server decides the security type; None has no result message.
                self.stage = "client-init"
                return struct.pack(">I", SECURITY_NONE), b""
            self.stage = "security"
            return bytes([1, SECURITY_NONE]), b""
        if self.stage == "security":
            choice = self._take(1)
            if choice is None:
                return None
            if choice[0] != SECURITY_NONE:
                raise ProtocolError(f"the client chose security type {choice[0]}, not offered")
            self.stage = "client-init"
            # 3.8 confirms even None with a SecurityResult; 3.7 does not.
            return (struct.pack(">I", 0) if self.minor == 8 else b""), b""
        if self.stage == "client-init":
            if self._take(1) is None:  # the shared flag: the panel's session is always shared
                return None
            self.stage = "messages"
            return self.server_init, b""
        return self._message()

    def _message(self) -> tuple[bytes, bytes] | None:
        if not self.buffer:
            return None
        kind = self.buffer[0]
        if kind == SET_PIXEL_FORMAT:
            message = self._take(20)
            return None if message is None else (b"", message)
        if kind == UPDATE_REQUEST:
            message = self._take(10)
            return None if message is None else (b"", message)
        if kind == SET_ENCODINGS:
            if len(self.buffer) < 4:
                return None
            (count,) = struct.unpack(">H", self.buffer[2:4])
            message = self._take(4 + 4 * count)
            if message is None:
                return None
            encodings = [
                e for e in struct.unpack(f">{count}i", message[4:]) if e not in WITHHELD_ENCODINGS
            ]
            kept = struct.pack(f">BxH{len(encodings)}i", SET_ENCODINGS, len(encodings), *encodings)
            return b"", kept
        if kind in (KEY_EVENT, POINTER_EVENT):
            if self._take(8 if kind == KEY_EVENT else 6) is None:
                return None
            self.dropped += 1
            return b"", b""
        if kind == CLIENT_CUT_TEXT:
            if len(self.buffer) < 8:
                return None
            (length,) = struct.unpack(">i", self.buffer[4:8])
            # A negative length is the extended clipboard's: abs(length) bytes follow.
            if abs(length) > MAX_CUT_TEXT:
                raise ProtocolError(f"the client sent {abs(length)} bytes of clipboard")
            del self.buffer[:8]
            self.skip = abs(length)
            self.dropped += 1
            return b"", b""
        raise ProtocolError(f"client message type {kind} is not one a viewer may send")
