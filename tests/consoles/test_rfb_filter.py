"""The view-only filter passes what a viewer needs and drops every kind of input."""

from __future__ import annotations

import struct

import pytest

from vms.rfb import ProtocolError, ViewOnlyFilter

HANDSHAKE = b"RFB 003.008\n" + b"\x01" + b"\x01"  # version, security None, ClientInit shared
ENCODINGS = struct.pack(">BxH", 2, 2) + struct.pack(">ii", 0, -223)
UPDATE = struct.pack(">BBHHHH", 3, 1, 0, 0, 720, 400)
KEY = struct.pack(">BBxxI", 4, 1, 0x61)
POINTER = struct.pack(">BBHH", 5, 1, 10, 10)
CUT = struct.pack(">Bxxxi", 6, 5) + b"hello"
QEMU_KEY = struct.pack(">BBHII", 255, 0, 1, 0x61, 30)


def test_it_forwards_handshake_and_update_requests_but_no_input():
    f = ViewOnlyFilter()
    stream = HANDSHAKE + ENCODINGS + KEY + POINTER + UPDATE + CUT + QEMU_KEY + UPDATE
    out = b"".join(f.feed(stream[i : i + 3]) for i in range(0, len(stream), 3))
    assert out == HANDSHAKE + ENCODINGS + UPDATE + UPDATE
    assert f.dropped == 4


def test_it_passes_the_vnc_password_response():
    f = ViewOnlyFilter()
    response = bytes(range(16))
    out = f.feed(b"RFB 003.008\n" + b"\x02" + response + b"\x01" + UPDATE)
    assert out == b"RFB 003.008\n" + b"\x02" + response + b"\x01" + UPDATE


@pytest.mark.parametrize("message", [b"\x07\x00\x00\x00", b"\xff\x01\x00\x00"])
def test_it_ends_the_session_on_a_message_it_cannot_vouch_for(message):
    f = ViewOnlyFilter()
    f.feed(HANDSHAKE)
    with pytest.raises(ProtocolError):
        f.feed(message)
